"""Provides job control's clients: signing, the signed-command client, Kubernetes/Celery/Dask control.

May import: stdlib, clustertop.{wire,config,store}; each control imports its own library lazily.
"""
