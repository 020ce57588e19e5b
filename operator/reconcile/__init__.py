"""Desired state vs actual state; all I/O through the injected client."""
