"""clustertop: the whole GPU/ML cluster as one machine (agents -> Redis -> dashboard).

The rooms (docs/architecture.md has the picture and tests/test_layers.py checks who may import whom):
  wire        the one typed schema, its codec and key layout, the brief and digest forms
  config      strict TOML and typed sections: errors name the file and key
  store       connections to Redis (redis-py for the dashboard, the agent's own RESP client)
  read        the read model: the reader, the cluster fold, the GPU ledger, the read plan
  control     job control's clients: signing, the command client, Kubernetes/Celery/Dask control
  collectors  one module per source, its pure parser beside it      (folder collectors/)
  agents      the node daemon: runner, publisher, leases, executor  (folder agents/)
  sim         the simulated cluster behind `clustertop demo` and `clustertop simulate`
  export      the Prometheus exposition of a read, and its HTTP server (`clustertop exporter`)
  dashboard   the Textual app                                       (folder dashboard/)
  themes      theme files and their loader                          (folder themes/)
  systemd     data only: the systemd units and sample configs       (folder systemd/)
  cli         the `clustertop` command: the one place that composes the rest; nothing imports it
"""

__version__ = "0.1.0"
