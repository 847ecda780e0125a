"""The objective: train the sampled config, report validation accuracy each epoch, prune, return the best.

Around that thin core: a checkpoint from a background thread at most every --checkpoint-every seconds, resume
of a retried trial from its original's last checkpoint, and no second training of a config that has already
been trained. Each epoch is ONE database write: its intermediate value and its numbers in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from model.device import device_name
from model.errors import DivergedError
from model.tasks import TaskData
from model.train import EpochStats, Trainer
from search.settings import SearchConfig
from search.space.pruning import Patience
from search.space.space import Space
from search.trials.stepwise import trial_values
from search.trials.trial_config import TrialConfig, versions
from search.workers.loop import is_duplicate
from search.workers.signals import stop_requested
from storage.checkpoints import CheckpointWriter
from storage.rdb import record
from storage.sqlite import deciding

Log = Callable[[str], None]
CURVES = ("train_acc", "val_acc", "train_loss", "epoch_seconds", "images_per_s")
_STAT_OF_CURVE = {"epoch_seconds": "seconds"}  # curve name -> EpochStats field where they differ
# Called when a trial completes: (trial, value, trainer, curves). The best-trial artifacts hook.
FinishHook = Callable[[optuna.Trial, float, Trainer, dict[str, list[float]]], None]


def epoch_line(trial_number: int, epochs: int, s: EpochStats) -> str:
    return (f"trial {trial_number} epoch {s.epoch}/{epochs}: loss {s.train_loss:.4f} "
            f"train_acc {s.train_acc:.4f} val_acc {s.val_acc:.4f} {s.seconds:.1f}s {s.images_per_s:.0f} img/s")


def retry_root(trial: optuna.Trial) -> int:
    """The number of the first trial in this trial's retry chain (itself if it is not a retry)."""
    attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    return attrs.get("failed_trial", trial.number)


def duplicate_of(trial: optuna.Trial) -> int | None:
    """An earlier trial with the same params that finished or is running, if any.

    An enqueued trial that another worker has just claimed may not have written its params yet (its claim and
    each param are separate transactions): its enqueued values (fixed_params) stand in for them.
    """
    with deciding():  # decides whether this trial trains: sees the other workers' writes in flight
        trials = trial.study.get_trials(deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    for t in trials:
        if t.number < trial.number and trial_values(t) == trial.params and not is_duplicate(t):
            return t.number
    return None


class Objective:
    def __init__(self, space: Space, settings: SearchConfig, data: TaskData, device: torch.device,
                 log: Log = print, checkpoints: CheckpointWriter | None = None,
                 on_complete: FinishHook | None = None) -> None:
        self.space, self.settings, self.data, self.device, self.log = space, settings, data, device, log
        self.checkpoints, self.on_complete = checkpoints, on_complete
        self.versions = versions()
        self.current_trial_id: int | None = None  # the trial this process is running, for signal cleanup

    def config_for(self, trial: optuna.Trial) -> TrialConfig:
        values = self.space.sample(trial)
        overrides = {"epochs": self.settings.epochs, "seed": self.settings.seed}
        if self.settings.precision is not None:
            overrides["precision"] = self.settings.precision
        model, train = self.space.build(values, **overrides)
        return TrialConfig(self.space.task.name, model.to_dict(), train, self.settings.data)

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial_id = trial._trial_id
        config = self.config_for(trial)
        earlier = duplicate_of(trial)
        if earlier is not None:
            reason = f"duplicate of trial {earlier}: this config was already trained"
            record(trial, {"duplicate_of": earlier, "pruned_reason": reason})
            self.log(f"trial {trial.number} skipped: {reason}")
            raise optuna.TrialPruned(reason)
        record(trial, {"config": config.to_dict(), "seed": config.train.seed, "device": device_name(self.device),
                       "versions": self.versions})
        root = retry_root(trial)
        if self.checkpoints is not None:
            self.checkpoints.start_trial()
        trainer = Trainer(self.space.task, config.model_config(), config.train, self.data, self.device,
                          should_stop=stop_requested)
        history = self._resume(trial, trainer, config, root)
        try:
            value, curves = self._train(trial, trainer, config, root, history)
        except DivergedError as e:
            reason = f"diverged: {e}"
            trial.set_user_attr("pruned_reason", reason)
            self.log(f"trial {trial.number} pruned: {reason}")
            self._drop_checkpoint(root)
            raise optuna.TrialPruned(reason) from None
        except optuna.TrialPruned:
            self._drop_checkpoint(root)
            raise
        if self.on_complete is not None:
            self.on_complete(trial, value, trainer, curves)
        self._drop_checkpoint(root)
        return value

    def _resume(self, trial: optuna.Trial, trainer: Trainer, config: TrialConfig, root: int) -> list[dict]:
        """Load the retry chain's checkpoint into trainer; return the epochs it already trained."""
        if self.checkpoints is None or root == trial.number:
            return []
        state = self.checkpoints.load(root)
        if state is None:
            return []
        if state.get("config") != config.to_dict():
            self.log(f"trial {trial.number}: checkpoint of trial {root} has another config; starting over")
            return []
        trainer.load_state_dict(state)
        trial.set_user_attr("resumed_from", {"trial": root, "epoch": trainer.epoch})
        self.log(f"trial {trial.number}: resuming trial {root} after epoch {trainer.epoch}")
        return list(state["history"])

    def _checkpoint(self, root: int, trainer: Trainer, config: TrialConfig) -> None:
        if self.checkpoints is not None:  # a background write, when one is due
            self.checkpoints.after_epoch(root, lambda: {**trainer.state_dict(), "config": config.to_dict()})

    def _drop_checkpoint(self, root: int) -> None:
        if self.checkpoints is not None:
            self.checkpoints.delete(root)

    def _record(self, trial: optuna.Trial, curves: dict[str, list[float]], patience: Patience,
                stats: dict[str, Any]) -> None:
        for key in CURVES:
            curves[key].append(stats[_STAT_OF_CURVE.get(key, key)])
        patience.update(stats["epoch"], stats["val_acc"])
        attrs = {**{k: list(v) for k, v in curves.items()}, "best_epoch": patience.best_epoch}
        record(trial, attrs, step=stats["epoch"], value=stats["val_acc"])  # the epoch's one database write

    def _train(self, trial: optuna.Trial, trainer: Trainer, config: TrialConfig, root: int,
               history: list[dict]) -> tuple[float, dict[str, list[float]]]:
        epochs = config.train.epochs
        patience = Patience(self.settings.patience)
        curves: dict[str, list[float]] = {key: [] for key in CURVES}
        for stats in history:  # a resumed trial carries its original's learning curve on
            self._record(trial, curves, patience, stats)
        for s in trainer.epochs():
            self._checkpoint(root, trainer, config)
            self._record(trial, curves, patience, s.as_dict())
            self.log(epoch_line(trial.number, epochs, s))
            if trial.should_prune():
                reason = (f"val_acc {s.val_acc:.4f} at epoch {s.epoch} fell below the "
                          f"{self.settings.pruner} pruner's bar")
                trial.set_user_attr("pruned_reason", reason)
                self.log(f"trial {trial.number} pruned: {reason}")
                raise optuna.TrialPruned(reason)
            if s.epoch < epochs and patience.exhausted(s.epoch):
                reason = (f"no val_acc improvement for {self.settings.patience} epochs after best epoch "
                          f"{patience.best_epoch}; completed with its best score")
                trial.set_user_attr("stopped_reason", reason)
                self.log(f"trial {trial.number} stopped: {reason}")
                break
        return patience.best, curves
