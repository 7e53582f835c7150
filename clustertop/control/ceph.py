"""Provides Ceph operator actions over the ceph-mgr dashboard REST API, with the operator's own credentials.

RBD snapshots (create, protect, unprotect, delete), clone a protected snapshot into a new image and
flatten a clone (the golden-image workflow), the cluster-wide ``noout`` / ``norebalance`` flags for
maintenance, and marking an OSD out or in. Every call returns a ``Result`` that says in words what
happened, with the API's own error text when Ceph refused; nothing here raises for a Ceph problem.

The HTTP side (finding the active mgr, logging in, re-logging in, TLS) is the Ceph collector's
``CephApi``: one client for both sides. The credentials are the operator's (their dashboard user and
password file), never the agent's read-only ones.

Endpoints (checked against Ceph 16.2 Pacific's dashboard):
  POST   /api/block/image/{spec}/snap                 {snapshot_name, mirrorImageSnapshot}
  PUT    /api/block/image/{spec}/snap/{snap}          {is_protected}
  DELETE /api/block/image/{spec}/snap/{snap}
  POST   /api/block/image/{spec}/snap/{snap}/clone    {child_pool_name, child_image_name, child_namespace}
  POST   /api/block/image/{spec}/flatten
  GET/PUT /api/osd/flags                              [flags] / {flags: [every flag wanted]}
  PUT    /api/osd/{id}/mark                           {action: out|in}
The RBD ones are mgr "tasks": 201 when done within the mgr's wait, 202 while still running; then we
poll ``GET /api/task?name=`` until the task with the same metadata has finished.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from clustertop.collectors import ceph_parse
from clustertop.collectors.ceph import CephApi, CephError, Settings, parse_settings
from clustertop.control.celery import Result
from clustertop.errors import describe

#: The cluster flags an operator may set and unset from here (maintenance without data movement).
FLAGS = ("noout", "norebalance")
#: How long to wait for an RBD task the mgr answered 202 for (a flatten copies every object).
TASK_WAIT_S = 300.0
#: Pool, namespace, image and snapshot names: what ``rbd`` itself accepts, minus the separators and blanks.
_CHARS = re.compile(r"[^/@\s]{1,250}")


#: What each action does to the data, said before the operator confirms it (the CLI and the dashboard).
WARNINGS = {
    "snap create": "a point-in-time copy of the image; it costs space only as the image changes from now on",
    "snap protect": "it can be cloned; it cannot be deleted until unprotected",
    "snap rm": "the snapshot's data is gone for good",
    "snap unprotect": "Ceph refuses while clones still use it",
    "clone": "a new copy-on-write image whose parent is the snapshot: it reads the snapshot's data until written",
    "flatten": "copies the parent's data into the image (space and time); it no longer depends on the snapshot",
    "flag set noout": "OSDs that go down stay in: no data moves while they are away; health shows OSDMAP_FLAGS",
    "flag unset noout": "OSDs down longer than mon_osd_down_out_interval are marked out again and data moves",
    "flag set norebalance": "no rebalancing moves while it is set; health shows OSDMAP_FLAGS",
    "flag unset norebalance": "pending rebalancing starts",
    "osd out": "its placement groups move to the other OSDs (unless noout/norebalance hold them)",
    "osd in": "placement groups move back onto it",
}
#: The operator's Ceph access in the environment, for ``clustertop ceph`` and the dashboard alike
#: (variable -> key of the dashboard's ``[ceph]``; the URL variable is comma-separated).
ENV = {"CLUSTERTOP_CEPH_URL": "urls", "CLUSTERTOP_CEPH_USER": "username",
       "CLUSTERTOP_CEPH_PASSWORD_FILE": "password_file", "CLUSTERTOP_CEPH_CA_FILE": "ca_file"}


def name_problem(text: str) -> str | None:
    """Why ``text`` cannot be a pool, image or snapshot name (None: it can)."""
    if _name_ok(text):
        return None
    if not text:
        return "empty"
    if len(text) > 250:
        return "longer than 250 characters"
    if text in (".", ".."):
        return "not \".\" or \"..\""
    return "no '/', '@', blanks or control characters"


def _name_ok(text: str) -> bool:
    """A name part: no separators, blanks or invisible characters (controls, bidi overrides, zero-width), and
    not "." or "..": as a URL path segment those climb (".../snap/.." would be the image itself)."""
    return bool(_CHARS.fullmatch(text)) and text not in (".", "..") \
        and not any(unicodedata.category(ch).startswith("C") for ch in text)


class SpecError(ValueError):
    """POOL/IMAGE or POOL/IMAGE@SNAP is malformed; the message says how."""


def parse_spec(text: str, snap: bool) -> tuple[str, str | None]:
    """``pool[/namespace]/image[@snap]`` -> (image spec, snapshot). ``snap`` says whether one is required
    (True) or refused (False)."""
    image, at, name = text.partition("@")
    parts = image.split("/")
    if len(parts) not in (2, 3) or not all(_name_ok(p) for p in parts):
        raise SpecError(f"expected POOL/IMAGE{'@SNAP' if snap else ''} (or POOL/NAMESPACE/IMAGE), got {text!r}")
    if snap and not (at and _name_ok(name)):
        raise SpecError(f"expected a snapshot: POOL/IMAGE@SNAP, got {text!r}")
    if not snap and at:
        raise SpecError(f"expected an image, not a snapshot: POOL/IMAGE, got {text!r}")
    return image, (name if snap else None)


def _path(spec: str, *rest: str) -> str:
    # The mgr takes the image spec as one path segment: "rbd%2Fdb-golden".
    return "/".join(["/api/block/image", quote(spec, safe=""), *(quote(r, safe="") for r in rest)])


def settings_from(urls: list[str], username: str | None, password_file: str | None, ca_file: str | None = None,
                  verify: bool = True, timeout_s: float = 30.0, where: str = "command line") -> Settings:
    """The operator's access, validated as the collector's ``[collectors.ceph]`` is (ConfigError names the key)."""
    options: dict[str, Any] = {"urls": urls, "username": username, "password_file": password_file,
                               "verify": verify, "request_timeout": timeout_s, "detail_interval": 0}
    if ca_file:
        options["ca_file"] = ca_file
    return parse_settings(options, where)


class CephControl:
    """Operator actions on one Ceph cluster. ``clock``/``sleep`` are for waiting on mgr tasks."""

    def __init__(self, settings: Settings, task_wait_s: float = TASK_WAIT_S,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = CephApi(settings, clock)
        self.task_wait_s, self.clock, self.sleep = task_wait_s, clock, sleep

    def close(self) -> None:
        self.api.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, what: str, method: str, path: str, body: Any = None, version: str | None = None) -> Result:
        try:
            data, resp = self.api.request(method, path, body=body, version=version)
            if resp.status_code == 202 and isinstance(data, dict) and isinstance(data.get("name"), str):
                return self._wait_task(what, data["name"], data.get("metadata"))
        except CephError as e:
            return Result(False, f"{what}: {_refusal(str(e))}")
        except Exception as e:  # noqa: BLE001 - the operator gets the reason, not a traceback
            return Result(False, f"{what}: {describe(e)}")
        return Result(True, what, {"answer": data})

    def _wait_task(self, what: str, name: str, metadata: Any) -> Result:
        """Poll the mgr's task list until the task with this name and metadata has finished."""
        deadline = self.clock() + self.task_wait_s
        while True:
            data, _ = self.api.get("/api/task", {"name": name})
            for t in (data or {}).get("finished_tasks") or () if isinstance(data, dict) else ():
                if isinstance(t, dict) and t.get("metadata") == metadata:
                    if t.get("success"):
                        return Result(True, what, {"task": name})
                    exc = t.get("exception") or {}
                    detail = exc.get("detail") if isinstance(exc, dict) else None
                    return Result(False, f"{what}: refused by Ceph: {detail or 'task failed, no reason given'}")
            if self.clock() >= deadline:
                return Result(False, f"{what}: still running in the mgr after {self.task_wait_s:.0f} s "
                                     f"(task {name}); look again later")
            self.sleep(0.5)

    # -- RBD -------------------------------------------------------------------------------------

    def snap_create(self, spec: str, snap: str) -> Result:
        return self._call(f"created snapshot {spec}@{snap}", "POST", _path(spec, "snap"),
                          {"snapshot_name": snap, "mirrorImageSnapshot": False})

    def snap_protect(self, spec: str, snap: str, protect: bool = True) -> Result:
        verb = "protected" if protect else "unprotected"
        return self._call(f"{verb} snapshot {spec}@{snap}", "PUT", _path(spec, "snap", snap),
                          {"is_protected": protect})

    def snap_remove(self, spec: str, snap: str) -> Result:
        return self._call(f"deleted snapshot {spec}@{snap}", "DELETE", _path(spec, "snap", snap))

    def clone(self, spec: str, snap: str, child: str) -> Result:
        """A new image ``child`` (pool[/ns]/image) whose parent is the protected ``spec@snap``."""
        parts = child.split("/")
        pool, ns, image = (parts[0], None, parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])
        return self._call(f"cloned {spec}@{snap} into {child}", "POST", _path(spec, "snap", snap, "clone"),
                          {"child_pool_name": pool, "child_namespace": ns, "child_image_name": image})

    def flatten(self, spec: str) -> Result:
        """Copy the parent's data into the clone: it stands alone (no parent) afterwards."""
        return self._call(f"flattened {spec} (no parent now)", "POST", _path(spec, "flatten"))

    # -- cluster flags and OSDs --------------------------------------------------------------------

    def flags(self) -> list[str]:
        data, _ = self.api.get("/api/osd/flags")
        if not isinstance(data, list) or not all(isinstance(f, str) for f in data):
            raise CephError("Ceph /api/osd/flags: answer is not a list of flag names")
        return data

    def set_flag(self, flag: str, on: bool) -> Result:
        """Set or unset one cluster flag. The API takes the whole set (and refuses to drop the permanent
        ones, e.g. sortbitwise), so read the flags and send them back with this one changed."""
        what = f"{'set' if on else 'unset'} {flag}"
        if flag not in FLAGS:
            return Result(False, f"{what}: refused: only {', '.join(FLAGS)} can be changed here")
        try:
            current = self.flags()
        except CephError as e:
            return Result(False, f"{what}: {_refusal(str(e))}")
        if (flag in current) == on:
            return Result(True, f"{what}: already {'set' if on else 'unset'}, nothing changed", {"flags": current})
        wanted = sorted(set(current) | {flag}) if on else [f for f in current if f != flag]
        r = self._call(what, "PUT", "/api/osd/flags", {"flags": wanted})
        if r.ok:
            answer = r.data.get("answer")
            r.data = {"flags": answer if isinstance(answer, list) else wanted}
            r.text = f"{what}: cluster flags now {', '.join(r.data['flags'])}"
        return r

    def host_osds(self, host: str) -> tuple[list[Any], list[str]]:
        """Before a node's maintenance: the OSDs Ceph places on ``host`` (``schema.CephOsd``: up/in, used and
        total bytes, PGs) and the cluster flags now. Raises CephError when Ceph cannot be read."""
        osds = ceph_parse.parse_osds(self.api.get("/api/osd")[0])
        return [o for o in osds if o.host == host], self.flags()

    def osd_mark(self, osd_id: int, action: str) -> Result:
        """``out``: its data moves to the other OSDs (unless noout/norebalance hold it); ``in``: back."""
        if action not in ("out", "in"):
            return Result(False, f"osd.{osd_id}: refused: action must be out or in, got {action!r}")
        what = f"marked osd.{osd_id} {action}"
        # The mon answers success for an OSD that does not exist ("osd.7 does not exist"): look first.
        try:
            osds = ceph_parse.parse_osds(self.api.get("/api/osd")[0])
        except CephError as e:
            return Result(False, f"{what}: {_refusal(str(e))}")
        if not any(o.id == osd_id for o in osds):
            return Result(False, f"{what}: refused: the cluster has no osd.{osd_id} "
                                 f"(it has {', '.join(f'osd.{o.id}' for o in osds) or 'none'})")
        return self._call(what, "PUT", f"/api/osd/{int(osd_id)}/mark", {"action": action})


def _refusal(text: str) -> str:
    """CephApi's "Ceph PUT /api/...: HTTP 400: <detail>" read as Ceph's refusal, the detail kept whole."""
    m = re.match(r"Ceph (?:[A-Z]+ )?\S+: HTTP (4\d\d): (.*)", text, re.S)
    return f"refused by Ceph (HTTP {m.group(1)}): {m.group(2)}" if m else text
