"""Dockyard: daemonless container images, builds, registry and pipelines."""

__version__ = "0.1.0"
