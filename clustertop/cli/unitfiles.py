"""Provides `clustertop systemd [FILE]`: the systemd units and sample configs shipped in the wheel.

A node installed with pip has no checkout to copy systemd/ from; the files travel as the data package
clustertop.systemd (pyproject.toml) and this prints them, e.g.

    clustertop systemd agent > /etc/systemd/system/clustertop-agent.service

Without FILE: the names, the files they print and the folder they are installed in.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

#: Short name -> the file in systemd/ (the names systemd/README.md uses).
FILES: dict[str, str] = {
    "agent": "clustertop-agent.service",
    "wall": "clustertop-wall.service",
    # launched tasks in units of their own (agents/taskexec.py): the socket and the unit it starts per task
    "task.socket": "clustertop-task.socket",
    "task@.service": "clustertop-task@.service",
    # drop-in for clustertop-agent.service: CAP_KILL, for [security] signal_users
    "signal-users.conf": "signal-users.conf",
    "agent.toml": "agent.toml.example",
    "agent.env": "agent.env.example",
    "dashboard.toml": "dashboard.toml.example",
    "readme": "README.md",
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("systemd", help="print a shipped systemd unit or sample config (agent, wall, agent.toml, ...)")
    p.add_argument("file", nargs="?", choices=sorted(FILES), metavar="FILE",
                   help=f"one of {', '.join(FILES)}; without it, list them")


def run(args: argparse.Namespace) -> int:
    folder = resources.files("clustertop.systemd")
    if args.file is None:
        text = "".join(f"{name:<18} {filename}\n" for name, filename in FILES.items())
        text += f"(installed in {folder})\n"
    else:
        text = (folder / FILES[args.file]).read_text(encoding="utf-8")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `clustertop systemd agent | head`: the reader had enough, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
    return 0
