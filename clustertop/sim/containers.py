"""Provides the simulated towers' container engines: a couple of containers per tower (a Jupyter notebook, an
inference server), answering the Docker Engine API calls the agent makes, with the same JSON shapes.

``SimEngine`` has ``collectors.containers.Engine``'s methods (version, list, inspect, stats; stop, kill,
restart, create, start, remove) and answers as dockerd does (the shapes of the captures in
tests/fixtures/docker/). So the snapshot's ``containers`` section is made by the real collector's code
(``collectors.containers.read_engine`` and the parsers), and the demo's container commands are judged and
carried out by the real agent's ``ContainerControl`` (id + creation time, the pod-uid refusal, the policy,
templates) with this engine behind it instead of a socket.

Each engine draws from its own ``random.Random`` (seeded from the cluster's seed and the host), so adding
containers changes nothing else the simulator draws.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from clustertop.collectors import containers as engine_api
from clustertop.collectors.containers_parse import TEMPLATE_LABEL
from clustertop.sim.nodes import GIB
from clustertop.wire import schema

#: The towers' [collectors.containers] section, as a real agent's config would have it: commands may touch
#: every container (the simulated ones were not launched by clustertop), and one template to launch.
CONFIG: dict[str, Any] = {
    "socket": "unix:///run/docker.sock",  # never opened: the simulated engine stands behind it
    "control": "all",
    "templates": {
        "notebook": {"image": "quay.io/jupyter/scipy-notebook:2024-05-27",
                     "cmd": ["start-notebook.py", "--ServerApp.port={port}"], "params": {"port": "int"},
                     "network": "bridge", "description": "a Jupyter notebook server (simulated)"},
    },
}
ENGINE_VERSION = "24.0.7"
#: (name, image, cmd, cores busy, resident bytes, processes): what each tower runs from the start.
STANDING = (
    ("jupyter-{user}", "quay.io/jupyter/pytorch-notebook:cuda12-2024-05-27", ["start-notebook.py"], 0.15, 1.4 * GIB, 9),
    ("triton-embed", "nvcr.io/nvidia/tritonserver:24.05-py3", ["tritonserver", "--model-repository=/models"], 0.6,
     3.1 * GIB, 42),
)
USERS = ("alice", "bob", "chen", "dana")
#: What a signal leaves as the exit code (128 + the signal's number), as the engine reports it.
EXIT = {"TERM": 143, "KILL": 137, "INT": 130, "HUP": 129}


def _iso(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"  # the engine's "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def human(seconds: float) -> str:
    """Docker's ``units.HumanDuration`` ("Up 2 hours", "Exited (0) 3 minutes ago")."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // (24 * 7)} weeks"
    if h < 24 * 365 * 2:
        return f"{h // (24 * 30)} months"
    return f"{h // (24 * 365)} years"


class SimEngine:
    """One tower's container engine. Time is the simulator's: ``advance(now)`` at every tick."""

    def __init__(self, host: str, seed: int, now: float, cores: int, mem_total: int) -> None:
        self.rng = random.Random(f"{seed}/{host}/containers")
        self.host = host
        self.cores = cores
        self.mem_total = mem_total
        self.now = now
        self.boot = now - self.rng.uniform(3, 40) * 86400
        self.next_pid = self.rng.randrange(200_000, 300_000)
        self.items: dict[str, dict[str, Any]] = {}
        self._cpu: engine_api.CpuCounters = {}
        self.last: schema.Containers | None = None
        self.changed = False  # a command acted: the next tick reads the engine again
        for name, image, cmd, load, mem, procs in STANDING:
            created = now - self.rng.uniform(1, 20) * 86400
            c = self._make(name.format(user=self.rng.choice(USERS)), image, cmd, {}, created, load, int(mem), procs)
            self._run(c, created + self.rng.uniform(1, 5))
            c["cpu_ns"] = int(load * (now - c["started"]) * 1e9)

    def _make(self, name: str, image: str, cmd: list[str], labels: dict[str, str], created: float, load: float,
              mem: int, procs: int) -> dict[str, Any]:
        cid = f"{self.rng.getrandbits(256):064x}"
        c = {"id": cid, "name": name, "image": image, "cmd": list(cmd), "labels": dict(labels), "created": created,
             "state": "created", "started": None, "finished": None, "pid": 0, "exit": 0, "restarts": 0,
             "load": load, "mem": mem, "procs": procs, "cpu_ns": 0}
        self.items[cid] = c
        self.changed = True
        return c

    def _run(self, c: dict[str, Any], at: float) -> None:
        self.changed = True
        self.next_pid += self.rng.randrange(3, 900)
        c.update(state="running", started=at, pid=self.next_pid, exit=0)

    def _end(self, c: dict[str, Any], code: int) -> None:
        self.changed = True
        c.update(state="exited", finished=self.now, pid=0, exit=code)

    def advance(self, now: float) -> None:
        dt = max(0.0, now - self.now)
        self.now = max(self.now, now)
        for c in self.items.values():
            if c["state"] == "running":
                c["cpu_ns"] += int(c["load"] * (0.7 + 0.6 * self.rng.random()) * dt * 1e9)

    def published(self, full: bool, templates: list[schema.TemplateInfo] | None) -> schema.Containers:
        """This tick's section: read afresh on a full refresh or after a command changed something, else the
        last one (big clusters refresh their slow parts every few ticks)."""
        if full or self.changed or self.last is None:
            self.last = self.snapshot(templates)
            self.changed = False
        return self.last

    def snapshot(self, templates: list[schema.TemplateInfo] | None) -> schema.Containers:
        """What the agent's containers collector publishes, made by its own code from this engine's answers."""
        shown, total, self._cpu = engine_api.read_engine(self, 200, self._cpu, lambda ids: [self.stats(i) for i in ids])
        return schema.Containers(engine=f"Docker Engine {ENGINE_VERSION}", containers=shown, total=total,
                                 templates=templates, control=CONFIG["control"])

    # -- the Engine API's answers ---------------------------------------------------------------

    def _get(self, cid: str) -> dict[str, Any]:
        c = self.items.get(cid)
        if c is None:
            raise engine_api.EngineError(f"404: No such container: {cid[:64]}")
        return c

    def close(self) -> None:
        pass

    def version(self) -> Any:
        return {"Components": [{"Name": "Engine", "Version": ENGINE_VERSION}], "Version": ENGINE_VERSION,
                "ApiVersion": "1.43"}

    def _status(self, c: dict[str, Any]) -> str:
        if c["state"] == "running":
            return f"Up {human(self.now - c['started'])}"
        if c["state"] == "exited":
            return f"Exited ({c['exit']}) {human(self.now - c['finished'])} ago"
        return "Created"

    def list(self) -> Any:
        return [{"Id": c["id"], "Names": [f"/{c['name']}"], "Image": c["image"], "Command": " ".join(c["cmd"]),
                 "Created": int(c["created"]), "Labels": dict(c["labels"]), "State": c["state"],
                 "Status": self._status(c)} for c in self.items.values()]

    def inspect(self, cid: str) -> Any:
        c = self._get(cid)
        return {"Id": c["id"], "Created": _iso(c["created"]), "Name": f"/{c['name']}", "RestartCount": c["restarts"],
                "State": {"Status": c["state"], "Running": c["state"] == "running", "Pid": c["pid"],
                          "ExitCode": c["exit"], "StartedAt": _iso(c["started"]), "FinishedAt": _iso(c["finished"])},
                "Config": {"Image": c["image"], "Cmd": list(c["cmd"]), "Labels": dict(c["labels"])}}

    def stats(self, cid: str) -> Any:
        c = self._get(cid)
        if c["state"] != "running":
            return {"cpu_stats": {}, "memory_stats": {}, "pids_stats": {}}  # a stopped container's answer: empty
        cache = int(c["mem"] * 0.2)
        return {"cpu_stats": {"cpu_usage": {"total_usage": c["cpu_ns"]},
                              "system_cpu_usage": int((self.now - self.boot) * 1e9 * self.cores),
                              "online_cpus": self.cores},
                "memory_stats": {"usage": c["mem"] + cache, "limit": self.mem_total, "stats": {"inactive_file": cache}},
                "pids_stats": {"current": c["procs"]}}

    def stop(self, cid: str, grace_s: int) -> None:
        c = self._get(cid)
        if c["state"] == "running":
            self._end(c, 0)  # the servers here exit cleanly on SIGTERM, well within the grace period

    def kill(self, cid: str, signal: str = "KILL") -> None:
        c = self._get(cid)
        if c["state"] != "running":
            raise engine_api.EngineError(f"409: Cannot kill container: {cid[:64]}: Container {cid[:64]} is not running")
        if signal in ("TERM", "KILL", "INT", "HUP"):
            self._end(c, EXIT[signal])

    def restart(self, cid: str, grace_s: int) -> None:
        c = self._get(cid)
        if c["state"] == "running":
            self._end(c, 0)
        self._run(c, self.now)

    def create(self, name: str, body: dict[str, Any]) -> str:
        if any(c["name"] == name for c in self.items.values()):
            raise engine_api.EngineError(f"409: Conflict. The container name \"/{name}\" is already in use")
        labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
        load = 0.1 if labels.get(TEMPLATE_LABEL) else 0.3
        c = self._make(name, str(body.get("Image")), [str(a) for a in body.get("Cmd") or []], labels, self.now, load,
                       int(0.3 * GIB), 4)
        return str(c["id"])

    def start(self, cid: str) -> None:
        c = self._get(cid)
        if c["state"] != "running":
            self._run(c, self.now)

    def remove(self, cid: str) -> None:
        self.changed = True
        self.items.pop(cid, None)


__all__ = ["CONFIG", "SimEngine", "human"]
