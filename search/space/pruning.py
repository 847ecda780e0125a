"""Pruning on falling validation accuracy: Optuna's pruners across trials, patience within a trial.

- Median (default): at epoch k, a trial below the median of earlier trials at epoch k is pruned,
  once `startup_trials` trials have completed and after `warmup_epochs` epochs.
- Hyperband: successive halving over epochs, from 1 epoch to the study's epochs.
- Patience: a trial whose own validation accuracy has not improved for `patience` epochs stops and
  COMPLETES with its best epoch's score. Overfitting (seen by the report after epoch 8) is a reason
  to stop training, not evidence of a bad config.
"""

from __future__ import annotations

import optuna

from search.errors import UsageError

PRUNERS = ("median", "hyperband", "none")


def make_pruner(kind: str, epochs: int, startup_trials: int, warmup_epochs: int) -> optuna.pruners.BasePruner:
    if kind == "median":
        # Steps are 1-based epochs and Optuna skips steps < n_warmup_steps, so +1 keeps
        # the first `warmup_epochs` epochs safe.
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs + 1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner: unknown pruner {kind!r} (allowed: {', '.join(PRUNERS)})")


class Patience:
    """Tracks the best epoch of one trial and says when it has gone `patience` epochs without improving."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = float("-inf")
        self.best_epoch = 0

    def update(self, epoch: int, value: float) -> None:
        if value > self.best:
            self.best, self.best_epoch = value, epoch

    def exhausted(self, epoch: int) -> bool:
        return self.patience > 0 and epoch - self.best_epoch >= self.patience
