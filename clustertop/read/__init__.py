"""Provides the read model: the reader (one round trip), the cluster fold, the GPU ledger and the read plan.

May import: stdlib, msgspec, clustertop.wire. Clients are handed in; nothing here connects or draws.
"""
