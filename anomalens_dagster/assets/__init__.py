"""Thin assets, one module per group: read inputs, call one core function, write, attach metadata."""
