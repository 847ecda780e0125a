"""What the report reads from a study's trials: states, curves, epochs trained."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.workers.loop import is_duplicate


def epochs_trained(t: FrozenTrial) -> int:
    """Epochs this trial trained: one intermediate value (validation accuracy) per epoch."""
    return len(t.intermediate_values)


def is_stopped(t: FrozenTrial) -> bool:
    """Completed early by patience (no improvement), with its best epoch's score."""
    return t.state == TrialState.COMPLETE and "stopped_reason" in t.user_attrs


def curves(t: FrozenTrial) -> tuple[list[float], list[float]] | None:
    """Per-epoch train and validation accuracy, or None for a trial that has not finished an epoch."""
    train, val = t.user_attrs.get("train_acc"), t.user_attrs.get("val_acc")
    if not train or not val:
        return None
    return list(train), list(val)


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Counts by state, with 'stopped' (complete, early) and 'duplicate' (pruned, skipped) apart."""
    counts: Counter[str] = Counter(t.state.name.lower() for t in trials)
    counts["stopped"] = sum(map(is_stopped, trials))
    counts["duplicate"] = sum(map(is_duplicate, trials))
    order = ("complete", "stopped", "pruned", "duplicate", "running", "waiting", "fail")
    return {k: counts.get(k, 0) for k in order}


def total_epochs(trials: list[FrozenTrial]) -> int:
    return sum(map(epochs_trained, trials))


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The highest value of the complete trials (the earliest on a tie, as Optuna picks); None if none."""
    return max(complete(trials), key=lambda t: (t.value, -t.number), default=None)


def complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def searched_params(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """The space's parameters in the order of the space file; else in order of first appearance."""
    space = study.user_attrs.get("space") or {}
    names = list(space.get("params", {}))
    for t in trials:
        names += [n for n in t.params if n not in names]
    return names


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt(v)}" for k, v in params.items())
