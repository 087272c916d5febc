"""composer: a Compose-file orchestrator on an embedded, daemonless container runtime."""

__version__ = "0.1.0"
