"""Where each worker runs: GPU i mod G, K workers per GPU; on CPU the cores are split between workers."""

from __future__ import annotations

import os


def visible_gpus() -> int:
    """CUDA devices visible to this process, counted without starting CUDA here (children start it)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(gpus: int, workers_per_gpu: int) -> int:
    return gpus * workers_per_gpu if gpus else 1


def gpu_for(worker_index: int, gpus: int) -> int | None:
    return worker_index % gpus if gpus else None


def threads_per_worker(workers: int, cores: int) -> int:
    return max(1, cores // workers)
