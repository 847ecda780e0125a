"""Images/s of alexsearch's Trainer against the usual DataLoader pipeline and a plain loop, in one run.

    python -m bench.throughput [--data DIR] [--device auto] [--quick]
    python -m bench.throughput --accuracy [--bf16]      # same-accuracy check instead of speed

Speed: for each round and batch size, the pipelines run one after another (A B C A B C ...), each for a fixed
number of steps on a fresh seeded model, so a noisy neighbour slows all of them alike; the table gives the
median over rounds. Without --data the images are synthetic uint8 of CIFAR-10's shape, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bench import accuracy, pipelines
from bench.data import load_bench_data
from bench.flops import bf16_peak_tflops, flops_per_image
from model.device import device_name, resolve_device

EPOCH_IMAGES = 50_000  # "seconds per epoch" means per 50,000 images, CIFAR-10's training set
# Steps per measurement: a few seconds each on 2 CPU cores; on CUDA about one 45,000-image epoch at batch >= 100.
DEFAULT_STEPS = {"cpu": {10: 20, 100: 6, 500: 3}, "cuda": {10: 2000, 100: 450, 500: 90}}
IMAGES_PER_MEASUREMENT = {"cpu": 500, "cuda": 45_000}  # for batch sizes not in DEFAULT_STEPS


@dataclass
class Pipeline:
    key: str  # a letter for the ratio columns
    name: str
    run: Callable[[int, int], float]  # (batch, steps) -> seconds
    rates: dict[int, list[float]] = field(default_factory=dict)  # batch -> images/s per round
    warmup_seconds: dict[int, float] = field(default_factory=dict)  # batch -> first (untimed) run, compile included

    def median(self, batch: int) -> float:
        return statistics.median(self.rates[batch])


def steps_for(batch: int, device: torch.device, args: argparse.Namespace) -> int:
    if args.steps:
        return args.steps
    kind = "cuda" if device.type == "cuda" else "cpu"
    return DEFAULT_STEPS[kind].get(batch, max(2, IMAGES_PER_MEASUREMENT[kind] // batch))


def make_pipelines(args: argparse.Namespace, device: torch.device, train_size: int) -> tuple[list[Pipeline], str]:
    data, described = load_bench_data(args.data, train_size, 100)
    train = data.train.to(device)  # the Trainer keeps it there anyway; the plain loop gets normalised floats
    train_float = pipelines.normalised_split(train)
    found = [
        Pipeline("a", "(a) Trainer", lambda b, s: pipelines.run_trainer(train, b, s, device)),
        Pipeline(
            "b",
            f"(b) DataLoader w={args.loader_workers}",
            lambda b, s: pipelines.run_dataloader(data.train, b, s, device, args.loader_workers),
        ),
        Pipeline("c", "(c) plain loop", lambda b, s: pipelines.run_plain(train_float, b, s, device)),
    ]
    if args.bf16:
        found.append(
            Pipeline("d", "(d) Trainer bf16", lambda b, s: pipelines.run_trainer(train, b, s, device, precision="bf16"))
        )
    if args.compile:
        found.append(
            Pipeline("e", "(e) Trainer compile", lambda b, s: pipelines.run_trainer(train, b, s, device, compile=True))
        )
    return found, f"{described}, {len(train)} training images"


def measure(
    found: list[Pipeline],
    batches: list[int],
    steps: dict[int, int],
    rounds: int,
    warmup_steps: int,
    log: Callable[[str], None],
) -> None:
    for batch in batches if warmup_steps else []:  # untimed: allocator, oneDNN/cuDNN plans, torch.compile
        for p in found:
            p.warmup_seconds[batch] = p.run(batch, warmup_steps)
    for r in range(rounds):
        for batch in batches:
            for p in found:
                p.rates.setdefault(batch, []).append(steps[batch] * batch / p.run(batch, steps[batch]))
            log(
                f"round {r + 1}/{rounds} batch {batch}: "
                + "  ".join(f"{p.key}={p.rates[batch][-1]:.1f}" for p in found)
            )


def format_table(found: list[Pipeline], batches: list[int], steps: dict[int, int], device: torch.device) -> str:
    by_key = {p.key: p for p in found}
    ratios = [("a", "b"), ("a", "c")] + [(k, "a") for k in "de" if k in by_key]
    cuda = device.type == "cuda"
    train_flops = flops_per_image()[1]
    peak = bf16_peak_tflops(device)
    head = [f"{'batch':>5}", f"{'steps':>5}"] + [f"{p.name + ' img/s':>{max(14, len(p.name) + 6)}}" for p in found]
    head += [f"{x}/{y:}".rjust(5) for x, y in ratios]
    if cuda:
        head += [f"{p.key} s/epoch".rjust(10) for p in found] + ["a TFLOP/s".rjust(9), "a % of bf16 peak".rjust(16)]
    lines = ["  ".join(head)]
    for batch in batches:
        row = [f"{batch:>5}", f"{steps[batch]:>5}"]
        row += [f"{p.median(batch):>{max(14, len(p.name) + 6)}.1f}" for p in found]
        row += [f"{by_key[x].median(batch) / by_key[y].median(batch):>5.2f}" for x, y in ratios]
        if cuda:
            row += [f"{EPOCH_IMAGES / p.median(batch):>10.2f}" for p in found]
            tflops = by_key["a"].median(batch) * train_flops / 1e12
            row += [f"{tflops:>9.2f}", f"{100 * tflops / peak:>15.1f}%" if peak else f"{'n/a':>16}"]
        lines.append("  ".join(row))
    if "e" in by_key:
        for batch in batches:
            extra = by_key["e"].warmup_seconds[batch] - by_key["a"].warmup_seconds[batch]
            eager, compiled = (10 * 45_000 / by_key[k].median(batch) for k in "ae")
            lines.append(
                f"compile at batch {batch}: first run +{extra:.1f} s; a 10-epoch trial of 45,000 images "
                f"would take {eager:.0f} s eager, {compiled + extra:.0f} s compiled"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=None, help="folder holding cifar-10-batches-py/ (default: synthetic images)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: auto)")
    p.add_argument("--batch-sizes", default="10,100,500", help="comma-separated (default: 10,100,500)")
    p.add_argument("--steps", type=int, default=None, help="steps per measurement (default: per batch size)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds of A B C (default: 3)")
    p.add_argument(
        "--loader-workers",
        type=int,
        default=0,
        help="DataLoader num_workers for (b); 0 as in Optuna's PyTorch example (default: 0)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--bf16", action="store_true", help="also (d) the Trainer with precision bf16")
    p.add_argument("--compile", action="store_true", help="also (e) the Trainer with torch.compile")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 round of 2 steps, no warm-up; with --accuracy 1 epoch of 100 images",
    )
    p.add_argument("--json", default=None, help="also write every measured rate to this file")
    acc = p.add_argument_group("same-accuracy check (--accuracy)")
    acc.add_argument(
        "--accuracy",
        action="store_true",
        help="train the report's config with the Trainer and a plain fp32 loop; compare val acc",
    )
    acc.add_argument("--epochs", type=int, default=None, help="default: 10 on CUDA, 3 elsewhere")
    acc.add_argument("--train-size", type=int, default=None, help="default: 45000 on CUDA, 5000 elsewhere")
    acc.add_argument("--val-size", type=int, default=None, help="default: 5000 on CUDA, 2000 elsewhere")
    acc.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="number of training seeds; means are compared (default: 3 on CUDA, 8 elsewhere, where "
        "one seed's difference is noise of about 2 points)",
    )
    acc.add_argument("--first-seed", type=int, default=0, help="seeds run from here (default: 0)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = args.steps or 2, 1
    return args


def run_accuracy(args: argparse.Namespace, device: torch.device) -> int:
    cuda = device.type == "cuda"
    epochs = args.epochs or (10 if cuda else 3)
    train_size = args.train_size or (45_000 if cuda else 5000)
    val_size = args.val_size or (5000 if cuda else 2000)
    n_seeds = args.seeds or (3 if cuda else 8)
    if args.quick:
        epochs, train_size, val_size, n_seeds = 1, min(train_size, 100), min(val_size, 100), 1
    data, described = load_bench_data(args.data, train_size, val_size)
    print(
        f"same accuracy on {device_name(device)}: {described}, {len(data.train)} train / {len(data.eval)} val, "
        f"{epochs} epochs, Adam lr 1e-3 batch 100, seeds {args.first_seed}..{args.first_seed + n_seeds - 1}",
        flush=True,
    )
    seeds = list(range(args.first_seed, args.first_seed + n_seeds))
    runs = accuracy.compare(data, epochs, seeds, device, args.bf16, lambda line: print(line, flush=True))
    table, ok = accuracy.format_runs(runs)
    print(table)
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict}: every Trainer's mean within {100 * accuracy.TOLERANCE:.1f} points of the plain loop's")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.accuracy:
        return run_accuracy(args, device)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    steps = {b: steps_for(b, device, args) for b in batches}
    found, described = make_pipelines(args, device, max(b * s for b, s in steps.items()))
    fwd, step = flops_per_image()
    print(
        f"throughput on {device_name(device)} ({torch.get_num_threads()} CPU threads), {described}; "
        f"{args.rounds} round(s), median images/s; AlexNet {fwd / 1e9:.3f} GFLOP/image forward, "
        f"{step / 1e9:.3f} to train",
        flush=True,
    )
    warmup_steps = 0 if args.quick and not args.compile else 1
    measure(found, batches, steps, args.rounds, warmup_steps, lambda line: print(line, flush=True))
    print(format_table(found, batches, steps, device))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device": device_name(device),
                    "threads": torch.get_num_threads(),
                    "data": described,
                    "steps": steps,
                    "rates": {p.name: p.rates for p in found},
                    "warmup_seconds": {p.name: p.warmup_seconds for p in found},
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
