"""Provides ``Running``: a real ``Agent`` run on a thread of the test, stopped and closed by ``close()``."""

from __future__ import annotations

import threading

from clustertop.agents.agent import Agent


class Running:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=agent.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.agent.close()
