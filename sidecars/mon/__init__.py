"""hastack."""
