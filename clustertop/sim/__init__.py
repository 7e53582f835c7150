"""Provides the simulated cluster (nodes, Ceph, queues, Kubernetes) written through the agent's own publisher.

May import: clustertop.{wire,config,store,agents,collectors}; never the dashboard or the CLI.
"""
