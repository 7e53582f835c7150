"""Shared pieces of the bench scripts (a folder, so .ci/run's bench/*.py loop does not run it as a bench)."""
