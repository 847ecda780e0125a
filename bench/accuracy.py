"""Same accuracy: the fast path (alexsearch's Trainer) against a plain fp32 loop, same seeds, same data.

For each seed both start from the same initial weights (torch.manual_seed(seed) before building the model) and
see the same batches in the same order with the same dropout seeds (the Trainer's per-epoch seeds), so what
differs is only how they compute: bf16 autocast, channels_last, fused optimizer, on-device normalisation.
Those rounding differences grow chaotically over training, so one seed's final accuracies differ by noise of
a point or two on a small subset; the check compares the mean over seeds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.data import TASK, normalised, sync
from model.alexnet import AlexNet, AlexNetConfig
from model.tasks import TaskData
from model.train import Precision, TrainConfig, Trainer, epoch_seed

TOLERANCE = 0.015  # allowed |mean val acc difference|, as a fraction (1.5 points)
PLAIN = "plain fp32 loop"


@dataclass
class AccuracyRun:
    name: str
    seed: int
    val_acc: float  # after the last epoch
    train_seconds: float  # all epochs, evaluation included
    images_per_s: float  # training images / train_seconds


def report_config(epochs: int, seed: int, precision: Precision = "auto") -> TrainConfig:
    """The report's final config: Adam, lr 1e-3, batch 100, no batch norm (AlexNetConfig's default)."""
    return TrainConfig(optimizer="adam", lr=1e-3, batch_size=100, epochs=epochs, seed=seed, precision=precision)


def run_fast(data: TaskData, config: TrainConfig, device: torch.device, name: str) -> AccuracyRun:
    trainer = Trainer(TASK, AlexNetConfig(), config, data, device)
    start = time.perf_counter()
    stats = list(trainer.epochs())
    seconds = time.perf_counter() - start
    return AccuracyRun(name, config.seed, stats[-1].val_acc, seconds, config.epochs * len(data.train) / seconds)


def run_plain(data: TaskData, config: TrainConfig, device: torch.device) -> AccuracyRun:
    """A hand-written fp32 loop over pre-normalised tensors, torch's default Adam."""
    torch.manual_seed(config.seed)
    model = AlexNet(AlexNetConfig()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = normalised(data.train.x.to(device)), data.train.y.to(device)
    vx, vy = normalised(data.eval.x.to(device)), data.eval.y.to(device)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        seed = epoch_seed(config.seed, epoch)
        torch.manual_seed(seed)  # dropout, as the Trainer seeds it
        generator = torch.Generator(device=device).manual_seed(seed)
        model.train()
        for idx in torch.randperm(len(y), device=device, generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(vx[i : i + 1000]).argmax(1) == vy[i : i + 1000]).sum()) for i in range(0, len(vy), 1000)
            )
    sync(device)
    seconds = time.perf_counter() - start
    return AccuracyRun(PLAIN, config.seed, correct / len(vy), seconds, config.epochs * len(y) / seconds)


def compare(
    data: TaskData, epochs: int, seeds: list[int], device: torch.device, bf16: bool, log=print
) -> list[AccuracyRun]:
    """Per seed: the plain loop, the Trainer at the device's default precision and (bf16=True, not on CUDA
    where it is already the default) the Trainer with bf16 autocast."""
    default = "bf16" if device.type == "cuda" else "fp32"
    runs = []
    for seed in seeds:
        runs.append(run_plain(data, report_config(epochs, seed), device))
        runs.append(run_fast(data, report_config(epochs, seed), device, f"Trainer ({default})"))
        if bf16 and device.type != "cuda":
            runs.append(run_fast(data, report_config(epochs, seed, "bf16"), device, "Trainer (bf16)"))
        log(f"seed {seed}: " + "  ".join(f"{r.name} {r.val_acc:.4f}" for r in runs if r.seed == seed))
    return runs


def format_runs(runs: list[AccuracyRun]) -> tuple[str, bool]:
    """The table (means over seeds), and whether every Trainer's mean is within TOLERANCE of the plain loop's."""
    names = list(dict.fromkeys(r.name for r in runs))
    by_name = {name: [r for r in runs if r.name == name] for name in names}
    plain = by_name[PLAIN]
    plain_acc = statistics.mean(r.val_acc for r in plain)
    plain_speed = statistics.mean(r.images_per_s for r in plain)
    lines = [
        f"{'run':<18} {'mean val acc':>12} {'diff (points)':>14} {'img/s':>8} {'speed vs plain':>15}"
        f"{'':6}  per-seed diffs (points)"
    ]
    ok = True
    for name in names:
        mine = by_name[name]
        acc = statistics.mean(r.val_acc for r in mine)
        diffs = " ".join(f"{100 * (r.val_acc - p.val_acc):+.2f}" for r, p in zip(mine, plain, strict=True))
        speed = statistics.mean(r.images_per_s for r in mine)
        within = name == PLAIN or abs(acc - plain_acc) <= TOLERANCE + 1e-12
        ok = ok and within
        verdict = "" if name == PLAIN else ("  PASS" if within else "  FAIL")
        lines.append(
            f"{name:<18} {acc:>12.4f} {100 * (acc - plain_acc):>+14.2f} {speed:>8.1f} "
            f"{speed / plain_speed:>14.2f}x{verdict:<6}  {diffs}"
        )
    return "\n".join(lines), ok
