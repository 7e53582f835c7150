"""Data only: the systemd units and sample configs, shipped in the wheel as clustertop.systemd.

Read them with ``importlib.resources.files("clustertop.systemd")``, or print one with
``clustertop systemd agent`` (wall, agent.toml, agent.env); systemd/README.md says where each goes.
Nothing here is imported by the code; the package exists so the files travel with it.
"""
