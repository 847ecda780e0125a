"""Total trial throughput with K concurrent worker processes on one device, to choose --workers-per-gpu.

    python -m bench.workers_per_gpu [--device auto] [--k 1,2,4,8] [--batch-size 100] [--data DIR]

Each worker is a spawned process, as a search worker is: it loads its own data, builds alexsearch's Trainer and
warms up once per batch size. The largest K's processes are started once and kept for every measurement, so
process start and CUDA initialisation are paid once. For each (K, batch) all processes meet at a barrier, then
the first K build a fresh Trainer, wait at a second barrier and train one epoch of `steps` batches while the
others wait. Total images/s is all K workers' images over the span from the first start to the last finish.
On CPU the workers share the cores (threads per worker = cores // K, as `alexsearch search` sets them), so
the total tops out once the cores are saturated: on 2 cores, two single-threaded workers beat one worker with
two threads (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass

import torch

from bench.data import TASK, load_bench_data
from model.alexnet import AlexNetConfig
from model.device import device_name, resolve_device
from model.tasks import Split, TaskData
from model.train import TrainConfig, Trainer

DEFAULT_STEPS = {"cpu": 5, "cuda": 450}  # at batch 100: 500 images on CPU, one 45,000-image epoch on CUDA
TIMEOUT_S = 3600
STOP_WAIT_S = 5  # seconds a worker gets to exit after terminate(), before kill()


@dataclass
class WorkerResult:
    images: int
    start: float  # time.time() at the barrier release, seconds
    end: float
    max_memory_mb: float  # peak device memory of this worker (CUDA only, else 0)


@dataclass
class Measurement:
    k: int
    batch: int
    workers: list[WorkerResult]

    @property
    def total_images_per_s(self) -> float:
        """All workers' images over the span from the first start to the last finish."""
        span = max(r.end for r in self.workers) - min(r.start for r in self.workers)
        return sum(r.images for r in self.workers) / span

    @property
    def per_worker_images_per_s(self) -> float:
        return sum(r.images / (r.end - r.start) for r in self.workers) / self.k

    @property
    def peak_memory_mb(self) -> float:
        return max(r.max_memory_mb for r in self.workers)


def _trainer(train: Split, n: int, batch: int, device: torch.device) -> Trainer:
    data = TaskData(Split(train.x[:n], train.y[:n]), Split(train.x[:10], train.y[:10]), "val")
    config = TrainConfig(optimizer="adam", lr=1e-3, batch_size=batch, epochs=1, seed=0)
    return Trainer(TASK, AlexNetConfig(), config, data, device)


def worker(
    rank: int,
    device_arg: str,
    data_root: str | None,
    plan: list[tuple[int, int]],
    steps: dict[int, int],
    cores: int,
    warmup: bool,
    everyone: mp.synchronize.Barrier,
    runners: list[mp.synchronize.Barrier],
    results: mp.Queue,
) -> None:
    try:
        device = resolve_device(device_arg)
        batches = sorted({batch for _, batch in plan})
        data, _ = load_bench_data(data_root, max(steps[b] * b for b in batches), 100, seed=rank)
        train = data.train.to(device)
        for batch in batches if warmup else []:  # warm-up: allocator, cuDNN/oneDNN plans
            next(_trainer(train, batch, batch, device).epochs())  # one step
        for (k, batch), ready in zip(plan, runners, strict=True):
            everyone.wait(timeout=TIMEOUT_S)  # the previous measurement is over for all
            if rank >= k:
                continue
            torch.set_num_threads(max(1, cores // k))  # the K runners share the cores
            trainer = _trainer(train, steps[batch] * batch, batch, device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            ready.wait(timeout=TIMEOUT_S)
            start = time.time()
            next(trainer.epochs())  # ends with the epoch's host sync
            end = time.time()
            memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
            results.put((rank, WorkerResult(steps[batch] * batch, start, end, memory)))
    except BaseException as e:  # the parent must hear of it, or it waits for this worker forever
        for barrier in [everyone, *runners]:
            barrier.abort()
        results.put((rank, f"{type(e).__name__}: {e}"))


def measure_plan(
    device_arg: str,
    data_root: str | None,
    plan: list[tuple[int, int]],
    steps: dict[int, int],
    cores: int,
    warmup: bool = True,
) -> Generator[Measurement, None, None]:
    """Yield one Measurement per (K, batch) of plan, in order; the K workers share `cores` CPU threads.
    The worker processes are stopped when the generator ends, fails or is closed (a caller's time box), so none
    outlives it."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    n = max(k for k, _ in plan)
    everyone, runners, results = ctx.Barrier(n), [ctx.Barrier(k) for k, _ in plan], ctx.Queue()
    procs = [
        ctx.Process(
            target=worker, args=(rank, device_arg, data_root, plan, steps, cores, warmup, everyone, runners, results)
        )
        for rank in range(n)
    ]
    for proc in procs:
        proc.start()
    try:
        for k, batch in plan:
            got = [results.get(timeout=TIMEOUT_S) for _ in range(k)]
            errors = [f"worker {rank}: {r}" for rank, r in got if isinstance(r, str)]
            if errors:
                raise RuntimeError("; ".join(errors))
            yield Measurement(k, batch, [r for _, r in got])
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(STOP_WAIT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.workers_per_gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--k", default="1,2,4,8", help="worker counts to try, comma-separated (default: 1,2,4,8)")
    p.add_argument("--batch-size", type=int, default=100, help="default: 100, the report's")
    p.add_argument("--steps", type=int, default=None, help="steps per worker (default: 5 on CPU, 450 on CUDA)")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads to share among the K workers (default: all cores)"
    )
    p.add_argument("--data", default=None, help="folder holding cifar-10-batches-py/ (default: synthetic images)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    steps = args.steps or DEFAULT_STEPS["cuda" if device.type == "cuda" else "cpu"]
    cores = args.threads or os.cpu_count() or 1
    ks = [int(x) for x in args.k.split(",")]
    print(
        f"workers on one {device_name(device)}: batch {args.batch_size}, {steps} steps each, "
        f"{cores} CPU threads shared",
        flush=True,
    )
    print(
        f"{'K':>3}  {'total img/s':>11}  {'per worker':>10}  {'vs K=1':>6}  {'s/epoch/trial':>13}  "
        f"{'peak MiB/worker':>15}",
        flush=True,
    )
    base = None
    plan = [(k, args.batch_size) for k in ks]
    for m in measure_plan(args.device, args.data, plan, {args.batch_size: steps}, cores):
        total = m.total_images_per_s
        base = base or total
        print(
            f"{m.k:>3}  {total:>11.1f}  {m.per_worker_images_per_s:>10.1f}  {total / base:>5.2f}x  "
            f"{50_000 / m.per_worker_images_per_s:>13.2f}  {m.peak_memory_mb:>15.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
