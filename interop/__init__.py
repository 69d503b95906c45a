"""Converters between mapsolve's files and other tools' (AccelForge's YAML in, its LoopTree mappings out)."""
