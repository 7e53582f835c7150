"""Provides the node screen's containers section and the words of a container action's dialog (pure: no app).

Everything shown is node text (container names and images come from whoever ran the container):
``fmt.node_text`` escapes and bounds it, so a bidi override or a 1 MB name never reaches the terminal raw.
"""

from __future__ import annotations

from textual.content import Content

from clustertop.dashboard import fmt
from clustertop.wire import schema

#: Rows shown on the node screen (running first, as the collector sorts them); the rest are counted.
SHOWN = 20
ACTIONS = {"stop": "Stop (TERM, then KILL after the grace period)", "restart": "Restart (stop, then start again)",
           "kill": "Kill (SIGKILL at once)"}


def container_section(cs: schema.Containers | None, limit: int = SHOWN) -> Content:
    """The engine's containers: name, image, state, CPU, memory (of limit), restarts."""
    title = Content.assemble(("Containers", "bold"))
    if cs is None:
        return Content("\n").join([title, Content.assemble(("N/A (no container engine reported)", "dim"))])
    engine = fmt.node_text(cs.engine, 40) if cs.engine else fmt.NA
    head = Content.assemble(("Containers", "bold"), (f"  {engine}", "dim"))
    rows = [head, Content.assemble(("id           name                 image                state      "
                                    "   cpu      mem / limit        restarts", "dim"))]
    listed = cs.containers or []
    for c in listed[:limit]:
        state_style = "$ct-ok" if c.state == "running" else ("$ct-crit" if c.state in ("dead", "restarting") else "dim")
        limit_text = fmt.bytes_(c.mem_limit_bytes) if c.mem_limit_bytes is not None else fmt.NA
        rows.append(Content.assemble(
            (f"{fmt.node_text(c.id[:12]):<12} ", "dim"), f"{fmt.node_text(c.name, 20):<20} ", f"{fmt.node_text(c.image, 20):<20} ",
            (f"{fmt.node_text(c.state, 10):<10} ", state_style), f"{fmt.pct(c.cpu_pct):>6} ",
            f"{fmt.bytes_(c.mem_bytes):>8} / {limit_text:<8} ", f"{fmt.num(c.restarts):>8}",
            (f"  {fmt.node_text(c.template, 20)}" if c.template else "", "dim")))
    if not listed:
        rows.append(Content.assemble(("none", "dim")))
    more = (cs.total or 0) - min(len(listed), limit)
    if more > 0:
        rows.append(Content.assemble((f"… {more} more (clustertop container NODE ls)", "dim")))
    return Content("\n").join(rows)


def option_words(c: schema.Container) -> str:
    """One line of the pick list: name, image, state, id."""
    return (f"{fmt.node_text(c.name, 30):<30} {fmt.node_text(c.image, 24):<24} {fmt.node_text(c.state, 10):<10} "
            f"{fmt.node_text(c.id[:12])}")


def action_rows(node: str, c: schema.Container, action: str) -> list[tuple[str, str]]:
    """The confirm dialog's label/value rows (values are node text, escaped by ``actions.fields``)."""
    loses = {"stop": "its processes get TERM, then KILL after the grace period; the container stays (stopped)",
             "restart": "its processes are stopped and started again: work in memory is lost",
             "kill": "its processes get SIGKILL: no chance to save anything"}[action]
    if c.template:
        loses += f"; launched by clustertop from template {c.template}"
    return [("node", node), ("container", f"{c.name or fmt.NA} ({c.id[:12]})"), ("image", c.image or fmt.NA),
            ("state", f"{c.state or fmt.NA}, {c.status or ''}".rstrip(", ")), ("action", ACTIONS[action]),
            ("loses", loses)]
