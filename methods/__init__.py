"""Registered methods, one per file. Every module here is imported by ``benchmark.registry.METHODS``."""
