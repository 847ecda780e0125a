"""Where each worker runs: GPU i mod G, K workers per GPU; on CPU the cores are split between workers; and the
host and Slurm job it runs in, which its trials record."""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from model.config import ConfigError, JsonConfig

# The default K of --workers-per-gpu, as measured: `make gpu-check` (bench/gpu_check.py) writes the best K it
# found on a GPU here, with the device and the results file it came from.
MEASURED_WORKERS_FILE = Path(__file__).with_name("workers_per_gpu.json")


@dataclass(frozen=True)
class MeasuredWorkers(JsonConfig):
    workers_per_gpu: int = 1
    device: str | None = None  # e.g. "NVIDIA H200"; None while never measured
    date: str | None = None  # YYYY-MM-DD of the measurement
    results: str | None = None  # the results file holding the K = 1, 2, 4, 8 figures, relative to the repo
    commit: str | None = None  # the commit that was measured

    def __post_init__(self) -> None:
        self.check_types()
        if self.workers_per_gpu < 1:
            raise ConfigError(f"MeasuredWorkers.workers_per_gpu must be >= 1, got {self.workers_per_gpu}")

    def describe(self) -> str:
        if self.device is None:
            return f"{self.workers_per_gpu}, not measured on a GPU yet"
        return f"{self.workers_per_gpu}, measured on {self.device} on {self.date}, see {self.results}"


def measured_workers(path: Path = MEASURED_WORKERS_FILE) -> MeasuredWorkers:
    """The measured default K; K = 1 (with a warning) if the file is missing or unreadable, so a broken file
    never stops the CLI."""
    try:
        return MeasuredWorkers.from_json(path.read_text())
    except (OSError, ConfigError) as e:
        warnings.warn(f"{path}: {e}; --workers-per-gpu defaults to 1", stacklevel=2)
        return MeasuredWorkers()


def write_measured_workers(measured: MeasuredWorkers, path: Path = MEASURED_WORKERS_FILE) -> Path:
    path.write_text(measured.to_json() + "\n")
    return path


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


def run_place(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where this worker runs, for its trials' user attrs: the host always; under Slurm the job id (array
    form '12_3' for an array task), the array task id and the restart count."""
    from search.trials import record  # here: placement is read by `--help`, record loads Optuna

    env = os.environ if environ is None else environ
    place = {record.HOST: env.get("SLURMD_NODENAME") or socket.gethostname()}
    if "SLURM_JOB_ID" in env:
        array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        place[record.SLURM_JOB_ID] = f"{array}_{task}" if array and task else env["SLURM_JOB_ID"]
        if task:
            place[record.SLURM_ARRAY_TASK_ID] = task
        place[record.SLURM_RESTART_COUNT] = env.get("SLURM_RESTART_COUNT", "0")
    return place
