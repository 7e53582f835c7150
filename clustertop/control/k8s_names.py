"""Provides Kubernetes' name rules, without the Kubernetes client: the dashboard's ``:ns`` and picker and
``clustertop who --ns`` check names with them, and must not load control.kubernetes (it imports the collectors'
parsers; tests/test_layers.py keeps collector libraries out of the dashboard)."""

from __future__ import annotations

import re

#: An RFC 1123 label: a namespace's name (and most object names' parts).
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_namespace(text: object) -> bool:
    """Whether ``text`` can be a namespace's name: an RFC 1123 label (a-z, 0-9, '-'), at most 63 characters."""
    return isinstance(text, str) and len(text) <= 63 and LABEL.match(text) is not None
