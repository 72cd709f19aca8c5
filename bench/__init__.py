"""Benchmarks: ``python -m bench.NAME``; each prints a table and, last, one JSON line."""
