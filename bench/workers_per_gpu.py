"""Total trial throughput with K concurrent worker processes on one device, to choose --workers-per-gpu.

    python -m bench.workers_per_gpu [--device auto] [--k 1,2,4,8] [--batch-size 100] [--data DIR]

Each worker is a spawned process, as a search worker is: it loads its own data, builds alexsearch's Trainer,
warms up, waits at a barrier with the others, then trains one epoch of `steps` batches. Total images/s is all
workers' images over the span from the first start to the last finish. On CPU the workers share the cores
(threads per worker = cores // K, as `alexsearch search` sets them), so the total tops out once the cores are
saturated: on 2 cores, two single-threaded workers beat one worker with two threads (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass

import torch

from bench.data import TASK, load_bench_data
from model.alexnet import AlexNetConfig
from model.device import device_name, resolve_device
from model.tasks import Split, TaskData
from model.train import TrainConfig, Trainer

DEFAULT_STEPS = {"cpu": 5, "cuda": 450}  # at batch 100: 500 images on CPU, one 45,000-image epoch on CUDA
TIMEOUT_S = 3600


@dataclass
class WorkerResult:
    images: int
    start: float  # time.time() at the barrier release, seconds
    end: float
    max_memory_mb: float  # peak device memory of this worker (CUDA only, else 0)


def _trainer(train: Split, n: int, batch: int, device: torch.device) -> Trainer:
    data = TaskData(Split(train.x[:n], train.y[:n]), Split(train.x[:10], train.y[:10]), "val")
    config = TrainConfig(optimizer="adam", lr=1e-3, batch_size=batch, epochs=1, seed=0)
    return Trainer(TASK, AlexNetConfig(), config, data, device)


def worker(rank: int, device_arg: str, data_root: str | None, batch: int, steps: int, threads: int,
           barrier: mp.synchronize.Barrier, results: mp.Queue) -> None:
    try:
        torch.set_num_threads(threads)
        device = resolve_device(device_arg)
        data, _ = load_bench_data(data_root, steps * batch, 100, seed=rank)
        train = data.train.to(device)
        next(_trainer(train, 2 * batch, batch, device).epochs())  # warm-up: allocator, cuDNN/oneDNN plans
        trainer = _trainer(train, steps * batch, batch, device)
        barrier.wait(timeout=TIMEOUT_S)
        start = time.time()
        next(trainer.epochs())  # ends with the epoch's host sync
        end = time.time()
        memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
        results.put((rank, WorkerResult(steps * batch, start, end, memory)))
    except BaseException as e:  # the parent must hear of it, or it waits for this worker forever
        barrier.abort()
        results.put((rank, f"{type(e).__name__}: {e}"))


def measure(k: int, args: argparse.Namespace, steps: int, threads: int) -> list[WorkerResult]:
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    barrier, results = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(rank, args.device, args.data, args.batch_size, steps, threads,
                                              barrier, results)) for rank in range(k)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join()
    errors = [f"worker {rank}: {r}" for rank, r in got if isinstance(r, str)]
    if errors:
        raise RuntimeError("; ".join(errors))
    return [r for _, r in got]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.workers_per_gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--k", default="1,2,4,8", help="worker counts to try, comma-separated (default: 1,2,4,8)")
    p.add_argument("--batch-size", type=int, default=100, help="default: 100, the report's")
    p.add_argument("--steps", type=int, default=None, help="steps per worker (default: 5 on CPU, 450 on CUDA)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads to share among the K workers (default: all cores)")
    p.add_argument("--data", default=None, help="folder holding cifar-10-batches-py/ (default: synthetic images)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    steps = args.steps or DEFAULT_STEPS["cuda" if device.type == "cuda" else "cpu"]
    cores = args.threads or os.cpu_count() or 1
    print(f"workers on one {device_name(device)}: batch {args.batch_size}, {steps} steps each, "
          f"{cores} CPU threads shared", flush=True)
    print(f"{'K':>3}  {'total img/s':>11}  {'per worker':>10}  {'vs K=1':>6}  {'s/epoch/trial':>13}  "
          f"{'peak MiB/worker':>15}", flush=True)
    base = None
    for k in [int(x) for x in args.k.split(",")]:
        got = measure(k, args, steps, max(1, cores // k))
        span = max(r.end for r in got) - min(r.start for r in got)
        total = sum(r.images for r in got) / span
        per_worker = sum(r.images / (r.end - r.start) for r in got) / k
        base = base or total
        print(f"{k:>3}  {total:>11.1f}  {per_worker:>10.1f}  {total / base:>5.2f}x  {50_000 / per_worker:>13.2f}  "
              f"{max(r.max_memory_mb for r in got):>15.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
