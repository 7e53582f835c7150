"""Provides the `clustertop` command: the composition root that wires agents, store and dashboard.

This is the only package that may import both `agents` and `dashboard` (lazily, per subcommand).
"""

__version__ = "0.1.0"
