"""Provides the Prometheus side of clustertop: the whole cluster as one `/metrics` page.

``clustertop exporter`` (clustertop/cli/exporter.py) serves what ``Exporter`` (``exporter.py``) makes:
one read with the dashboard's own reader, folded into the text exposition format 0.0.4 by
``metrics.render`` and written by ``exposition.Exposition`` (escaping, bounds, one sample per series).

May import: stdlib, clustertop.wire, clustertop.read, clustertop.store, clustertop.config, clustertop.errors.
"""
