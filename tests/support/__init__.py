"""Shared test builders: real servers (Redis, Ceph, RabbitMQ, Kubernetes), cluster builders, the fake NVML."""
