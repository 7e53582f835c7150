"""Provides the demo's simulated agents' job control: each simulated node reads its cmd:{host} stream and
answers signed commands as a real agent does, acting on the simulated cluster's processes.

Everything but the act itself is the real agent's code: ``SimExecutor`` is an
``agents.commands.CommandExecutor`` (signature and trust check, node identity, replay log, expiry and
lifetime policy, node-signed result and audit entry), with ``_signal`` and ``_launch`` acting on the
``SimCluster``'s jobs instead of /proc and real processes. Container verbs go through the real
``agents.container_commands.ContainerControl`` to the tower's simulated engine (sim/containers.py). The operator key it trusts is the demo's
ephemeral one (``demo_operator``), generated at start in a private temp dir: nothing is read from or
written to the user's own config.

The executors run in the simulator's thread, between ticks (``SimAgents.poll``), so a kill and the
model's step never race; a node whose stream was never written to costs nothing (one KEYS per tick).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from clustertop import wire
from clustertop.agents.commands import SIGNALS, CommandExecutor, Refused, _identity_int, _str_arg
from clustertop.agents.container_commands import ContainerControl
from clustertop.collectors.base import Roots
from clustertop.control import signing
from clustertop.sim.containers import CONFIG as CONTAINERS_CONFIG
from clustertop.sim.nodes import Job, sim_ticks, sim_uid
from clustertop.wire import schema

log = logging.getLogger("clustertop.sim.agents")

#: What a simulated node can launch: a template name -> the GPUs its training run takes (the model, user
#: and command line are drawn as for the simulator's own jobs).
TEMPLATES = {"train": 1, "train-2gpu": 2}


def template_infos() -> list[schema.TemplateInfo]:
    """TEMPLATES as the towers' snapshots advertise them (the dashboard's launcher lists these)."""
    return [schema.TemplateInfo(name=n, description=f"simulated training run on {g} GPU{'s' if g > 1 else ''}")
            for n, g in sorted(TEMPLATES.items())]


class DemoOperator:
    """The demo's ephemeral operator key: written (0600) into a fresh private temp dir, removed at exit."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="clustertop-demo-")  # 0700, this process's own
        self.key_path, self.pub_path, self.key_id = signing.generate(self.dir, "demo-operator")

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class SimExecutor(CommandExecutor):
    """One simulated node's command executor: the real verifier and recorder, simulated acts."""

    def __init__(self, sim: Any, host: str, client_factory: Callable[[], Any], operator: DemoOperator,
                 clock: Callable[[], float]) -> None:
        state = os.path.join(operator.dir, "nodes", host)  # seen.log and tasks/, per node, in the temp dir
        os.makedirs(state, mode=0o700, exist_ok=True)
        # allow_root: the simulated pods' processes run as root (as many containers do), and a demo that refuses
        # every pod process would show one refusal; nothing real is ever signalled here.
        cfg = {"security": {"operator_keys": [operator.pub_path], "allow_root": True}, "templates": {},
               "state_dir": state}
        # Roots at an empty dir: nothing of this machine's /proc is ever looked at or signalled.
        empty = os.path.join(operator.dir, "no-proc")
        os.makedirs(empty, exist_ok=True)
        super().__init__(client_factory, host, cfg, roots=Roots(proc=empty, sys=empty), state_dir=state,
                         clock=clock, node_key=sim.keys[host])
        self.sim = sim
        self.block_ms = None  # type: ignore[assignment]  # polled between ticks: never wait
        # Container verbs: the real ContainerControl (its config as a tower's agent would have it, its checks and
        # policy), with the tower's simulated engine where the socket's client would be. Never the default
        # config's: that one names this machine's /run/docker.sock, and the demo must not touch real containers.
        self.containers.close()
        engine = getattr(sim, "engines", {}).get(host)
        if engine is not None:
            self.containers = ContainerControl.from_config({"containers": CONTAINERS_CONFIG}, None)
            self.containers._engine = engine
        else:
            self.containers = ContainerControl()  # an ARM board: "no container engine on this node"

    def _node(self) -> Any:
        return self.sim.by_host[self.node]

    def _signal(self, cmd: schema.Command) -> schema.CommandResult:
        pid = cmd.args.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise Refused(f"pid must be a positive int, got {pid!r}")
        ticks = _identity_int(cmd.args, "start_ticks")
        if ticks is None:
            raise Refused("start_ticks required (pid alone does not identify a process)")
        uid = _identity_int(cmd.args, "uid")
        name = str(cmd.args.get("signal") or "TERM").upper().removeprefix("SIG")
        if name not in SIGNALS:
            raise Refused(f"signal {name} not allowed (allowed: {', '.join(SIGNALS)})")
        node = self._node()
        job = next((j for j in self.sim.running if j.host == self.node and j.pid == pid), None)
        if job is None:
            # The simulated services (Celery workers, daemons) are scenery: only training jobs end on a signal.
            raise Refused(f"no simulated training job with pid {pid} on {self.node} (already gone, or a "
                          "simulated service process, which the demo does not signal)")
        if sim_ticks(job.start, node.boot_ts) != ticks:
            raise Refused(f"pid reused: pid {pid} started at tick {sim_ticks(job.start, node.boot_ts)}, not {ticks}")
        job_uid = sim_uid(job.user)
        if uid is not None and job_uid != uid:
            raise Refused(f"pid reused: pid {pid} belongs to uid {job_uid}, not {uid}")
        if job_uid is not None and job_uid < self.security.min_uid and not self.security.allow_root:
            raise Refused(f"pid {pid} belongs to uid {job_uid} (below min_uid {self.security.min_uid}; "
                          "[security] allow_root is off)")
        # The job ends at the next step: its GPUs free, its pod (if any) gone from Kubernetes.
        job.end = min(job.end, self.clock())
        log.info("simulated signal %s to pid %s on %s (command %r)", name, pid, self.node, cmd.id)
        return self._result(cmd, "done", None, data={"pid": pid, "signal": name, "group": False,
                                                     "user": job.user, "simulated": True})

    def _launch(self, cmd: schema.Command) -> schema.CommandResult:
        name = _str_arg(cmd, "template")
        if name not in TEMPLATES:
            raise Refused(f"unknown template {name!r} (this node has: {', '.join(sorted(TEMPLATES))})")
        want = TEMPLATES[name]
        node = self._node()
        if not node.tower:
            raise Refused(f"{self.node} has no GPUs (a simulated ARM board runs Celery workers only)")
        now = self.clock()
        idle = [i for i, g in enumerate(node.gpus) if g.job is None]
        if len(idle) < want:
            raise Refused(f"{self.node} has {len(idle)} idle GPU(s); template {name!r} needs {want}")
        job: Job = self.sim._new_job(now, k8s=False, gpus_wanted=want)
        self.sim._start_job(node, idle[:want], now, job=job)
        return self._result(cmd, "done", None, data={"pid": job.pid, "template": name, "simulated": True})


class SimAgents:
    """The simulated nodes' executors, made when a node's command stream first appears."""

    def __init__(self, sim: Any, client_factory: Callable[[], Any], operator: DemoOperator,
                 clock: Callable[[], float]) -> None:
        self.sim = sim
        self.client_factory = client_factory
        self.operator = operator
        self.clock = clock
        self.executors: dict[str, SimExecutor] = {}
        self._hosts: dict[bytes, str] = {}

    def poll(self, client: Any, now: float) -> int:
        """Judge every command waiting for a simulated node. Returns how many were looked at."""
        if len(self._hosts) != len(self.sim.hosts):
            self._hosts = {wire.cmd_key(h).encode(): h for h in self.sim.hosts}
        n = 0
        for raw in client.keys(wire.cmd_key("*")):
            host = self._hosts.get(raw if isinstance(raw, bytes) else str(raw).encode())
            if host is None:
                continue  # a stream for a node the demo does not have: nobody answers, as on a real cluster
            ex = self.executors.get(host)
            if ex is None:
                ex = self.executors[host] = SimExecutor(self.sim, host, self.client_factory, self.operator,
                                                        self.clock)
                ex.client = client
                ex.ensure_group()
                n += ex.process_pending()
            n += ex.poll_once()
        return n

    def close(self) -> None:
        for ex in self.executors.values():
            ex._seen.close()
            ex.task_mgr.close()
