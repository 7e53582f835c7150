"""Alerts as a service: the rule set over ``read.cluster.alerts``, evaluated headless by the lease holder,
kept signed in Redis and delivered to Alertmanager (docs/architecture.md, "Alerts")."""
