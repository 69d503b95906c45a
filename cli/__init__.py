"""The `mapsolve` command (entry point: mapsolve.cli.main:run)."""
