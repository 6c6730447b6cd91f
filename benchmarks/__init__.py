"""Benchmarks: `python -m benchmarks` runs every benchmarks/bench_*.py and prints one table."""
