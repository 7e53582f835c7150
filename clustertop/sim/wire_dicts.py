"""Builds the preset deflate dictionaries of ``clustertop.wire.compress`` (a maintainer's tool, not run by agents).

    python -m clustertop.sim.wire_dicts KIND ID [--out clustertop/wire/dicts]

A dictionary for KIND (node, brief, digest, hist, seal) is that kind's payloads laid end to end: simulated ARM
boards, 2-, 4- and 8-GPU towers of several seeds (containers, pods, jobs, every collector the simulator
runs) and two ticks of the real collectors on the machine running this (command lines and user names
left out), cut to 32 KiB from the end.
Deflate refers back to the nearest match and codes near ones in fewer bits, so the dictionary is rounds of
one payload per shape (a board, this machine, 2-, 4-, 8-GPU towers), the first round last and ending in an
8-GPU tower: measured, that beats the 8-GPU towers alone at the end for every shape but those towers (+1 %).

The new file gets the ID given: a new id, never one shipped (a reader keeps every dictionary ever
shipped; changing one would make every payload packed with it unreadable). Add it to ``compress.DICTS``
and make it the kind's ``compress.CURRENT``; readers must be upgraded before agents use it. It prints what
the dictionary does to payloads of a seed it was not built from.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from clustertop import wire
from clustertop.agents.publisher import hist_point, seal
from clustertop.control import signing
from clustertop.sim.simulate import SimCluster
from clustertop.wire import compress, schema
from clustertop.wire.brief import brief
from clustertop.wire.digest import digest

LIMIT = 32 * 1024
#: Seals are mostly random (hashes, a signature): past a few of them a longer dictionary only adds noise.
LIMITS = {"seal": 1500}
T0 = 1_800_000_000.0

#: (seed, nodes, GPUs per tower; a third of the nodes towers, the rest ARM boards): what a dictionary learns from.
SHAPES = [(21, 9, 0), (22, 6, 2), (23, 6, 4), (24, 9, 8), (25, 9, 8), (26, 30, 8), (27, 30, 2), (28, 30, 4)]
#: The seed a dictionary is tried on (never one it was built from).
HELD_OUT = (1, 30, 8)

ENCODERS: dict[str, Callable[[schema.NodeSnapshot, schema.HistPoint], bytes]] = {
    "node": lambda s, h: wire.encode(s),
    "brief": lambda s, h: wire.encode(brief(s)),
    "digest": lambda s, h: wire.encode(digest(s)),
    "hist": lambda s, h: wire.encode(h),
    # A seal over random payload bytes with a fresh key: what repeats is its shape, never a hash.
    "seal": lambda s, h: wire.encode(seal(s.host, s, os.urandom(64), os.urandom(64), os.urandom(64), signing.new_key())),
}


def simulated(seed: int, nodes: int, gpus: int, ticks: int = 3) -> list[tuple[schema.NodeSnapshot, schema.HistPoint]]:
    """The last of ``ticks`` one-second ticks of a simulated cluster (rates and jobs under way by then)."""
    sim = SimCluster(seed=seed, nodes=nodes, gpus_per_node=gpus)
    out: list[tuple[schema.NodeSnapshot, schema.HistPoint]] = []
    for i in range(ticks):
        out, _ = sim.step(T0 + i)
    return out


def real() -> list[tuple[schema.NodeSnapshot, schema.HistPoint]]:
    """Two ticks of this machine's collectors, as ``clustertop agent --dry-run`` runs them (the second has rates)."""
    from clustertop.agents.agent import Agent
    from clustertop.agents.config import load_config

    agent = Agent(load_config(None, dict(os.environ), {}), dry_run=True)
    try:
        agent.tick()
        time.sleep(1.0)
        snap, _ = agent.tick()
    finally:
        agent.close()
    return [(scrubbed(snap), hist_point(snap))]


#: Fields of this machine's snapshot that never go into a shipped dictionary: what its processes were
#: started with and by whom is nobody's business (and a command line can hold a secret).
PRIVATE = frozenset({"cmdline", "user", "users", "env"})


def scrubbed(snap: schema.NodeSnapshot) -> schema.NodeSnapshot:
    """``snap`` with every PRIVATE field emptied, wherever it sits."""
    def clean(o: object) -> object:
        if isinstance(o, dict):
            return {k: (None if k in PRIVATE else clean(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    return msgspec.convert(clean(msgspec.to_builtins(snap)), schema.NodeSnapshot)


def build(kind: str, samples: list[tuple[schema.NodeSnapshot, schema.HistPoint]],
          here: list[tuple[schema.NodeSnapshot, schema.HistPoint]]) -> bytes:
    """Rounds of one payload per shape (ARM board, this machine, 2-, 4-, 8-GPU tower), the first round
    last: every shape is near the end, where deflate's matches are cheapest, and an 8-GPU tower ends it."""
    enc = ENCODERS[kind]
    shapes: dict[int, list[bytes]] = {}
    for s, h in samples:
        shapes.setdefault(len(s.gpus or []), []).append(enc(s, h))
    order = sorted(shapes)
    rounds = []
    for r in range(max(len(v) for v in shapes.values())):
        parts = [shapes[g][r] for g in order if r < len(shapes[g])]
        if r == 0:
            parts[1:1] = [enc(s, h) for s, h in here]  # this machine's, after the boards
        rounds.append(b"".join(parts))
    return b"".join(reversed(rounds))[-LIMITS.get(kind, LIMIT):]


def training() -> list[tuple[schema.NodeSnapshot, schema.HistPoint]]:
    out = []
    for seed, nodes, gpus in SHAPES:
        got = simulated(seed, nodes, gpus)
        out += got  # a small kind (digest, history point) fills its 32 KiB with many nodes
    return out


def trial(kind: str, zdict: bytes) -> str:
    """What ``zdict`` does to the held-out seed's towers and boards (mean bytes: raw, no dictionary, dictionary)."""
    enc = ENCODERS[kind]
    got = simulated(*HELD_OUT)
    lines = []
    for label, xs in (("8-GPU towers", [x for x in got if x[0].gpus]), ("ARM boards", [x for x in got if not x[0].gpus])):
        raw = [enc(s, h) for s, h in xs]
        plain = [len(zlib.compress(b, compress.LEVEL, -15)) for b in raw]
        primed = zlib.compressobj(compress.LEVEL, zlib.DEFLATED, -15, compress.MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict)
        with_dict = []
        for b in raw:
            c = primed.copy()
            with_dict.append(len(c.compress(b) + c.flush()) + 2)
        n = max(1, len(raw))
        lines.append(f"  {label}: {sum(map(len, raw)) / n:.0f} B, deflated {sum(plain) / n:.0f} B, "
                     f"with the dictionary {sum(with_dict) / n:.0f} B")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clustertop.sim.wire_dicts", description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=sorted(ENCODERS))
    ap.add_argument("id", type=int, help="a new dictionary id, 1-255, not in clustertop.wire.compress.DICTS")
    ap.add_argument("--out", type=Path, default=Path(compress.__file__).parent / "dicts")
    args = ap.parse_args(argv)
    path = args.out / f"{args.kind}-{args.id}.bin"
    shipped = compress.DICTS.get(args.id)
    if not 1 <= args.id <= 255 or path.exists() or (shipped is not None and (args.out / shipped).exists()):
        print(f"dictionary id {args.id} is shipped or out of range: ids are forever, pick a new one", file=sys.stderr)
        return 2
    zdict = build(args.kind, training(), real())
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zdict)
    print(f"{path}: {len(zdict)} bytes; add {{{args.id}: {path.name!r}}} to compress.DICTS and make it "
          f"CURRENT[{args.kind!r}]\n{trial(args.kind, zdict)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
