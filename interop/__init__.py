"""Interop: converters between mapsolve's files and other tools' (AccelForge's YAML in, its LoopTree mappings
out; Timeloop's problem, mapping and architecture files out). docs/interop.md."""
