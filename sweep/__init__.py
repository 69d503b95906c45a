"""Design-space sweeps: one base instance, a grid or list of changes, every point solved and re-verified."""
