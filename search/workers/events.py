"""The event lines a worker writes while it runs trials, and how a display reads them back.

Workers write one line per event, whole (through a queue to the local launcher's parent, or to a log file
that a Slurm watcher reads). The display counts this run's finished trials and measures epoch times from
the same lines, so every format lives here, next to its parser. No torch, no Optuna: the display side
imports this too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# A worker's lines start with "[wN] " when several share one terminal.
_PREFIX = r"(?:\[[^\]]*\] )?"
_FINISHED = re.compile(_PREFIX + r"trial (\d+) (completed|pruned):")
_EPOCH = re.compile(_PREFIX + r"trial (\d+) epoch (\d+)/(\d+): .* ([0-9.]+)s [0-9.]+ img/s$")


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in params.items())


def started(trial: int, params: dict[str, Any], worker: str) -> str:
    return f"trial {trial} started on {worker}: {fmt_params(params)}"


def epoch(
    trial: int,
    epochs: int,
    k: int,
    train_loss: float,
    train_acc: float,
    val_acc: float,
    seconds: float,
    images_per_s: float,
) -> str:
    return (
        f"trial {trial} epoch {k}/{epochs}: loss {train_loss:.4f} train_acc {train_acc:.4f} "
        f"val_acc {val_acc:.4f} {seconds:.1f}s {images_per_s:.0f} img/s"
    )


def in_epoch(trial: int, epochs: int, k: int, steps: int, total_steps: int, images_per_s: float) -> str:
    """Progress inside a long epoch (no trailing 's img/s' pair: not an epoch time)."""
    return f"trial {trial} epoch {k}/{epochs}: step {steps}/{total_steps}, {images_per_s:.0f} img/s so far"


def pruned(trial: int, reason: str) -> str:
    return f"trial {trial} pruned: {reason}"


def completed(trial: int, value: float, best_epoch: int, epochs_trained: int) -> str:
    return f"trial {trial} completed: val_acc {value:.4f} at epoch {best_epoch} of {epochs_trained}"


def new_best(trial: int, value: float, previous: tuple[int, float] | None) -> str:
    was = f" (was trial {previous[0]}, {previous[1]:.4f})" if previous else " (the first complete trial)"
    return f"new best: trial {trial}, val_acc {value:.4f}{was}"


@dataclass(frozen=True)
class Parsed:
    finished_trial: int | None = None  # a trial that completed or was pruned (counts towards the budget)
    epoch_seconds: float | None = None  # wall time of a finished epoch
    epoch: tuple[int, int] | None = None  # (k, E) of a finished epoch


def parse(line: str) -> Parsed:
    m = _FINISHED.match(line)
    if m:
        return Parsed(finished_trial=int(m.group(1)))
    m = _EPOCH.match(line)
    if m:
        return Parsed(epoch_seconds=float(m.group(4)), epoch=(int(m.group(2)), int(m.group(3))))
    return Parsed()
