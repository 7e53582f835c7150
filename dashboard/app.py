"""Provides the dashboard app and ``make_app``, the one factory used by the CLI and the tests.

Data flow: a thread worker reads the whole cluster (one round trip) and posts ``StateRead``; the
app folds it into a ``View`` and hands that to the screen on top only. The refresh timer is
re-armed after each read finishes, so slow reads never stack. A store error becomes
``StoreFailed``: the last data stays on screen, marked stale, and reading goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer

from clustertop.dashboard import gcpolicy, stripcycles
from clustertop.dashboard.alertfeed import SILENCES_EVERY_S, AlertFeed
from clustertop.dashboard.commands import ClusterCommands
from clustertop.dashboard.history import TotalsHistory
from clustertop.dashboard.messages import AlertFeedRead, LedgerRead, StateRead, StoreFailed
from clustertop.dashboard.nodetrust import NodeTrust
from clustertop.dashboard.screens.audit import AuditScreen
from clustertop.dashboard.screens.base import DataScreen
from clustertop.dashboard.screens.energy import EnergyScreen
from clustertop.dashboard.screens.gpus import GpusScreen
from clustertop.dashboard.screens.help import HelpScreen
from clustertop.dashboard.screens.network import NetworkScreen
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.nodes import NodesScreen
from clustertop.dashboard.screens.overview import OverviewScreen
from clustertop.dashboard.screens.people import PeopleScreen
from clustertop.dashboard.screens.storage import StorageScreen
from clustertop.dashboard.screens.wall import WallScreen
from clustertop.dashboard.screens.work import WorkScreen
from clustertop.dashboard.settings import Settings
from clustertop.dashboard.source import Source
from clustertop.dashboard.view import View
from clustertop.dashboard.widgets.palette import Palette
from clustertop.errors import describe
from clustertop.read.bucketread import node_alerts_of
from clustertop.read.cluster import HostMatchMemo
from clustertop.read.cluster import alerts as cluster_alerts
from clustertop.read.ledger import Ledger, LedgerTracker, kube_host_filter
from clustertop.read.ledger import update_from_state as update_ledger
from clustertop.read.plan import ALL_FULL, Level, ReadPlan
from clustertop.read.reader import ClusterState
from clustertop.read.summary import AlertMemo

#: Actions that change something on the cluster. Hidden and refused in read-only mode; job
#: control (kill, launch) adds its actions here.
WRITE_ACTIONS: set[str] = {"signal_process", "job_delete", "job_kill", "job_logs", "job_scale", "job_pool",
                           "job_launch", "container_action", "silence", "k8s_undo", "k8s_restart",
                           "k8s_cordon", "k8s_drain", "ceph_rbd", "ceph_maint", "ceph_maint_offscreen"}

#: How often the GPU ledger is brought up to date while the work screen is not showing it.
LEDGER_EVERY_S = 5.0
ALERT_KEY, NODE_HOST = attrgetter("key"), attrgetter("host")

#: Refreshes start every ``refresh_s``; a refresh whose read, fold and draw take longer still leaves the app
#: at least this share of ``refresh_s`` idle before the next (slow reads never stack, nor run back to back).
MIN_IDLE_FRAC = 0.5

#: The only actions a wall display allows (no one is at the keys; a stray key must not change it).
WALL_ACTIONS = {"quit"}

stripcycles.install()  # repainted lines freed by reference counting, not by the collector (dashboard/stripcycles.py)


class ClusterTop(App[int]):
    TITLE = "clustertop"
    COMMANDS = App.COMMANDS | {ClusterCommands}
    MODES = {"overview": OverviewScreen, "nodes": NodesScreen, "gpus": GpusScreen,
             "storage": StorageScreen, "network": NetworkScreen, "wall": WallScreen,
             "work": WorkScreen, "audit": AuditScreen, "energy": EnergyScreen, "people": PeopleScreen}
    DEFAULT_MODE = "overview"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (160, "-wide")]
    # The screen keys share one footer entry ("1234567 screens"): one entry each pushed "? Help" and
    # "q Quit" off an 80-column footer. Help (?) and the palette name every screen.
    SCREENS_GROUP = Binding.Group("screens", compact=True)
    BINDINGS = [
        Binding("1", "go('overview')", "Overview", group=SCREENS_GROUP),
        Binding("2", "go('nodes')", "Nodes", group=SCREENS_GROUP),
        Binding("3", "go('gpus')", "GPUs", group=SCREENS_GROUP),
        Binding("4", "go('storage')", "Storage", group=SCREENS_GROUP),
        Binding("5", "go('network')", "Network", group=SCREENS_GROUP),
        Binding("6", "go('work')", "Work", group=SCREENS_GROUP),
        Binding("7", "go('audit')", "Audit", group=SCREENS_GROUP),
        Binding("e", "go('energy')", "Energy", show=False),  # kWh, cost, GPU-hours (not in the footer's group)
        Binding("w", "go('people')", "Who", show=False),  # one user's work (clustertop who), not in the footer
        Binding("question_mark", "help", "Help"),
        Binding("colon", "command_line", ":ns / :ctx", show=False),  # dashboard/k8s_scope.py
        Binding("t", "next_theme", "Theme", show=False),
        Binding("escape", "back", "Back", show=False),
        Binding("q", "quit", "Quit"),
    ]
    CSS = """
    /* A compact footer (narrow terminals) still keeps a space after the group label ("screens"). */
    Footer.-compact FooterLabel { margin: 0 1 0 0; }
    Screen.-unreachable #tiles, Screen.-unreachable LiveTable, Screen.-unreachable #sections {
        text-opacity: 70%;
    }
    """

    def __init__(self, settings: Settings, client_factory: Callable[[], Any]) -> None:
        if settings.wall:  # read by App.__init__: the wall is the first and only screen
            self.DEFAULT_MODE = "wall"  # type: ignore[misc]
        super().__init__()
        self.settings = settings
        clock: Callable[[], float] = (
            (lambda: settings.frozen_time) if settings.frozen_time is not None else time.time)  # type: ignore[assignment,return-value]
        self.clock = clock
        self.source = Source(client_factory, clock)
        self.view = View(history=TotalsHistory(settings.refresh_s), source_label=settings.source_label)
        self.clustertop_themes: dict[str, Any] = {}
        self.theme_errors: list[str] = []
        self.palette = Palette({})
        # Reads finished and folded into the view, data or a store failure (tests and the bench wait on it).
        self.finished_reads = 0
        self.ledger_tracker = LedgerTracker()
        self.ledger: Ledger | None = None
        self._stopping = False
        self._read_thread: threading.Thread | None = None
        self._read_wanted = threading.Event()
        self._refresh_wanted = False
        self._refresh_timer: Timer | None = None
        self._refresh_started = time.monotonic()  # when the latest refresh was asked for (_next_refresh_s)
        # What the screen on top reads (DataScreen.read_plan), set before each read.
        self._read_plan: ReadPlan = ALL_FULL
        self._ledger_read = False  # a read of GPUs for the hidden GPU ledger is due or under way (_keep_ledger)
        # The hidden ledger's read and fold run on a thread and connection of their own (``_ledger_loop``): at
        # 10,000 nodes x 8 GPUs they take ~0.4 s and ~0.16 s, which held up the next refresh's read or, folded
        # on the UI thread, its draw. The lock: the UI thread's own update (work screen) and that fold.
        self.ledger_source = Source(client_factory, clock)
        self.ledger_source.brief_from = 0  # its GPUs read as asked, at any size (no full snapshot, nothing wanted)
        self._ledger_thread: threading.Thread | None = None
        self._ledger_wanted = threading.Event()
        self._ledger_lock = threading.Lock()
        self._previous_state: ClusterState | None = None  # the read before this one, until the repaint
        # Per node, whether its enrolled key vouches for what it published (dashboard/nodetrust.py): the
        # seals the next read takes (the node on screen, a few more round robin), set with the plan.
        self.trust = NodeTrust.from_settings(settings)
        self.source.summary_known = self.trust.known  # a bucket summary is believed when an enrolled node signed it
        self._read_seals: list[str] = []
        # A read of bucket summaries' alerts, kept per bucket from read to read (read.summary.AlertMemo).
        self._alert_memo = AlertMemo()
        # Kubernetes node names matched to hosts, kept while both stay the same (read.cluster.HostMatchMemo).
        self._host_match = HostMatchMemo()
        # Alerts as a service: the evaluating agent's signed state, Alertmanager's silences (alertfeed.py).
        self.alert_feed = AlertFeed(self.trust.known, settings.alertmanager, clock)
        self.view.feed = self.alert_feed

    # -- start-up -------------------------------------------------------------------------------

    def on_mount(self) -> None:
        from clustertop.themes import DEFAULT_THEME, load_themes

        themes, errors = load_themes(self.settings.themes_dir)
        for theme in themes.values():
            self.register_theme(theme)
        self.clustertop_themes = themes
        self.theme_errors = errors
        wanted = self.settings.theme or DEFAULT_THEME
        if wanted not in self.available_themes:
            self.theme_errors.append(f"unknown theme {wanted!r}; using {DEFAULT_THEME!r}")
            wanted = DEFAULT_THEME
        self.theme = wanted
        self._rebuild_palette()
        for err in self.theme_errors:
            self.notify(err, title="theme", severity="warning", timeout=10)
        if self.trust.error:
            self.notify(self.trust.error, title="trust", severity="error", timeout=15, markup=False)
        if self.alert_feed.alertmanager:
            self._poll_silences()
            self.set_interval(SILENCES_EVERY_S, self._poll_silences)
        self.refresh_now()

    def watch_theme(self, theme: str) -> None:
        self._rebuild_palette()
        screen = self.screen if self.screen_stack else None
        if isinstance(screen, DataScreen):
            screen.show(self.view, force=True)

    def _rebuild_palette(self) -> None:
        # get_css_variables(), not theme_variables: the latter is refreshed after watchers run.
        self.palette = Palette(self.get_css_variables(), self.palette.version + 1)

    # -- reading --------------------------------------------------------------------------------

    def refresh_now(self) -> None:
        # One long-lived reader thread, woken per refresh. A worker thread per read (a new OS thread
        # every second) let the wall's RSS creep up by ~1 MiB a minute: each new thread may get its own
        # malloc arena, and a decoded cluster is freed in whichever arena last touched it.
        if self._read_thread is None:
            self._read_wanted = threading.Event()
            self._read_thread = threading.Thread(target=self._read_loop, name="clustertop-read", daemon=True)
            self._read_thread.start()
        self._read_plan = self._screen_plan()
        state = self.view.state
        self._read_seals = self.trust.seals_wanted(list(map(NODE_HOST, state.nodes)) if state is not None else [],
                                                   self._trust_focus())
        self._refresh_wanted = True
        self._refresh_started = time.monotonic()
        self._read_wanted.set()

    def _next_refresh_s(self) -> float:
        """Seconds from now to the next refresh: ``refresh_s`` after the start of this one, not after its end.

        Re-arming ``refresh_s`` after the read was folded in made the period refresh_s + read + fold (1.1 s at
        1,000 nodes), so a node's change waited up to that long for a read, and the phase drifted against the
        agents' ticks; a fixed cadence bounds the wait by refresh_s (bench/end_to_end.py measures both)."""
        refresh = self.settings.refresh_s
        return max(MIN_IDLE_FRAC * refresh, refresh - (time.monotonic() - self._refresh_started))

    def _trust_focus(self) -> list[str]:
        """The node whose trust is checked on every read: the one the data screen on top shows."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, DataScreen):
                return [screen.host] if isinstance(screen, NodeScreen) else []
        return []

    def _screen_plan(self) -> ReadPlan:
        """What the data screen on top (under any dialog) draws from (``DataScreen.read_plan``)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, DataScreen):
                return screen.read_plan()
        # No data screen yet (start-up): briefs and digests, so no node is asked for its full snapshot (read.want)
        # for a screen nobody opened; below 200 nodes the size rule still reads every node in full.
        return ReadPlan(Level.BRIEFS)

    def _read_loop(self) -> None:
        while True:
            self._read_wanted.wait()
            self._read_wanted.clear()
            if self._stopping:
                return
            if self._refresh_wanted:
                self._refresh_wanted = False
                try:
                    state = self.source.read(self._read_plan, self._read_seals)
                except Exception as e:  # the store or the network: shown, never raised into the UI
                    self.post_message(StoreFailed(describe(e), self.clock()))
                    continue
                self.post_message(StateRead(state))
                if self.alert_feed.due(state.ts):  # one GET, after the read is on its way
                    self.post_message(AlertFeedRead(self.alert_feed.poll_state(self.source, state.ts)))
                # Not held here past its message: else the next read's assignment drops the last reference to
                # a read the UI already let go of, and frees it in this thread inside the next refresh.
                del state

    def _ledger_loop(self) -> None:
        """The hidden GPU ledger's reads of every node's GPUs, each folded here (``update_ledger``): only the
        new ledger goes to the UI thread (``LedgerRead``), and the read is freed in this thread."""
        posted: list[Ledger] = []
        while True:
            self._ledger_wanted.wait()
            self._ledger_wanted.clear()
            if self._stopping:
                return
            try:
                state = self.ledger_source.read(ReadPlan(Level.GPUS))  # the ledger reads GPUs only
                with self._ledger_lock:
                    ledger = update_ledger(self.ledger_tracker, state)
                del state
            except Exception:  # noqa: S112 - the next refresh reports the store's failure; the thread lives on
                self._ledger_read = False
                continue
            self.post_message(LedgerRead(ledger))  # which ends this read (``_ledger_read``) once it is in
            # The ledgers posted the last two times are held here, so the one the UI thread lets go of (replaced
            # by this one, ~5 ms to free at 10,000 nodes) is freed in this thread, 5 s later.
            posted = [*posted[-1:], ledger]
            del ledger

    def on_state_read(self, msg: StateRead) -> None:
        v = self.view
        state = msg.state
        # Let go of the previous read only once this one is on screen: freeing ~100k decoded
        # objects costs ~20 ms at 1,000 nodes and belongs after the repaint, not before it; so
        # does the garbage collector's pass (dashboard.gcpolicy).
        self._previous_state = v.state
        self.call_after_refresh(self._after_repaint)
        v.state = state
        v.now = state.ts
        v.unreachable_since = None
        v.store_error = None
        v.alerts = cluster_alerts(state.nodes, state.cluster, state.ts,
                                  flags=self.ledger.flags if self.ledger is not None else None,
                                  node_part=node_alerts_of(state, self._alert_memo),  # bucket summaries: theirs
                                  host_memo=self._host_match)
        # Set operations (in C): ~4,500 alerts a read at 10,000 nodes, nearly all of them the same as last read.
        live = set(map(ALERT_KEY, v.alerts))
        seen = v.first_seen
        for key in seen.keys() - live:
            del seen[key]
        for key in live - seen.keys():
            seen[key] = state.ts
        v.history.add(state.ts, state.totals)
        if self._work_shown():  # it draws the ledger: up to date before the draw (else after it)
            self._keep_ledger(state)
        v.ceph_io.add(state.cluster.get("ceph"))
        self.trust.check_state(state, self._trust_focus())  # the node on screen: before it is drawn
        self._changed()

    def _after_repaint(self) -> None:
        """Once a read is on screen, in the idle time before the next one: what only has to be done
        by then (freeing the previous read, a hidden ledger's update, the garbage collector's pass)."""
        self._previous_state = None
        state = self.view.state
        if state is not None and not self._work_shown():
            self._keep_ledger(state)
        if state is not None and state.sealed:
            # The round robin's few seals (~66 µs each, a seal already seen costs a hash): shown next read.
            focus = set(self._trust_focus())
            self.trust.check_state(state, [h for h in state.sealed if h not in focus])
        gcpolicy.collect_if_due()

    def _keep_ledger(self, state: ClusterState) -> None:
        if "kubernetes" not in state.cluster or not self._ledger_due(state.ts):
            return
        if state.plan.covers(Level.GPUS):
            # Not while the ledger thread folds a read of its own (the work screen just opened): the next read.
            if self._ledger_lock.acquire(blocking=False):
                try:
                    self.ledger = update_ledger(self.ledger_tracker, state)
                finally:
                    self._ledger_lock.release()
        elif not self._stopping and not self._ledger_read:
            # A digest-only read (the overview) has no GPU processes: the ledger gets a read of its own, read
            # and folded on the ledger thread (``_ledger_loop``), never on the UI thread or inside a refresh's read.
            # Hidden, only its flags are used (alerts: idle-allocated, unowned-busy), and they concern Kubernetes nodes
            # and the nodes its pods are bound to only: so only those hosts are read (32 of 10,000 in the simulator:
            # the read of every node's GPUs was ~11 % of a core at 1 Hz there). The work screen folds its own read.
            k8s = state.cluster["kubernetes"].kubernetes
            names = [n.name for n in (k8s.nodes or ())] + [p.node for p in (k8s.pods or ()) if p.node] if k8s else []
            self.ledger_source.hosts = kube_host_filter(names)
            self._ledger_read = True
            if self._ledger_thread is None:
                self._ledger_thread = threading.Thread(target=self._ledger_loop, name="clustertop-ledger",
                                                       daemon=True)
                self._ledger_thread.start()
            self._ledger_wanted.set()

    def on_alert_feed_read(self, msg: AlertFeedRead) -> None:
        if msg.read == self.alert_feed.read:
            # Nothing new (no agent evaluates alerts: the same "no state" every 5 s): a redraw here is a
            # whole screen's draw again (at 80,000 GPUs the GPU table's rows), for the same picture.
            return
        self.alert_feed.set_state(msg.read)
        self._redraw()

    def _poll_silences(self) -> None:
        feed = self.alert_feed

        def ask() -> None:  # a worker: an Alertmanager that does not answer costs its timeout here only
            silences, error = feed.poll_silences()
            self.call_from_thread(self._silences_read, silences, error)

        self.run_worker(ask, thread=True, group="silences", exclusive=True, exit_on_error=False)

    def _silences_read(self, silences: Any, error: str | None) -> None:
        self.alert_feed.set_silences(silences, error)
        self._redraw()

    def _redraw(self) -> None:
        """Draw what changed outside a read (the alert feed) without restarting the refresh timer."""
        self.view.version += 1
        screen = self.screen if self.screen_stack else None
        if isinstance(screen, DataScreen) and self.view.state is not None:
            screen.show(self.view)

    def on_ledger_read(self, msg: LedgerRead) -> None:
        if self.ledger is None or msg.ledger.ts >= self.ledger.ts:  # not over a newer one the work screen made
            self.ledger = msg.ledger
        self._ledger_read = False

    def _work_shown(self) -> bool:
        return any(isinstance(s, WorkScreen) for s in self.screen_stack)

    def _ledger_due(self, ts: float) -> bool:
        """The GPU ledger on every read while the work screen shows it, else every LEDGER_EVERY_S.

        Its flags need to be tracked while hidden too (an idle-for-15-minutes flag must know since
        when), but to seconds, not to the refresh: ~11 ms per refresh at 1,000 nodes saved."""
        if self.ledger is None or ts - self.ledger.ts >= LEDGER_EVERY_S or ts < self.ledger.ts:
            return True
        return self._work_shown()

    def on_store_failed(self, msg: StoreFailed) -> None:
        v = self.view
        if v.unreachable_since is None:
            v.unreachable_since = msg.since
        v.store_error = msg.error
        v.now = self.clock()
        v.history.add_gap(v.now)
        self._changed()

    def _changed(self) -> None:
        self.view.version += 1
        self.finished_reads += 1
        # A read can land after quit has emptied the screen stack (a slow read of a big index at exit):
        # ``self.screen`` would raise ScreenStackError and end the app with a traceback.
        screen = self.screen if self.screen_stack else None
        if isinstance(screen, DataScreen):  # behind a modal nothing is drawn; resume catches up
            screen.show(self.view)
        if not self._stopping:
            # One pending timer at a time: an extra read (a screen asking for full data, the bench)
            # must not start a second refresh chain beside the first.
            if self._refresh_timer is not None:
                self._refresh_timer.stop()
            self._refresh_timer = self.set_timer(self._next_refresh_s(), self.refresh_now)

    # -- navigation -----------------------------------------------------------------------------

    def action_go(self, mode: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)
        else:  # "1" from a drilled-down node: back to the screen itself
            while len(self.screen_stack) > 1:
                self.pop_screen()

    def open_node(self, host: str) -> None:
        if isinstance(self.screen, NodeScreen) and self.screen.host == host:
            return
        self.push_screen(NodeScreen(host))

    def action_back(self) -> None:
        screen = self.screen
        if isinstance(screen, NodesScreen) and screen.clear_filter():
            return
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self.current_mode != "overview":
            self.switch_mode("overview")

    def action_command_line(self) -> None:
        """``:`` k9s style: ``:ns NAME`` narrows the Work screen to a namespace, ``:ctx NAME`` switches the
        kubeconfig context the Kubernetes actions use (dashboard/k8s_scope.py)."""
        from clustertop.dashboard import k8s_scope

        k8s_scope.open_command_line(self)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_next_theme(self) -> None:
        # dark and light first (the everyday pair, one key apart), then the special-purpose ones.
        names = sorted(self.clustertop_themes, key=lambda n: (n not in ("dark", "light"), n))
        if names:
            i = names.index(self.theme) + 1 if self.theme in names else 0
            self.theme = names[i % len(names)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.settings.wall and action not in WALL_ACTIONS:
            return False  # the wall takes no keys but quit: no screens, no palette, no themes
        if action in WRITE_ACTIONS and self.settings.effective_read_only:
            return False  # hidden from the footer and refused
        return True

    def on_unmount(self) -> None:
        self._stopping = True
        self._read_wanted.set()
        self._ledger_wanted.set()

    def action_quit(self) -> None:  # type: ignore[override]
        self._stopping = True
        self._read_wanted.set()  # let the reader thread see it and end
        self._ledger_wanted.set()
        self.exit(0)

    def get_default_screen(self) -> Screen[Any]:
        return OverviewScreen()


def make_app(settings: Settings, client_factory: Callable[[], Any]) -> ClusterTop:
    """The dashboard app for ``settings``, reading the store that ``client_factory`` connects to."""
    if settings.wall:
        settings.read_only = True
    return ClusterTop(settings, client_factory)
