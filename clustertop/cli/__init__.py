"""Provides the `clustertop` command: the composition root, the one room that imports every other (lazily).

Nothing imports it (but ``clustertop.__main__``).
"""
