"""What the report reads from a study's trials: states, curves, epochs trained."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.trials import record
from search.trials.record import epochs_trained, is_duplicate, is_stopped


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


def value(t: FrozenTrial) -> float:
    """The value of a trial that complete() kept."""
    assert t.value is not None, f"trial {t.number} has no value"
    return t.value


def searched_params(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """The space's parameters in the order of the space file; else in order of first appearance."""
    space = study.user_attrs.get(record.SPACE) or {}
    names = list(space.get("params", {}))
    for t in trials:
        names += [n for n in t.params if n not in names]
    return names


def _items(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "all"


def data_caption(study_name: str, attrs: dict[str, Any]) -> str:
    """'study S: 45,000 train / 5,000 val items, 10 epochs per trial', for every figure's title."""
    search = attrs.get(record.SEARCH_CONFIG) or {}
    data = search.get("data") or {}
    size = attrs.get(record.DATA_SIZE) or {}  # what the workers loaded; older studies have only the settings
    text = (
        f"study {study_name}: {_items(size.get('train', data.get('train_size')))} train / "
        f"{_items(size.get('val', data.get('val_size')))} val items"
    )
    return text + (f", {search['epochs']} epochs per trial" if search.get("epochs") else "")


def final_line(attrs: dict[str, Any]) -> str | None:
    """The study's final test accuracy (`alexsearch final`), mean ± sample std over seeds; None if not run."""
    final = attrs.get(record.FINAL_RESULT) or {}
    mean = final.get("test_acc_mean")
    if mean is None:
        return None
    seeds = len(final.get("test_acc_per_seed") or []) or 1
    spread = f" ± {final['test_acc_std']:.4f}" if seeds > 1 and final.get("test_acc_std") is not None else ""
    trial = f"trial {final['trial']}, " if final.get("trial") is not None else ""
    return (
        f"final test accuracy: {mean:.4f}{spread} over {seeds} seed(s) ({trial}{final.get('epochs', '?')} "
        f"epochs on {_items(final.get('train_images'))} training images)"
    )
