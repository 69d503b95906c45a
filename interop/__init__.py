"""Interop: mapsolve mappings written for other tools (docs/interop.md)."""
