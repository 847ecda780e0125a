"""Where each worker runs: GPU i mod G, K workers per GPU; on CPU the cores are split between workers."""

from __future__ import annotations

import os


def visible_gpu_ids() -> list[str]:
    """The CUDA devices this process may use, as ids for a child's CUDA_VISIBLE_DEVICES.

    Children see only their own GPU, so a user's CUDA_VISIBLE_DEVICES=2,3 must map to "2" and "3", not 0 and 1.
    """
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(gpus: int, workers_per_gpu: int) -> int:
    return gpus * workers_per_gpu if gpus else 1


def gpu_for(worker_index: int, gpu_ids: list[str]) -> str | None:
    """Worker i gets GPU i mod G."""
    return gpu_ids[worker_index % len(gpu_ids)] if gpu_ids else None


def threads_per_worker(workers: int, cores: int) -> int:
    return max(1, cores // workers)
