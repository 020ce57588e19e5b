"""Pure builders: desired objects and status from specs. No I/O here."""
