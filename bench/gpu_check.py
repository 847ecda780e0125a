"""Every GPU figure in one command (`make gpu-check`), each step in a time box that this script enforces.

    python -m bench.gpu_check [--data DIR] [--device auto] [--out bench/results] [--grid-budget S] [--toy]

Steps, in order: 1. pytest -m gpu; 2. throughput of the Trainer, the DataLoader pipeline and a plain loop;
3. workers per GPU (the best K becomes --workers-per-gpu's CUDA default); 4. a checkpoint and a best-weights
copy as fractions of an epoch; 5. the report's 36-config Table-1 grid through the CLI, stopped at --grid-budget
and extrapolated; 6. the shortened bf16 same-accuracy check. A step that runs out of time is stopped, marked
"timed out" with what it measured so far, and the run goes on. The results are rewritten after every step to
OUT/gpu-YYYYMMDD-<device>.json and .md. Without CUDA (or with --toy) every step runs at toy scale (a few hundred
images, 1 epoch, K = 1, 2), and the GPU-only figures are listed as not measured. docs/gpu-check.md explains.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from bench import gpu_report, gpu_steps
from bench.data import has_cifar, write_synthetic_cifar
from bench.gpu_steps import GPU, GRID_STOP_GRACE_S, TOY, Context
from model.device import device_name, resolve_device

REPO = Path(__file__).resolve().parents[1]
STEPS: list[tuple[str, Callable[[Context, dict], None]]] = [
    ("pytest", gpu_steps.step_pytest),
    ("throughput", gpu_steps.step_throughput),
    ("workers", gpu_steps.step_workers),
    ("checkpoint", gpu_steps.step_checkpoint),
    ("grid", gpu_steps.step_grid),
    ("accuracy", gpu_steps.step_accuracy),
]
GRID_READ_S = 10  # the grid's time box beyond budget + stop grace: reading the study, extrapolating
MIN_BOX_S = 5


class StepTimedOut(BaseException):
    """Raised by the time box's alarm. A BaseException, so no `except Exception` inside a step swallows it."""


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[None]:
    """Raise StepTimedOut in the main thread after `seconds` of wall clock."""

    def on_alarm(_signum: int, _frame: object) -> None:
        raise StepTimedOut(f"time box of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def commit() -> str:
    """HEAD (with +dirty when the tree has changes), or $GPU_CHECK_COMMIT where the copy has no .git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GPU_CHECK_COMMIT", "unknown")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        default="data",
        help="folder holding cifar-10-batches-py/; without one, synthetic images in that layout are "
        "written to the scratch folder (default: data)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="results folder (default: bench/results)")
    p.add_argument(
        "--grid-budget",
        type=float,
        default=None,
        help="seconds the Table-1 grid may run before it is stopped and extrapolated "
        f"(default: {GPU.grid_budget:.0f}; {TOY.grid_budget:.0f} at toy scale)",
    )
    p.add_argument("--toy", action="store_true", help="toy scale even on CUDA (the default without CUDA)")
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated steps to run, the others are skipped ({', '.join(n for n, _ in STEPS)})",
    )
    p.add_argument("--work", default=None, help="scratch folder, kept afterwards (default: a temporary one)")
    args = p.parse_args(argv)
    if args.only:
        unknown = set(args.only.split(",")) - {n for n, _ in STEPS}
        if unknown:
            p.error(f"--only: unknown step {sorted(unknown)[0]!r} (allowed: {', '.join(n for n, _ in STEPS)})")
    if args.grid_budget is not None and args.grid_budget <= 0:
        p.error(f"--grid-budget: must be > 0 seconds, got {args.grid_budget}")
    return args


def run(args: argparse.Namespace, argv: list[str], work: Path) -> int:
    started = time.perf_counter()
    device = resolve_device(args.device)
    scale = TOY if args.toy or device.type != "cuda" else GPU
    deadline = started + scale.total_s
    date = datetime.date.today().isoformat()
    name = device_name(device)
    stem = gpu_report.file_stem(date, name, scale is TOY)
    real = has_cifar(args.data)
    if real:
        data_root, described = args.data, f"CIFAR-10 from {args.data}"
    else:
        data_root = str(write_synthetic_cifar(work / "data", scale.synthetic_train, 100))
        described = (
            f"synthetic images in the CIFAR-10 layout ({scale.synthetic_train} training images; "
            f"no cifar-10-batches-py under {args.data!r})"
        )
    ctx = Context(
        device,
        args.device,
        scale,
        data_root,
        described,
        work,
        REPO,
        f"bench/results/{stem}.json",
        commit(),
        date,
        grid_budget=args.grid_budget or scale.grid_budget,
        log=lambda line: print(line, flush=True),
    )
    results: dict = {
        "command": " ".join(["python -m bench.gpu_check", *argv]),
        "commit": ctx.commit,
        "date": date,
        "device": name,
        "device_type": device.type,
        "scale": scale.name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "data": described,
        "real_cifar10": real,
        "total_time_box_s": scale.total_s,
        "steps": {},
    }
    print(
        f"gpu-check on {name} ({device.type}), {scale.name} scale; torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}; commit {ctx.commit}\ndata: {described}\nwhole run's time box "
        f"{scale.total_s:.0f} s; results: {Path(args.out) / stem}.json/.md",
        flush=True,
    )
    for number, (step, function) in enumerate(STEPS, start=1):
        record: dict = {}
        results["steps"][step] = record
        if args.only and step not in args.only.split(","):
            record["status"] = "skipped"
            continue
        left = deadline - time.perf_counter()
        if step == "grid":  # its budget, less what the whole run's box no longer allows, but not below the floor
            fits = left - scale.boxes["accuracy"] - GRID_STOP_GRACE_S - GRID_READ_S
            ctx.grid_budget = min(ctx.grid_budget, max(scale.grid_min_budget, fits))
            box = ctx.grid_budget + GRID_STOP_GRACE_S + GRID_READ_S
        else:
            box = max(MIN_BOX_S, min(scale.boxes[step], left))
        record["time_box_s"] = box
        print(f"\n== step {number}/{len(STEPS)}: {step} (time box {box:.0f} s)", flush=True)
        start = time.perf_counter()
        try:
            with time_box(box):
                function(ctx, record)
            record.setdefault("status", "ok")
        except StepTimedOut:
            record["status"] = "timed out"
            print(f"step {step}: stopped by its time box of {box:.0f} s; the run goes on", flush=True)
        except Exception as e:
            record.update(status="error", error=f"{type(e).__name__}: {e}")
            traceback.print_exc()
        record["seconds"] = time.perf_counter() - start
        results["total_seconds"] = time.perf_counter() - started
        results["gpu_only_not_measured"] = gpu_report.not_measured(results)
        paths = gpu_report.write(results, Path(args.out), stem)  # after every step: a killed run leaves a file
    print("\n" + gpu_report.markdown(results), flush=True)
    print(f"written: {paths[0]}\n         {paths[1]}\nwall time {results['total_seconds']:.0f} s", flush=True)
    if results["gpu_only_not_measured"] and device.type != "cuda":
        print("GPU-only figures NOT measured here (no CUDA): " + "; ".join(results["gpu_only_not_measured"]))
    return 1 if any(r.get("status") in ("error", "failed") for r in results["steps"].values()) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, argv, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
