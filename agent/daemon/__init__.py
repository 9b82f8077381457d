"""The daemon: a server link around the A/B install (see docs/daemon.md)."""
