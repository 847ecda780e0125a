"""The study's note in optuna-dashboard: what was searched, on what data, how, and where.

Written once, when the study is created, so the dashboard tells the search's setup without a notebook.
"""

from __future__ import annotations

import optuna

from search.settings import SearchConfig
from search.space.space import Space
from search.trials.trial_config import versions


def _size(n: int | None, default: str) -> str:
    return f"{n:,}" if n is not None else default


def study_note(settings: SearchConfig, space: Space, device_name: str) -> str:
    """Markdown: search space, data split, budget, sampler, pruner, stopping rules, device and versions."""
    data = settings.data
    pruner = (
        settings.pruner
        if settings.pruner == "none"
        else (
            f"{settings.pruner} (no pruning in the first {settings.warmup_epochs} epoch(s) of a trial; "
            f"median waits for {settings.startup_trials} completed trial(s))"
        )
    )
    patience = (
        f"stop a trial after {settings.patience} epoch(s) without a better val_acc; it completes with "
        "its best epoch's score"
        if settings.patience
        else "off (every trial runs all its epochs)"
    )
    lines = [
        f"## {settings.study}",
        "",
        f"Task `{settings.task}`; the trial value is the best validation accuracy over its epochs "
        "(intermediate values: validation accuracy per epoch, step = epoch).",
        "",
        "### Search space",
        f"From {space.source}:",
        "",
        *[f"- {part}" for part in space.describe().split("; ")],
        "",
        "### Data split",
        f"- validation: {_size(data.val_size, 'the task default')} images held out of the training set "
        f"(stratified, split seed {data.split_seed})",
        f"- training: {_size(data.train_size, 'all that remain')} images",
        f"- data folder: `{data.root}`; the test set is never read by the search",
        "",
        "### Budget and rules",
        f"- trials: {settings.trials} finished (complete or pruned), {settings.epochs} epochs each",
        f"- strategy: {settings.strategy}; sampler: {settings.sampler} (seed {settings.seed})",
        f"- pruner: {pruner}",
        f"- warm-up: {settings.warmup_epochs} epoch(s)",
        f"- patience: {patience}",
        f"- training seed: {settings.seed}",
        "",
        "### Device and versions",
        f"- device: {device_name} (as given: `{settings.device}`; each trial records the device it ran on)",
        "- " + ", ".join(f"{name} {version}" for name, version in versions().items()),
    ]
    return "\n".join(lines) + "\n"


def save_study_note(study: optuna.Study, text: str) -> None:
    """Store text as the study's note (optuna-dashboard keeps it in study system attrs, versioned)."""
    from optuna_dashboard import save_note  # 20 ms to import: only where a study is created, not in workers

    save_note(study, text)
