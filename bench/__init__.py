"""Benchmarks that print measured ratios: `python -m bench.throughput`, `python -m bench.workers_per_gpu`."""
