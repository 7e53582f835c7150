"""Provides the collectors, one module per source with its pure parser beside it (``x.py``, ``x_parse.py``).

May import: stdlib, clustertop.wire, clustertop.config, clustertop.store; each collector imports its own
library (psutil, pynvml, httpx, kubernetes) itself, and ``base.REGISTRY`` names modules as strings so the
agent loads only the collectors it runs.
"""
