"""Records and French identifiers: pure, no I/O."""
