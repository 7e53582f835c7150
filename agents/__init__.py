"""Provides the node daemon: config, runner, publisher, leases, the signed-command executor and tasks.

May import: clustertop.{wire,config,store,control,collectors}; never the dashboard, the simulator or the CLI.
"""
