"""Provides the collectors, the wire schema and the Redis key layout.

Importing this package imports nothing heavy: each collector module imports its library
(psutil, pynvml, httpx, kubernetes) itself, and the registry below names modules as strings
so the agent loads only the collectors it runs.
"""
