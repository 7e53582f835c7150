"""Provides the RBD image tree as drawn text: golden image -> @snapshot -> its copy-on-write clones.

Drawn as ``Content`` lines rather than a ``Tree`` widget: the tree is read, not navigated, and a
Static costs nothing to keep up to date. A clone is found twice over: in its parent snapshot's
``children`` and through its own ``parent`` ("pool/image@snap"); both are merged, so a listing cut
short on one side still draws the relation. Image names are node data: they only ever reach
``Content`` as plain text.
"""

from __future__ import annotations

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.wire import schema

Part = str | tuple[str, str]

#: Bound the text on clusters with thousands of images; the rest is counted.
MAX_LINES = 200


def _spec(im: schema.RbdImage) -> str:
    return f"{im.pool}/{im.name}"


def _sizes(im: schema.RbdImage) -> list[Part]:
    used = fmt.bytes_(im.used_bytes)
    return [("  ", ""), (fmt.bytes_(im.size_bytes), ""), (", ", "dim"),
            (used, "dim" if used == fmt.NA else ""), (" used", "dim")]


#: What a line of the tree is: ("image", "pool/image") or ("snap", "pool/image", "snap"); None for notes.
Target = tuple[str, ...] | None


def rbd_tree(images: list[schema.RbdImage] | None, ascii: bool = False,
             max_lines: int = MAX_LINES) -> list[Content]:
    """One line per image and snapshot, clones indented under the snapshot they were cloned from."""
    return [line for _, line in rbd_rows(images, ascii, max_lines)]


def rbd_rows(images: list[schema.RbdImage] | None, ascii: bool = False,
             max_lines: int = MAX_LINES) -> list[tuple[Target, Content]]:
    """``rbd_tree``'s lines, each with the image or snapshot it shows (the Ceph keys pick from these)."""
    if images is None:
        return [(None, Content.assemble(("N/A (not polled)", "dim")))]
    if not images:
        return [(None, Content.assemble(("no RBD images", "dim")))]
    tee, last, bar, gap = ("|- ", "`- ", "|  ", "   ") if ascii else ("├─ ", "└─ ", "│  ", "   ")
    by_spec = {_spec(im): im for im in images}
    clones: dict[str, list[str]] = {}  # "pool/image@snap" -> child specs, in listing order
    for im in images:
        for s in im.snapshots or ():
            clones.setdefault(f"{_spec(im)}@{s.name}", []).extend(s.children or ())
    for im in images:
        if im.parent:
            kids = clones.setdefault(im.parent, [])
            if _spec(im) not in kids:
                kids.append(_spec(im))
    lines: list[tuple[Target, Content]] = []
    seen: set[str] = set()

    def image(spec: str, prefix: str, branch: str, top: bool) -> None:
        seen.add(spec)
        im = by_spec.get(spec)
        if im is None:
            lines.append((None, Content.assemble(prefix + branch, (fmt.node_text(spec, 80), ""),
                                                 ("  (not listed)", "dim"))))
            return
        head: list[Part] = [prefix + branch, (fmt.node_text(spec, 80), "bold" if top else "")]
        if top and im.parent:  # a clone whose parent image is not in the listing
            head += [("  clone of ", "dim"), (fmt.node_text(im.parent, 80), "dim")]
        lines.append((("image", spec), Content.assemble(*head, *_sizes(im))))
        child_prefix = prefix + ("" if not branch else (gap if branch == last else bar))
        snaps = im.snapshots or []
        for i, s in enumerate(snaps):
            s_branch = last if i == len(snaps) - 1 else tee
            kids = [k for k in clones.get(f"{spec}@{s.name}", []) if k not in seen]
            parts: list[Part] = [child_prefix + s_branch, (f"@{fmt.node_text(s.name, 60)}", "$ct-info")]
            if s.protected:
                parts.append(("  protected", "dim"))
            if s.ts:
                parts.append((f"  {fmt.node_text(s.ts[:10], 10)}", "dim"))
            if kids:
                parts.append((f"  {len(kids)} clone{'s' if len(kids) != 1 else ''}", "dim"))
            lines.append((("snap", spec, s.name), Content.assemble(*parts)))
            s_prefix = child_prefix + (gap if s_branch == last else bar)
            for j, k in enumerate(kids):
                if k not in seen:
                    image(k, s_prefix, last if j == len(kids) - 1 else tee, False)

    tops = [im for im in images if not im.parent or im.parent.split("@", 1)[0] not in by_spec]
    for im in tops:
        if _spec(im) not in seen:
            image(_spec(im), "", "", True)
    for im in images:  # clone cycles or parents never reached: still shown, never dropped
        if _spec(im) not in seen:
            image(_spec(im), "", "", True)
    if len(lines) > max_lines:
        more = len(lines) - (max_lines - 1)
        lines = lines[: max_lines - 1] + [(None, Content.assemble((f"… and {more} more lines", "dim")))]
    return lines
