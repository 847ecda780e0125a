"""Same accuracy: the fast path (alexsearch's Trainer) against a plain fp32 loop, same seed, same data.

Both start from the same initial weights (torch.manual_seed(seed) before building the model) and see the same
batches in the same order with the same dropout seeds (the Trainer's per-epoch seeds), so what differs is only
how they compute: bf16 autocast, channels_last, fused optimizer, on-device normalisation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.data import TASK, normalised, sync
from model.alexnet import AlexNet, AlexNetConfig
from model.tasks import TaskData
from model.train import TrainConfig, Trainer, epoch_seed

TOLERANCE = 0.015  # allowed |val acc difference|, as a fraction (1.5 points)


@dataclass
class AccuracyRun:
    name: str
    val_acc: float  # after the last epoch
    train_seconds: float  # all epochs, evaluation included
    images_per_s: float  # training images / train_seconds


def report_config(epochs: int, precision: str = "auto") -> TrainConfig:
    """The report's final config: Adam, lr 1e-3, batch 100, no batch norm (AlexNetConfig's default)."""
    return TrainConfig(optimizer="adam", lr=1e-3, batch_size=100, epochs=epochs, seed=0, precision=precision)


def run_fast(data: TaskData, config: TrainConfig, device: torch.device, name: str) -> AccuracyRun:
    trainer = Trainer(TASK, AlexNetConfig(), config, data, device)
    start = time.perf_counter()
    stats = list(trainer.epochs())
    seconds = time.perf_counter() - start
    return AccuracyRun(name, stats[-1].val_acc, seconds, config.epochs * len(data.train) / seconds)


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
            correct = sum(int((model(vx[i:i + 1000]).argmax(1) == vy[i:i + 1000]).sum())
                          for i in range(0, len(vy), 1000))
    sync(device)
    seconds = time.perf_counter() - start
    return AccuracyRun("plain fp32 loop", correct / len(vy), seconds, config.epochs * len(y) / seconds)


def compare(data: TaskData, epochs: int, device: torch.device, bf16: bool) -> list[AccuracyRun]:
    """The plain loop first, then the Trainer at the device's default precision, then (bf16=True, not on CUDA
    where it is already the default) the Trainer with bf16 autocast."""
    runs = [run_plain(data, report_config(epochs), device),
            run_fast(data, report_config(epochs), device, f"Trainer ({'bf16' if device.type == 'cuda' else 'fp32'})")]
    if bf16 and device.type != "cuda":
        runs.append(run_fast(data, report_config(epochs, "bf16"), device, "Trainer (bf16)"))
    return runs


def format_runs(runs: list[AccuracyRun]) -> tuple[str, bool]:
    """The table, and whether every Trainer run is within TOLERANCE of the plain loop."""
    plain = runs[0]
    lines = [f"{'run':<18} {'val acc':>8} {'diff (points)':>14} {'seconds':>8} {'img/s':>8} {'speed vs plain':>15}"]
    ok = True
    for run in runs:
        diff = 100 * (run.val_acc - plain.val_acc)
        within = run is plain or abs(run.val_acc - plain.val_acc) <= TOLERANCE + 1e-12
        ok = ok and within
        verdict = "" if run is plain else ("  PASS" if within else "  FAIL")
        lines.append(f"{run.name:<18} {run.val_acc:>8.4f} {diff:>+14.2f} {run.train_seconds:>8.1f} "
                     f"{run.images_per_s:>8.1f} {run.images_per_s / plain.images_per_s:>14.2f}x{verdict}")
    return "\n".join(lines), ok
