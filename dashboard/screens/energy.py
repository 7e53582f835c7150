"""Provides the energy screen: kWh, cost and GPU-hours per GPU, node, user, pod, namespace and job, over the
last hour and 24 hours — who used what, as a shared platform bills it.

The figures are the agents' own ledgers (``ct:v1:energy:{host}``, ``clustertop.agents.energy``), read here
every ENERGY_EVERY_S while the screen is shown, in a worker, and summed by ``clustertop.read.energy``. How
each GPU's energy was measured is shown per GPU ("counter": NVML's energy counter; "power": power
integrated by the agent, on cards without one), and how a shared GPU's energy was split among its
processes is said in the summary. A ledger that does not decode is named, never drawn as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from textual import work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from clustertop.dashboard import fmt
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.pack import Part, facts, pack
from clustertop.errors import describe
from clustertop.read.energy import Use, Windows, windows
from clustertop.read.energy import decode_ledgers as decode_all
from clustertop.read.plan import Level
from clustertop.wire import schema

ENERGY_EVERY_S = 15.0
#: Rows per kind: the biggest users first; the rest are counted in the section's title.
ROWS_PER_KIND = 30
KINDS = (("node", "Nodes"), ("gpu", "GPUs"), ("user", "Users"), ("namespace", "Namespaces"), ("pod", "Pods"),
         ("job", "Jobs"), ("idle", "Idle GPUs (no process)"))


@dataclass
class EnergyRead(Message):
    ledgers: list[schema.EnergyLedger]
    errors: dict[str, str] = field(default_factory=dict)  # host -> why its ledger was not used
    error: str | None = None  # the read itself failed


def _kwh(u: Use | None) -> str:
    if u is None:
        return "-"
    v = fmt.known(u.kwh, 0, 1e9)
    return fmt.NA if v is None else f"{v:.3f}"


def _gpuh(u: Use | None) -> str:
    if u is None:
        return "-"
    v = fmt.known(u.gpu_hours, 0, 1e9)
    return fmt.NA if v is None else f"{v:.2f}"


def _cost(w: Windows, u: Use | None) -> str:
    c = w.cost(u)
    if c is None:
        return "-" if u is None else ""
    v = fmt.known(c, 0, 1e12)
    return fmt.NA if v is None else f"{v:.2f}"


def section(w: Windows, kind: str, title: str, width: int) -> Content:
    rows = w.rows(kind)
    priced = w.price_per_kwh is not None and not w.mixed_prices
    name_w = max(12, min(48, width - (64 if priced else 46)))
    head = f"{'':<{name_w}} {'kWh 1h':>9} {'kWh 24h':>9}"
    if priced:
        head += f" {'cost 1h':>9} {'cost 24h':>9}"
    head += f" {'GPU-h 1h':>10} {'GPU-h 24h':>10}"
    if kind == "gpu":
        head += "  method"
    more = f" ({len(rows) - ROWS_PER_KIND} more not shown)" if len(rows) > ROWS_PER_KIND else ""
    lines = [Content.assemble((f"{title}{more}", "bold $primary")), Content.assemble((head, "dim"))]
    if not rows:
        lines.append(Content.assemble(("none in the last 24 h", "dim")))
    for day, hour in rows[:ROWS_PER_KIND]:
        line = f"{fmt.node_text(day.name, name_w):<{name_w}} {_kwh(hour):>9} {_kwh(day):>9}"
        if priced:
            line += f" {_cost(w, hour):>9} {_cost(w, day):>9}"
        line += f" {_gpuh(hour):>10} {_gpuh(day):>10}"
        if kind == "gpu":
            hosts = ",".join(sorted(day.hosts))
            line += f"  {day.method or fmt.NA}  {fmt.node_text(hosts, 40)}"
        lines.append(Content(line))
    return Content("\n").join(lines)


def summary(w: Windows | None, errors: dict[str, str], read_error: str | None, now: float, width: int,
            split: str | None) -> Content:
    title = Content.assemble(("Energy and GPU time", "bold $primary"))
    if w is None:
        return Content("\n").join([title, Content.assemble(("reading the agents' energy ledgers…", "dim"))])
    node_use = [u for (k, _), u in w.day.items() if k == "node"]
    total_day = sum(u.joules for u in node_use)
    total_hour = sum(u.joules for (k, _), u in w.hour.items() if k == "node")
    groups: list[list[Part]] = [
        [f"{w.nodes} node ledger{'' if w.nodes == 1 else 's'}"],
        ["last hour ", (f"{total_hour / 3.6e6:.3f} kWh", "bold")],
        ["last 24 h ", (f"{total_day / 3.6e6:.3f} kWh", "bold")],
    ]
    if w.mixed_prices:
        groups.append([("nodes set different prices: no cost shown", "$ct-warn")])
    elif w.price_per_kwh is not None:
        cur = fmt.node_text(w.currency or "", 8)
        groups.append([f"price {w.price_per_kwh:g} {cur}/kWh".replace("  ", " ")])
        groups.append(["24 h cost ", (f"{total_day / 3.6e6 * w.price_per_kwh:.2f} {cur}".strip(), "bold")])
    else:
        groups.append([("no price set ([energy] price_per_kwh)", "dim")])
    if w.since_ts is not None and now - w.since_ts < 24 * 3600:
        groups.append([("counting since ", "$ct-info"), (fmt.clock(w.since_ts), "$ct-info"),
                       (": 24 h covers less", "$ct-info")])
    rows = pack(facts(groups), width)
    how = {"memory": "by each process's share of the GPU memory it holds",
           "equal": "equally among its processes"}.get(split or "", "by the nodes' own rules")
    rows.append(Content.assemble(("A shared GPU's energy and time are split ", "dim"), (how, "dim"),
                                 ("; method per GPU: counter = NVML's energy counter, power = power x time.", "dim")))
    if read_error:
        rows.append(Content.assemble((f"cannot read the ledgers: {fmt.node_text(read_error, 200)}", "$ct-crit")))
    for host in sorted(errors)[:10]:
        rows.append(Content.assemble((f"{fmt.node_text(host, 40)}: {fmt.node_text(errors[host], 120)}", "$ct-crit")))
    for host in sorted(w.bad)[:10]:
        rows.append(Content.assemble((f"{fmt.node_text(host, 40)}: figures that are no energy left out", "$ct-warn")))
    return Content("\n").join([title, *rows])


class EnergyScreen(DataScreen):
    screen_name = "energy"
    plan_level = Level.DIGESTS  # the header's totals and the hosts to read ledgers of
    BINDINGS = [Binding("r", "reload", "Reload")]

    DEFAULT_CSS = """
    EnergyScreen #energy { padding: 0 1; }
    EnergyScreen #energy > Static { height: auto; margin-bottom: 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.windows: Windows | None = None
        self.errors: dict[str, str] = {}
        self.read_error: str | None = None
        self.split: str | None = None
        self._hosts: list[str] = []
        self._last: tuple[object, ...] | None = None  # what _draw last drew from

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="energy"):
            yield Static("", id="energy-summary", markup=False)
            for kind, _ in KINDS:
                yield Static("", id=f"energy-{kind}", markup=False)

    def on_mount(self) -> None:
        self.set_interval(ENERGY_EVERY_S, self._tick)

    def _tick(self) -> None:
        if self.is_current:
            self.load()

    def action_reload(self) -> None:
        self.load()

    def draw(self, view: View) -> None:
        assert view.state is not None
        hosts = sorted(v.host for v in view.state.nodes)
        if hosts != self._hosts:
            self._hosts = hosts
            self.load()
        self._draw(view.now)

    @work(thread=True, exclusive=True, group="energy")
    def load(self) -> None:
        source = self.app.source  # type: ignore[attr-defined]
        try:
            ledgers, errors = decode_all(source.energy(list(self._hosts)))
            self.post_message(EnergyRead(ledgers, errors))
        except Exception as e:  # a Redis error here must not take the screen down
            self.post_message(EnergyRead([], {}, describe(e)))

    def on_energy_read(self, msg: EnergyRead) -> None:
        now = self.app.view.now  # type: ignore[attr-defined]
        if msg.error is None or self.windows is None:
            self.windows = windows(msg.ledgers, now)
            splits = {led.split for led in msg.ledgers if led.split}
            self.split = next(iter(splits)) if len(splits) == 1 else None
            self.errors = msg.errors
        self.read_error = msg.error
        self._draw(now)

    def _draw(self, now: float) -> None:
        width = max(40, self.size.width - 4)
        w = self.windows
        # The figures change with each ledger read (every ENERGY_EVERY_S), not with each cluster read:
        # a refresh that brings nothing new for them draws nothing (at 1,000 nodes the sections walk
        # ~10,000 subjects per kind, ~20 ms a refresh for the same text).
        young = w is not None and w.since_ts is not None and now - w.since_ts < 24 * 3600
        last = self._last
        if (last is not None and last[0] is w and last[1] is self.errors
                and last[2:] == (self.read_error, width, self.split, young)):
            return
        self._last = (w, self.errors, self.read_error, width, self.split, young)
        self.query_one("#energy-summary", Static).update(summary(w, self.errors, self.read_error, now, width,
                                                                 self.split))
        for kind, title in KINDS:
            widget = self.query_one(f"#energy-{kind}", Static)
            widget.display = w is not None and (kind in ("node", "gpu", "user") or bool(w.rows(kind)))
            if w is not None:
                widget.update(section(w, kind, title, width))
