"""Benchmarks that print measured ratios: `python -m bench.throughput`, `python -m bench.workers_per_gpu`, and
every GPU figure in one run: `python -m bench.gpu_check` (`make gpu-check`, docs/gpu-check.md)."""
