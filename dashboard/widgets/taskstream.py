"""Provides the Dask task stream as text: a compact timeline like the Task Stream plot of Dask's own dashboard.

One row per worker thread busy at the same time, tasks as coloured spans by task prefix ("inc", "flaky",
"read-parquet": what Dask's ``key_split`` makes of a key) over the span the recent entries cover, errors in
the critical colour and their own glyph, then the time axis and a legend (per prefix: tasks, mean
duration, errors). The scheduler's stream entries carry the worker but not the thread, so the rows are
found as Dask's plot finds them on a worker: a task goes on the first row of its worker that is free when it
starts (a worker with 4 threads busy at once gets 4 rows).

Pure: ``stream_lines(stream, now, width, rows)`` -> lines of ``Content``; keys and worker names are node
data (``fmt.node_text``: escaped, cut), and widths are measured in terminal cells, so a wide or hostile
name cannot shift the columns. Entries without times are counted, not drawn; a NaN or absurd time never
reaches here (``collectors.dask_progress.parse_progress`` drops it), and a stop before its start draws as
one cell.
"""

from __future__ import annotations

import zlib

from rich.cells import cell_len, set_cell_size
from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.wire import schema

#: Colours for task prefixes (Tableau 10 without its red: red means an error, as in Dask's plot).
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#edc948", "#b07aa1", "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac",
           "#86bcb6")
#: The timeline never spans more than this (an entry from long ago would squash the rest into one cell).
MAX_SPAN_S = 600.0
#: Rows of one worker at most (the threads busy at once).
LANES_MAX = 64


def key_prefix(key: str) -> str:
    """Dask's ``key_split``: "('inc-5c3e8d07', 3)" -> "inc", "read-parquet-9f3a..." -> "read-parquet",
    "flaky-12" -> "flaky"; "" or an unreadable key -> "?"."""
    s = key.strip()
    if s.startswith("("):  # a tuple key, as its repr: its first element names the task
        s = s[1:].split(",", 1)[0].strip().strip("'\"")
    words = s.split("-")
    out = words[0]
    for w in words[1:]:
        if w.isalpha() and not (len(w) == 8 and _hex(w)):
            out += "-" + w
        else:
            break
    if len(out) == 32 and _hex(out):  # a bare token (Dask: "data")
        return "data"
    return out or "?"


def _hex(w: str) -> bool:
    return all(c in "0123456789abcdef" for c in w)


def colour(prefix: str) -> str:
    return COLOURS[zlib.crc32(prefix.encode("utf-8", "replace")) % len(COLOURS)]


def _worker(addr: str | None) -> str:
    """"tcp://10.0.0.5:38421" -> "10.0.0.5:38421" (the protocol says nothing on a row)."""
    if not addr:
        return fmt.NA
    return addr.split("://", 1)[-1]


def lanes(stream: list[schema.DaskStreamTask]) -> list[tuple[str, list[schema.DaskStreamTask]]]:
    """Timed tasks in rows: per worker (sorted), each task on the first of its worker's rows free at its start."""
    by_worker: dict[str, list[schema.DaskStreamTask]] = {}
    for t in stream:
        if _when(t.start_ts) and _when(t.stop_ts):
            by_worker.setdefault(_worker(t.worker), []).append(t)
    out: list[tuple[str, list[schema.DaskStreamTask]]] = []
    for worker in sorted(by_worker):
        rows: list[list[schema.DaskStreamTask]] = []
        ends: list[float] = []
        for t in sorted(by_worker[worker], key=lambda t: (t.start_ts, t.stop_ts)):  # type: ignore[arg-type,return-value]
            assert t.start_ts is not None and t.stop_ts is not None
            stop = max(t.start_ts, t.stop_ts)
            for i, end in enumerate(ends):
                if end <= t.start_ts:
                    rows[i].append(t)
                    ends[i] = stop
                    break
            else:
                if len(rows) < LANES_MAX:
                    rows.append([t])
                    ends.append(stop)
                else:  # absurdly many at once: the last row takes the rest (drawn over)
                    rows[-1].append(t)
                    ends[-1] = max(ends[-1], stop)
        out += [(worker, r) for r in rows]
    return out


def stream_lines(stream: list[schema.DaskStreamTask] | None, now: float, width: int, rows: int,
                 ascii: bool = False) -> list[Content]:
    """The timeline, ``width`` cells wide, at most ``rows`` task rows (the rest counted)."""
    title = ("Dask task stream", "bold $primary")
    if stream is None:
        return [Content.assemble(title, ("  N/A (not collected: the scheduler's stream is read from the second "
                                         "poll on)", "dim"))]
    if not stream:
        return [Content.assemble(title, ("  no tasks yet", "dim"))]
    # A node's payload is data: NaN, inf or 2**64 as a time counts as no time (the collector drops them too).
    timed = [t for t in stream if _when(t.start_ts) and _when(t.stop_ts)]
    untimed = len(stream) - len(timed)
    if not timed:
        return [Content.assemble(title, (f"  {len(stream)} recent task(s), none with compute times", "dim"))]
    t1 = max(max(t.start_ts, t.stop_ts) for t in timed)  # type: ignore[type-var]
    t0 = max(min(t.start_ts for t in timed), t1 - MAX_SPAN_S)  # type: ignore[type-var]
    span = max(t1 - t0, 1e-3)
    width = max(30, width)
    label_w = min(24, max(18, width // 5), width // 2)  # "10.10.0.10:44988" whole at 80 columns
    cells = width - label_w - 1
    ago = now - t1
    head = [title, (f"  {len(stream)} recent task(s) over {_secs(span)}", ""),
            (f", the last ended {fmt.age(ago)} ago" if ago >= 1 else ", the last just ended", "dim")]
    if untimed:
        head.append((f"; {untimed} without times", "dim"))
    lines = [Content.assemble(*head)]
    all_rows = lanes(timed)
    shown = all_rows if len(all_rows) <= rows else all_rows[: max(1, rows - 1)]
    full, err = ("#", "x") if ascii else ("█", "✖")
    seen_worker = ""
    for worker, tasks in shown:
        label = fmt.node_text(worker, 80) if worker != seen_worker else ""
        seen_worker = worker
        spans: list[tuple[int, int, str, str]] = []
        for t in tasks:
            assert t.start_ts is not None and t.stop_ts is not None
            if max(t.start_ts, t.stop_ts) < t0:
                continue  # older than the span shown
            a = int((max(t.start_ts, t0) - t0) / span * cells)
            z = int((max(t.start_ts, t.stop_ts) - t0) / span * cells)
            a = min(cells - 1, max(0, a))
            z = min(cells, max(a + 1, z))
            failed = t.status is not None and t.status != "OK"
            glyph, style = (err, "$ct-crit bold") if failed else (full, colour(key_prefix(t.key)))
            spans.append((a, z, glyph, style))
        lines.append(Content.assemble((set_cell_size(label, label_w), "dim" if not label else ""), " ",
                                      *_row(spans, cells)))
    if len(all_rows) > len(shown):
        lines.append(Content.assemble((f"… and {len(all_rows) - len(shown)} more worker thread row(s)", "dim")))
    axis_l, axis_r = f"-{_secs(span)}", "last end"
    pad = max(1, cells - len(axis_l) - len(axis_r))
    lines.append(Content.assemble(" " * (label_w + 1), (set_cell_size(axis_l + " " * pad + axis_r, cells), "dim")))
    lines.append(_legend(stream, width))
    return lines


def _when(ts: float | None) -> bool:
    return ts is not None and fmt.known(ts) is not None and 0 < ts < 1e11


def _row(spans: list[tuple[int, int, str, str]], cells: int) -> list[tuple[str, str]]:
    """A row's cells from its tasks' [a, z) spans, in order of start; where two meet in one cell (rounding),
    the earlier keeps it. Runs of one style are one part (what is rendered is a few parts, not each cell)."""
    out: list[tuple[str, str]] = []
    pos = 0
    for a, z, glyph, style in sorted(spans):
        a = max(a, pos)
        if a >= z:
            continue
        if a > pos:
            out.append((" " * (a - pos), ""))
        if out and out[-1][1] == style:
            out[-1] = (out[-1][0] + glyph * (z - a), style)
        else:
            out.append((glyph * (z - a), style))
        pos = z
    if pos < cells:
        out.append((" " * (cells - pos), ""))
    return out


def _secs(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s" if s < 60 else fmt.duration(s)


def _legend(stream: list[schema.DaskStreamTask], width: int) -> Content:
    """Per prefix (most tasks first): its colour, tasks, mean compute time, errors; cut at ``width`` cells."""
    stats: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    counts: dict[str, int] = {}
    for t in stream:
        p = key_prefix(t.key)
        stats.setdefault(p, [])
        counts[p] = counts.get(p, 0) + 1
        if _when(t.start_ts) and _when(t.stop_ts):
            stats[p].append(max(0.0, t.stop_ts - t.start_ts))  # type: ignore[operator]
        if t.status is not None and t.status != "OK":
            errors[p] = errors.get(p, 0) + 1
    order = sorted(stats, key=lambda p: (-counts[p], p))
    return legend_line([(p, counts[p], sum(stats[p]) / len(stats[p]) if stats[p] else None, errors.get(p, 0))
                        for p in order], width, "{}")


def legend_line(rows: list[tuple[str, int, float | None, int]], width: int, count_spec: str) -> Content:
    """The legend from (prefix, tasks, mean compute seconds or None, errors), in order: its colour, tasks, mean,
    errors; cut at ``width`` cells with "+N more"."""
    parts: list[tuple[str, str]] = []
    used = 0
    for i, (p, n, mean_s, erred) in enumerate(rows):
        mean = f" mean {_secs(mean_s)}" if mean_s is not None else ""
        piece = [("■ ", colour(p)), (f"{fmt.node_text(p, 30)} {count_spec.format(n)}{mean}", "")]
        if erred:
            piece.append((f" {erred} erred", "$ct-crit"))
        size = sum(cell_len(x) for x, _ in piece) + 2
        if used + size > width and parts:
            parts.append((f"  +{len(rows) - i} more", "dim"))
            break
        parts += [("  " if parts else "", ""), *piece]
        used += size
    return Content.assemble(*parts)


# ---------------------------------------------------------------------------------------------
# The folded stream (Queues.dask_stream: per prefix, worker and time bucket, over the poll's window)
# ---------------------------------------------------------------------------------------------

LEVELS = "▁▂▃▄▅▆▇█"
ASCII_LEVELS = ".:-=+*#@"


def bucket_lines(q: schema.Queues, now: float, width: int, rows: int, ascii: bool = False) -> list[Content]:
    """The folded stream, ``width`` cells wide: a row per worker (busiest first, at most ``rows``, the rest
    counted), a cell per slice of the window, its height how busy the worker's threads were (compute seconds
    over the slice times its threads; relative to the row's busiest slice where the thread count is
    unknown), its colour the prefix that took most of it, errors in the critical colour and their glyph;
    then the axis and the legend (tasks, mean compute time, errors per prefix)."""
    title = ("Dask task stream", "bold $primary")
    buckets = q.dask_stream or []
    lo, hi, bs = fmt.known(q.dask_stream_from_ts), fmt.known(q.dask_stream_to_ts), fmt.known(q.dask_stream_bucket_s)
    if lo is None or hi is None or bs is None or not 0 < lo <= hi < 1e11 or not 0 < bs <= 3600:
        return [Content.assemble(title, ("  N/A (the window it covers is unknown)", "dim"))]
    span = max(hi - lo, bs, 1.0)
    lo = hi - span
    width = max(30, width)
    label_w = min(24, max(18, width // 5), width // 2)
    cells = width - label_w - 1
    cell_s = span / cells
    threads = {w.name: w.nthreads for w in q.workers or () if isinstance(w.nthreads, int) and 0 < w.nthreads < 1e6}
    busy: dict[str | None, list[float]] = {}
    errs: dict[str | None, list[int]] = {}
    by_prefix: dict[str | None, list[dict[str, float]]] = {}
    tasks: dict[str, int] = {}
    busy_p: dict[str, float] = {}
    erred: dict[str, int] = {}
    for bk in buckets:
        t, b_s = fmt.known(bk.t), fmt.known(bk.busy_s)
        n, e = bk.tasks if isinstance(bk.tasks, int) else 0, bk.errors if isinstance(bk.errors, int) else 0
        if t is None or not 0 < t < 1e11 or t + bs <= lo or t > hi:
            continue
        b_s = b_s if b_s is not None and 0 <= b_s < 1e9 else 0.0
        p = bk.prefix
        tasks[p] = tasks.get(p, 0) + max(0, n)
        busy_p[p] = busy_p.get(p, 0.0) + b_s
        erred[p] = erred.get(p, 0) + max(0, e)
        row = busy.setdefault(bk.worker, [0.0] * cells)
        err_row = errs.setdefault(bk.worker, [0] * cells)
        pre = by_prefix.setdefault(bk.worker, [{} for _ in range(cells)])
        a, z = max(t, lo), min(t + bs, hi)
        c0 = min(cells - 1, max(0, int((a - lo) / cell_s)))
        c1 = min(cells - 1, max(c0, int((max(a, z - 1e-9) - lo) / cell_s)))
        for c in range(c0, c1 + 1):
            share = (min(z, lo + (c + 1) * cell_s) - max(a, lo + c * cell_s)) / max(z - a, 1e-9) if z > a else 1.0
            row[c] += b_s * max(0.0, share)
            pre[c][p] = pre[c].get(p, 0.0) + b_s * max(0.0, share) + (1e-6 if n else 0.0)
        err_row[min(cells - 1, max(0, int((min(t + bs / 2, hi) - lo) / cell_s)))] += max(0, e)
    total = sum(tasks.values())
    ago = now - hi
    head = [title, (f"  {total:,} task(s) over the last {_secs(span)}", ""),
            (f" ({bs:g} s buckets)", "dim"),
            (f", to {fmt.age(ago)} ago" if ago >= 1 else ", to now", "dim")]
    if sum(erred.values()):
        head.append((f"; {sum(erred.values())} erred", "$ct-crit"))
    lines = [Content.assemble(*head)]
    if not busy:
        lines[0] = Content.assemble(title, (f"  no tasks ended in the last {_secs(span)}", "dim"))
        return lines
    order = sorted(busy, key=lambda w: (w is None, -sum(busy[w]), w or ""))
    shown = order if len(order) <= rows else order[: max(1, rows - 1)]
    levels, err_glyph = (ASCII_LEVELS, "x") if ascii else (LEVELS, "✖")
    others = q.dask_stream_other_workers if isinstance(q.dask_stream_other_workers, int) else 0
    others = max(0, min(others, 10**9))  # a node's count: nonsense shown as none, not "-5 other workers"
    for w in shown:
        label = f"({others} other workers)" if w is None else fmt.node_text(_worker(w), 80)
        n_threads = threads.get(w) if w is not None else None
        peak = max(busy[w]) or 1.0
        parts: list[tuple[str, str]] = []
        for c in range(cells):
            if errs[w][c]:
                parts.append((err_glyph, "$ct-crit bold"))
                continue
            pc = by_prefix[w][c]
            if not pc:
                parts.append((" ", ""))
                continue
            occ = busy[w][c] / (cell_s * n_threads) if n_threads else busy[w][c] / peak
            glyph = levels[min(len(levels) - 1, int(max(0.0, occ) * len(levels)))]
            style = colour(max(pc, key=lambda k: pc[k]))
            if parts and parts[-1][1] == style:
                parts[-1] = (parts[-1][0] + glyph, style)
            else:
                parts.append((glyph, style))
        lines.append(Content.assemble((set_cell_size(label, label_w), "dim" if w is None else ""), " ", *parts))
    if len(order) > len(shown):  # the folded rest (last) counts as the workers it holds
        cut = sum(others if w is None else 1 for w in order[len(shown):])
        lines.append(Content.assemble((f"… and {cut} more worker(s)", "dim")))
    axis_l, axis_r = f"-{_secs(span)}", "last poll"
    pad = max(1, cells - len(axis_l) - len(axis_r))
    lines.append(Content.assemble(" " * (label_w + 1), (set_cell_size(axis_l + " " * pad + axis_r, cells), "dim")))
    prefixes = sorted(tasks, key=lambda p: (-tasks[p], p))
    lines.append(legend_line([(p, tasks[p], busy_p[p] / tasks[p] if tasks[p] else None, erred.get(p, 0))
                              for p in prefixes], width, "{:,}"))
    return lines
