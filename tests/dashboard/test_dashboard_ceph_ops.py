"""The dashboard's Ceph keys (dashboard/ceph_ops.py) in the demo: `r` on the storage screen walks the
golden-image workflow on the simulated Ceph (snapshot named and checked, protect, clone named and checked,
flatten, unprotect, delete), `o` on a tower's screen sets noout and marks one of its OSDs out; each through
the real pick, prompt and confirm dialogs, `Actions.execute`, the simulated Ceph (sim/control.py SimCeph:
Ceph's refusals too), the demo operator's signed audit stream, and the next read drawing the change.

The real ceph-mgr path (the same keys against a real Ceph 16 cluster) is tests/dashboard/
test_dashboard_ceph_real.py; the pure parts (what is offered, the drain's note, config errors) are below.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList

from clustertop import wire
from clustertop.cli import modes
from clustertop.config import ConfigError
from clustertop.control import trust
from clustertop.dashboard import ceph_ops
from clustertop.dashboard.actions import actions_of
from clustertop.dashboard.app import make_app
from clustertop.dashboard.dialogs.confirm import ConfirmDialog
from clustertop.dashboard.dialogs.pick import PickDialog
from clustertop.dashboard.dialogs.prompt import TextPrompt
from clustertop.dashboard.screens.node import NodeScreen
from clustertop.dashboard.screens.storage import StorageScreen
from clustertop.dashboard.settings import Settings, load_config
from clustertop.dashboard.widgets.ceph_maint import flag_set
from clustertop.read.reader import Reader
from clustertop.wire import schema
from tests.support import builders as b
from tests.support.demo import demo_app

pytestmark = pytest.mark.anyio
SEP = ceph_ops.SEP


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ceph_now(backend: modes.Backend) -> schema.Ceph:
    return Reader(backend.client_factory()).read().cluster["ceph"].ceph


def image(c: schema.Ceph, spec: str) -> schema.RbdImage | None:
    return next((i for i in c.images or () if f"{i.pool}/{i.name}" == spec), None)


async def pick(pilot: Any, app: Any, oid: str) -> None:
    await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "a pick dialog", tries=1500)
    options = app.screen.query_one(OptionList)
    ids = [o.id for o in options.options]
    assert oid in ids, ids
    options.highlighted = ids.index(oid)
    await pilot.press("enter")


async def type_in(pilot: Any, app: Any, text: str) -> None:
    await b.wait_until(pilot, lambda: isinstance(app.screen, TextPrompt), "the prompt", tries=1500)
    field = app.screen.query_one(Input)
    field.value = text
    await pilot.press("enter")


#: (action, seconds from yes to the outcome shown) of every confirm() (the real-Ceph test prints them).
TIMINGS: list[tuple[str, float]] = []


async def confirm(pilot: Any, app: Any, acts: Any, *expected: str) -> Any:
    """The confirm dialog says what will happen; yes; the outcome."""
    await b.wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirm dialog", tries=1500)
    text = str(app.screen.query_one("#body-text").render())
    for e in expected:
        assert e in text, text
    n = len(acts.done)
    t0 = time.monotonic()
    await pilot.press("tab", "enter")
    await b.wait_until(pilot, lambda: len(acts.done) == n + 1, "the outcome", tries=3000)
    TIMINGS.append((acts.done[-1].action, time.monotonic() - t0))
    return acts.done[-1].outcome


async def test_r_walks_the_golden_image_workflow_on_the_simulated_ceph(demo: modes.Backend) -> None:
    app = demo_app(demo)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("4")
        assert isinstance(app.screen, StorageScreen)
        screen = app.screen
        acts = actions_of(app)
        await b.wait_until(pilot, lambda: "db-golden" in screen.section_text("rbd"), "the RBD tree", tries=1500)

        # Snapshot: a bad name is refused in the prompt (it stays open), a taken one too, then a good one.
        await pilot.press("r")
        await pick(pilot, app, f"image{SEP}rbd/jupyter-home")
        await pick(pilot, app, "snap create")
        await type_in(pilot, app, "has space")
        assert isinstance(app.screen, TextPrompt)
        assert "no '/', '@', blanks" in str(app.screen.query_one("#error").render())
        await type_in(pilot, app, "nightly")
        out = await confirm(pilot, app, acts, "rbd/jupyter-home", "nightly", "ceph.snap_create rbd/jupyter-home@nightly",
                            "simulated Ceph")
        assert out.ok and "created snapshot rbd/jupyter-home@nightly" in out.text, out.text
        await b.wait_until(pilot, lambda: "@nightly" in screen.section_text("rbd"), "the snapshot drawn", tries=1500)

        # Delete is offered only while unprotected; protect it, then clone it into a new image.
        await pilot.press("r")
        await pick(pilot, app, f"snap{SEP}rbd/jupyter-home{SEP}nightly")
        await pick(pilot, app, "snap protect")
        out = await confirm(pilot, app, acts, "it can be cloned")
        assert out.ok, out.text
        await b.wait_until(pilot, lambda: (s := image(ceph_now(demo), "rbd/jupyter-home")) is not None and any(
            x.name == "nightly" and x.protected for x in s.snapshots or ()), "protected", tries=1500)
        await b.wait_until(pilot, lambda: "@nightly  protected" in screen.section_text("rbd"), "drawn", tries=1500)
        await pilot.press("r")
        await pick(pilot, app, f"snap{SEP}rbd/jupyter-home{SEP}nightly")
        await pick(pilot, app, "clone")
        await type_in(pilot, app, "rbd/db-golden")  # taken
        assert "exists" in str(app.screen.query_one("#error").render())
        await type_in(pilot, app, "rbd/home-copy")
        out = await confirm(pilot, app, acts, "rbd/jupyter-home@nightly", "rbd/home-copy", "copy-on-write")
        assert out.ok and "cloned rbd/jupyter-home@nightly into rbd/home-copy" in out.text, out.text
        await b.wait_until(pilot, lambda: (i := image(ceph_now(demo), "rbd/home-copy")) is not None
                           and i.parent == "rbd/jupyter-home@nightly", "the clone with its parent", tries=1500)

        # Unprotect while the clone uses it: Ceph's refusal, in its words, audited as failed.
        await pilot.press("r")
        await pick(pilot, app, f"snap{SEP}rbd/jupyter-home{SEP}nightly")
        await pick(pilot, app, "snap unprotect")
        out = await confirm(pilot, app, acts, "Ceph refuses while clones still use it")
        assert not out.ok and "refused by Ceph (HTTP 400): [errno 16] RBD image is busy" in out.text, out.text

        # Flatten the clone (no parent after), then unprotect and delete the snapshot.
        await b.wait_until(pilot, lambda: "home-copy" in screen.section_text("rbd"), "the clone drawn", tries=1500)
        await pilot.press("r")
        await pick(pilot, app, f"image{SEP}rbd/home-copy")
        await pick(pilot, app, "flatten")
        out = await confirm(pilot, app, acts, "rbd/jupyter-home@nightly", "no longer depends on the snapshot")
        assert out.ok, out.text
        await b.wait_until(pilot, lambda: image(ceph_now(demo), "rbd/home-copy").parent is None, "flattened",
                           tries=1500)
        await b.wait_until(pilot, lambda: "0 clone" not in screen.section_text("rbd")
                           and "1 clone" not in screen.section_text("rbd").split("@nightly")[1].split("\n")[0],
                           "the snapshot without clones", tries=1500)
        await pilot.press("r")
        await pick(pilot, app, f"snap{SEP}rbd/jupyter-home{SEP}nightly")
        await pick(pilot, app, "snap unprotect")
        assert (await confirm(pilot, app, acts)).ok
        await b.wait_until(pilot, lambda: "@nightly  protected" not in screen.section_text("rbd"), "unprotected",
                           tries=1500)
        await pilot.press("r")
        await pick(pilot, app, f"snap{SEP}rbd/jupyter-home{SEP}nightly")
        await pick(pilot, app, "snap rm")
        out = await confirm(pilot, app, acts, "gone for good")
        assert out.ok, out.text
        await b.wait_until(pilot, lambda: "@nightly" not in screen.section_text("rbd"), "deleted", tries=1500)
        assert acts._ceph is None  # the simulated Ceph, never a client
    entries = demo.client_factory().xrange(wire.operator_audit_key("demo-operator"))
    mine = [(e.action, e.target, e.result) for _i, f in entries
            if (e := trust._decode_entry(f)) is not None and e.action.startswith("ceph.")]
    assert [m[:2] for m in mine] == [
        ("ceph.snap_create", "rbd/jupyter-home@nightly"), ("ceph.snap_protect", "rbd/jupyter-home@nightly"),
        ("ceph.clone", "rbd/jupyter-home@nightly -> rbd/home-copy"), ("ceph.snap_unprotect", "rbd/jupyter-home@nightly"),
        ("ceph.flatten", "rbd/home-copy"), ("ceph.snap_unprotect", "rbd/jupyter-home@nightly"),
        ("ceph.snap_rm", "rbd/jupyter-home@nightly")]
    assert mine[3][2].startswith("failed: unprotected snapshot rbd/jupyter-home@nightly: refused by Ceph (HTTP 400)")
    assert all(m[2] == "ok" for i, m in enumerate(mine) if i != 3)


async def test_o_sets_noout_and_marks_an_osd_out_from_a_towers_screen(demo: modes.Backend) -> None:
    c = ceph_now(demo)
    host = sorted({o.host for o in c.osds if o.host})[0]
    osd = min(o.id for o in c.osds if o.host == host)
    app = demo_app(demo)
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        app.open_node(host)
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        screen = app.screen
        acts = actions_of(app)

        def section() -> str:
            return str(screen.query_one("#ceph").render())

        await b.wait_until(pilot, lambda: "noout is not set" in section(), "the maintenance section", tries=1500)
        await pilot.press("o")
        await pick(pilot, app, f"flag{SEP}noout{SEP}set")
        out = await confirm(pilot, app, acts, "no data moves while they are away", "ceph.flag_set_noout noout")
        assert out.ok and "set noout" in out.text, out.text
        await b.wait_until(pilot, lambda: "noout is set" in section(), "noout shown as set", tries=1500)
        await pilot.press("o")
        await pick(pilot, app, f"osd{SEP}{osd}{SEP}out")
        out = await confirm(pilot, app, acts, f"osd.{osd}", "placement groups move")
        assert out.ok, out.text
        await b.wait_until(pilot, lambda: f"osd.{osd:<5} up/out" in section(), "the OSD shown out", tries=1500)
        # Back in, and noout unset: the picker offers what the payload says can be done.
        await pilot.press("o")
        await pick(pilot, app, f"osd{SEP}{osd}{SEP}in")
        assert (await confirm(pilot, app, acts)).ok
        await pilot.press("o")
        await pick(pilot, app, f"flag{SEP}noout{SEP}unset")
        assert (await confirm(pilot, app, acts, "marked out again")).ok
        await b.wait_until(pilot, lambda: "noout is not set" in section() and f"osd.{osd:<5} up/in" in section(),
                           "back as it was", tries=1500)
    entries = demo.client_factory().xrange(wire.operator_audit_key("demo-operator"))
    mine = [(e.action, e.target, e.result) for _i, f in entries
            if (e := trust._decode_entry(f)) is not None and e.action.startswith("ceph.")]
    assert mine == [("ceph.flag_set_noout", "noout", "ok"), ("ceph.osd_out", f"osd.{osd}", "ok"),
                    ("ceph.osd_in", f"osd.{osd}", "ok"), ("ceph.flag_unset_noout", "noout", "ok")]


async def test_before_a_drain_noout_is_offered_set_then_the_drain_dialog_follows(demo: modes.Backend) -> None:
    """What D (dashboard/k8s_ops.ask_drain) runs between the drain's plan and its dialog, on a tower that carries
    OSDs: the offer, the noout dialog, noout set on the simulated Ceph and audited, then the drain's dialog with
    the Ceph line. (The demo's Kubernetes has no drain; the drain itself is tested on the real control plane.)"""
    c = ceph_now(demo)
    host = sorted({o.host for o in c.osds if o.host})[0]
    app = demo_app(demo)
    notes: list[str | None] = []
    async with app.run_test(size=(160, 50)) as pilot:
        await b.wait_reads(pilot)
        acts = actions_of(app)
        ceph_ops.offer_noout(acts, app.view.state.cluster.get("ceph"), host, notes.append)
        await b.wait_until(pilot, lambda: isinstance(app.screen, PickDialog), "the offer", tries=1500)
        assert "carries 6 Ceph OSD(s), and noout is not set" in str(app.screen.query_one("#title").render())
        await pick(pilot, app, "noout")
        out = await confirm(pilot, app, acts, f"before draining {host}", "ceph.flag_set_noout")
        assert out.ok, out.text
        await b.wait_until(pilot, lambda: notes, "the drain's dialog asked for", tries=1500)
        assert notes[0].startswith("6 Ceph OSD(s) with ") and notes[0].endswith("; noout set just now"), notes
        await b.wait_until(pilot, lambda: ceph_ops.drain_note(app.view.state.cluster.get("ceph"), host)[1] is False,
                           "the next read shows noout set: no second offer", tries=1500)
        ceph_ops.offer_noout(acts, app.view.state.cluster.get("ceph"), host, notes.append)
        assert len(notes) == 2 and "noout is set" in notes[1]


async def test_without_ceph_access_the_keys_say_where_to_configure_it(demo: modes.Backend, tmp_path: Path) -> None:
    """A real store with a Ceph payload, no demo control and no [ceph]: r and o say what to add, and where."""
    cfg = tmp_path / "config.toml"
    settings = Settings(refresh_s=0.5, source_label="test", known=demo.known, config_file=str(cfg))
    app = make_app(settings, demo.client_factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("4")
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, StorageScreen)  # no dialog: nothing can be done
        msgs = [n.message for n in app._notifications]
        assert any(f"Ceph actions need [ceph] in {cfg}" in m for m in msgs), msgs
        app.open_node(sorted({o.host for o in ceph_now(demo).osds if o.host})[0])
        await pilot.pause()
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen)
        assert sum(f"Ceph actions need [ceph] in {cfg}" in n.message for n in app._notifications) == 2


async def test_read_only_hides_and_refuses_the_ceph_keys(demo: modes.Backend) -> None:
    settings = Settings(refresh_s=0.5, source_label=demo.label, known=demo.known, read_only=True,
                        demo_control=demo.demo_control, operator_key=demo.operator_key)
    app = make_app(settings, demo.client_factory)
    async with app.run_test(size=(120, 40)) as pilot:
        await b.wait_reads(pilot)
        await pilot.press("4")
        assert isinstance(app.screen, StorageScreen)
        assert app.screen.check_action("ceph_rbd", ()) is False
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, StorageScreen)
        # Called past the key (a stale binding, the palette): refused at the point of asking, and nothing is done.
        acts = actions_of(app)
        ceph_ops.ask_maint(acts, app.view.state.cluster.get("ceph"), "gpu01")
        ceph_ops.ask_flag(acts, "noout", True)
        await pilot.pause()
        assert not isinstance(app.screen, PickDialog)
        assert any("read-only" in n.message for n in app._notifications)
        if isinstance(app.screen, ConfirmDialog):  # ask_flag's dialog: a yes is refused by execute's own check
            await pilot.press("tab", "enter")
            await b.wait_until(pilot, lambda: any("refused" in n.message for n in app._notifications), "refused")
    assert flag_set(ceph_now(demo), "noout") is False  # nothing reached the simulated Ceph


# -- pure parts ----------------------------------------------------------------------------------------


def _payload(flags: str | None, osds: list[schema.CephOsd]) -> schema.ClusterPayload:
    checks = None if flags == "unknown" else (
        [schema.HealthCheck(code="OSDMAP_FLAGS", severity="HEALTH_WARN", message=f"{flags} flag(s) set")] if flags else [])
    return schema.ClusterPayload(name="ceph", ts=1.0, ceph=schema.Ceph(checks=checks, osds=osds))


OSDS = [schema.CephOsd(id=3, host="gpu-06", up=True, in_=True, used_bytes=2 * 1024**4),
        schema.CephOsd(id=4, host="gpu-06", up=True, in_=False, used_bytes=1024**4),
        schema.CephOsd(id=5, host="gpu-07", up=True, in_=True, used_bytes=1)]


def test_the_drain_note_and_when_noout_is_offered() -> None:
    note, offer = ceph_ops.drain_note(_payload(None, OSDS), "gpu-06.lab")  # an FQDN node, Ceph's short name
    assert offer and note.startswith("2 Ceph OSD(s) with 3.0 TiB of data; noout is NOT set"), note
    note, offer = ceph_ops.drain_note(_payload("noout,norebalance", OSDS), "gpu-06")
    assert not offer and "noout is set" in note
    note, offer = ceph_ops.drain_note(_payload("norebalance", OSDS), "gpu-06")
    assert offer  # norebalance alone is not noout
    note, offer = ceph_ops.drain_note(_payload("unknown", OSDS), "gpu-06")
    assert not offer and "unknown" in note
    assert ceph_ops.drain_note(_payload(None, OSDS), "gpu-01") == (None, False)
    assert ceph_ops.drain_note(None, "gpu-06") == (None, False)


def test_what_o_offers_follows_the_payload() -> None:
    ids = [i for i, _ in ceph_ops.maint_choices(_payload("noout", OSDS), "gpu-06")]
    assert ids == [f"flag{SEP}noout{SEP}unset", f"flag{SEP}norebalance{SEP}set", f"osd{SEP}3{SEP}out",
                   f"osd{SEP}4{SEP}in"]
    ids = [i for i, _ in ceph_ops.maint_choices(_payload("unknown", []), "gpu-06")]
    assert ids == [f"flag{SEP}noout{SEP}set", f"flag{SEP}noout{SEP}unset", f"flag{SEP}norebalance{SEP}set",
                   f"flag{SEP}norebalance{SEP}unset"]  # unknown: both ways, said as N/A


def test_what_r_offers_and_the_names_it_takes() -> None:
    images = [schema.RbdImage(pool="rbd", name="gold", snapshots=[
                  schema.RbdSnap(name="base", protected=True, children=["rbd/c1"]), schema.RbdSnap(name="wip")]),
              schema.RbdImage(pool="rbd", name="c1", parent="rbd/gold@base")]
    assert [i for i, _ in ceph_ops.rbd_choices(images, ("image", "rbd/gold"))] == ["snap create"]
    assert [i for i, _ in ceph_ops.rbd_choices(images, ("image", "rbd/c1"))] == ["snap create", "flatten"]
    assert [i for i, _ in ceph_ops.rbd_choices(images, ("snap", "rbd/gold", "base"))] == ["clone", "snap unprotect"]
    assert [i for i, _ in ceph_ops.rbd_choices(images, ("snap", "rbd/gold", "wip"))] == ["snap protect", "snap rm"]
    assert ceph_ops.rbd_choices(images, ("snap", "rbd/gold", "gone")) == []
    assert ceph_ops.snap_name_problem(images, "rbd/gold", "v2") is None
    assert "already has" in ceph_ops.snap_name_problem(images, "rbd/gold", "wip")
    for bad in ("", "a/b", "a@b", "a b", "x\u202ey", "\x1b[2J", "n" * 251, ".", ".."):
        assert ceph_ops.snap_name_problem(images, "rbd/gold", bad), bad
    assert ceph_ops.clone_problem(images, "rbd/new") is None and ceph_ops.clone_problem(images, "rbd/ns/new") is None
    assert ceph_ops.clone_problem(images, "rbd/c1") and ceph_ops.clone_problem(images, "new")
    assert ceph_ops.clone_problem(images, "rbd/a@b") and ceph_ops.clone_problem(images, "rbd/\x07")
    assert ceph_ops.clone_problem(images, "rbd/..")


def test_hostile_names_in_the_payload_are_never_offered() -> None:
    """The RBD tree is drawn from the Ceph payload; only names the CLI would take can be acted on: ".." as a
    snapshot would make DELETE .../image/rbd%2Fgold/snap/.. - the image itself, once the path is normalised."""
    assert ceph_ops.actionable(("image", "rbd/gold")) and ceph_ops.actionable(("snap", "rbd/gold", "base"))
    for t in (("snap", "rbd/gold", ".."), ("snap", "rbd/gold", "."), ("image", "rbd/.."), ("image", "rbd/a\x1b"),
              ("snap", "rbd/gold", "a b"), ("image", "nopool"), ("snap", "rbd/gold", "x\x1fy"), None):
        assert not ceph_ops.actionable(t), t


def test_ceph_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"

    def err(text: str, env: dict[str, str] | None = None) -> str:
        f.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_config(str(f), env or {})
        return str(e.value)

    good = '[ceph]\nurls = ["https://mgr-a:8443"]\nusername = "alice"\npassword_file = "~/ceph.pass"\n'
    assert err('[ceph]\nurls = ["https://mgr-a:8443"]\npassword_file = "p"\n') == \
        f"{f}: [ceph] username: required: your ceph-mgr dashboard user"
    assert err(good + 'password = "hunter2"\n').startswith(f"{f}: [ceph] password: not allowed")
    assert err(good.replace("https://mgr-a:8443", "ftp://x")) == f"{f}: [ceph] urls: not an http(s) URL: 'ftp://x'"
    assert err(good + "urlz = 1\n").startswith(f"{f}: [ceph] urlz: unknown key")
    assert err(good + "timeout = -1\n") == f"{f}: [ceph] timeout: must be > 0, got -1.0"
    assert err(good, {"CLUSTERTOP_CEPH_URL": "mgr-b:8443"}) == \
        "environment: CLUSTERTOP_CEPH_URL: not an http(s) URL: 'mgr-b:8443'"
    f.write_text(good)
    cfg = load_config(str(f), {"CLUSTERTOP_CEPH_USER": "bob"})
    assert cfg.ceph is not None and cfg.ceph.username == "bob" and cfg.ceph.password_file.endswith("/ceph.pass")
    assert cfg.settings("x").ceph == cfg.ceph and cfg.settings("x").config_file == str(f)
    # Only the environment: enough on its own, as for `clustertop ceph`.
    f.write_text("")
    cfg = load_config(str(f), {"CLUSTERTOP_CEPH_URL": "https://a:8443,https://b:8443", "CLUSTERTOP_CEPH_USER": "bob",
                               "CLUSTERTOP_CEPH_PASSWORD_FILE": "/p"})
    assert cfg.ceph is not None and cfg.ceph.urls == ["https://a:8443", "https://b:8443"]
    assert load_config(str(f), {}).ceph is None


async def test_an_unreadable_password_file_is_said_at_the_first_action(tmp_path: Path, redis_server: Any) -> None:
    from clustertop.dashboard.settings import CephAccess

    access = CephAccess(urls=["https://127.0.0.1:1"], username="alice", password_file=str(tmp_path / "nope"))
    settings = Settings(refresh_s=5, source_label="test", ceph=access, config_file="/etc/ct.toml")
    app = make_app(settings, lambda: redis_server.client())
    async with app.run_test(size=(100, 30)) as pilot:
        acts = actions_of(app)
        with pytest.raises(RuntimeError, match=r"^/etc/ct.toml: \[ceph\] password_file: cannot read"):
            acts.ceph()
        await pilot.pause()
