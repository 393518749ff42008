"""Engines as the data path sees them: the pool that selects and claims them, and their HTTP API."""
