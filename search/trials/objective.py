"""The objective: train the sampled config, report validation accuracy each epoch, prune, return the best.

Around that thin core: a checkpoint from a background thread at most every --checkpoint-every seconds, resume
of a retried trial from its original's last checkpoint, and no second training of a config that has already
been trained. Each epoch is ONE database write: its intermediate value and its numbers in one transaction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from model.device import device_name
from model.errors import DivergedError, Interrupted
from model.snapshot import WeightSnapshot
from model.tasks import TaskData
from model.train import EpochStats, StepProgress, Trainer
from search.settings import SearchConfig
from search.space.pruning import Patience
from search.space.space import Space
from search.trials import record
from search.trials.record import is_duplicate
from search.trials.stepwise import trial_values
from search.trials.trial_config import TrialConfig, versions
from search.workers import events
from search.workers.signals import stop_requested
from storage import rdb
from storage.checkpoints import CheckpointError, CheckpointWriter
from storage.optuna_private import cached_frozen_trial, trial_id
from storage.sqlite import deciding

Log = Callable[[str], None]
# Asked before each training step (force=False: may answer from memory) and after each epoch (force=True:
# reads the study's stop flag). True stops the trial as a stop signal does: failed, and queued for retry.
StopCheck = Callable[..., bool]
_STAT_OF_CURVE = {record.EPOCH_SECONDS: "seconds"}  # curve name -> EpochStats field where they differ
# Called when a trial completes: (trial, value, the best epoch's weights as a CPU state_dict, curves). The
# best-trial artifacts hook.
FinishHook = Callable[[optuna.Trial, float, dict[str, torch.Tensor], dict[str, list[float]]], None]


def epoch_line(trial_number: int, epochs: int, s: EpochStats) -> str:
    return events.epoch(trial_number, epochs, s.epoch, s.train_loss, s.train_acc, s.val_acc, s.seconds, s.images_per_s)


def _signal_stop(force: bool = False) -> bool:
    return stop_requested()


def duplicate_of(trial: optuna.Trial) -> int | None:
    """An earlier trial with the same params that finished or is running, if any.

    An enqueued trial that another worker has just claimed may not have written its params yet (its claim and
    each param are separate transactions): its enqueued values (fixed_params) stand in for them.
    """
    with deciding():  # decides whether this trial trains: sees the other workers' writes in flight
        trials = trial.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        )
    for t in trials:
        if t.number < trial.number and trial_values(t) == trial.params and not is_duplicate(t):
            return t.number
    return None


class Objective:
    def __init__(
        self,
        space: Space,
        settings: SearchConfig,
        data: TaskData,
        device: torch.device,
        log: Log = print,
        checkpoints: CheckpointWriter | None = None,
        on_complete: FinishHook | None = None,
        place: Mapping[str, str] | None = None,
        should_stop: StopCheck = _signal_stop,
        worker: str = "this process",
        progress_every_s: float = 30.0,
    ) -> None:
        self.space, self.settings, self.data, self.device, self.log = space, settings, data, device, log
        self.checkpoints, self.on_complete = checkpoints, on_complete
        self.place = dict(place or {})  # where this worker runs (host, Slurm job): user attrs of each trial
        self.should_stop, self.worker, self.progress_every_s = should_stop, worker, progress_every_s
        self.versions = versions()
        self.current_trial_id: int | None = None  # the trial this process is running, for signal cleanup

    def config_for(self, trial: optuna.Trial) -> TrialConfig:
        values = self.space.sample(trial)
        overrides: dict[str, Any] = {"epochs": self.settings.epochs, "seed": self.settings.seed}
        if self.settings.precision is not None:
            overrides["precision"] = self.settings.precision
        model, train = self.space.build(values, **overrides)
        return TrialConfig(self.space.task.name, model.to_dict(), train, self.settings.data)

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial_id = trial_id(trial)
        config = self.config_for(trial)
        earlier = duplicate_of(trial)
        if earlier is not None:
            reason = f"duplicate of trial {earlier}: this config was already trained"
            rdb.record(trial, {record.DUPLICATE_OF: earlier, record.PRUNED_REASON: reason})
            self.log(f"trial {trial.number} skipped: {reason}")
            raise optuna.TrialPruned(reason)
        self.log(events.started(trial.number, trial.params, self.worker))
        # one transaction; self.place: where it ran (record.HOST, record.SLURM_JOB_ID, ...)
        rdb.record(
            trial,
            {
                record.CONFIG: config.to_dict(),
                record.SEED: config.train.seed,
                record.DEVICE: device_name(self.device),
                record.VERSIONS: self.versions,
                **self.place,
            },
        )
        root = record.retry_root(cached_frozen_trial(trial))  # the retry mark is set when the trial is queued
        if self.checkpoints is not None:
            self.checkpoints.start_trial()
        epochs = config.train.epochs

        def progress(p: StepProgress) -> None:
            self.log(events.in_epoch(trial.number, epochs, p.epoch, p.steps, p.total_steps, p.images_per_s))

        trainer = Trainer(
            self.space.task,
            config.model_config(),
            config.train,
            self.data,
            self.device,
            should_stop=self.should_stop,
            on_progress=progress,
            progress_every_s=self.progress_every_s,
        )
        best = WeightSnapshot()
        history = self._resume(trial, trainer, config, root, best)
        try:
            value, curves = self._train(trial, trainer, config, root, history, best)
        except DivergedError as e:
            reason = f"diverged: {e}"
            trial.set_user_attr(record.PRUNED_REASON, reason)
            self.log(events.pruned(trial.number, reason))
            self._drop_checkpoint(root)
            raise optuna.TrialPruned(reason) from None
        except optuna.TrialPruned:
            self._drop_checkpoint(root)
            raise
        val = curves[record.VAL_ACC]
        self.log(events.completed(trial.number, value, val.index(value) + 1 if value in val else 0, len(val)))
        try:
            previous = record.best_so_far(trial.study)
        except Exception:  # noqa: BLE001 - a storage hiccup must not fail a trial that trained; no line then
            previous = (-1, math.inf)
        if previous is None or value > previous[1]:
            self.log(events.new_best(trial.number, value, previous))
        if self.on_complete is not None:
            self.on_complete(trial, value, best.cpu_state() or trainer.model.state_dict(), curves)
        self._drop_checkpoint(root)
        return value

    def _resume(
        self, trial: optuna.Trial, trainer: Trainer, config: TrialConfig, root: int, best: WeightSnapshot
    ) -> list[dict]:
        """Load the retry chain's checkpoint into trainer and best; return the epochs it already trained."""
        if self.checkpoints is None or root == trial.number:
            return []
        try:  # checked against this trial's config, model and optimizer before anything is loaded
            state = self.checkpoints.load_resumable(
                root,
                config=config.to_dict(),
                model=trainer.model,
                optimizer=trainer.optimizer,
                epochs=config.train.epochs,
                history_keys=[f.name for f in dataclasses.fields(EpochStats)],
            )
        except CheckpointError as e:
            self.log(f"trial {trial.number}: not resuming trial {root}: {e}; training from scratch")
            return []
        if state is None:
            return []
        trainer.load_state_dict(state)
        saved = state.get("best") or {}
        if saved.get("model") is not None:
            best.load(saved["model"], saved["epoch"], self.device)
        elif saved.get("epoch") == trainer.epoch:  # the last epoch was the best: its weights are the model's
            best.take(trainer.model, trainer.epoch)
        trial.set_user_attr(record.RESUMED_FROM, {"trial": root, "epoch": trainer.epoch})
        self.log(f"trial {trial.number}: resuming trial {root} after epoch {trainer.epoch}")
        return list(state["history"])

    def _checkpoint(self, root: int, trainer: Trainer, config: TrialConfig, best: WeightSnapshot) -> None:
        if self.checkpoints is not None:  # a background write, when one is due
            # The best epoch's weights only when they are not the model's own (most epochs improve while
            # a trial is worth running on), so a checkpoint is mostly one copy of the weights, not two.
            best_model = best.tensors() if best.epoch != trainer.epoch else None
            self.checkpoints.after_epoch(
                root,
                lambda: {
                    **trainer.state_dict(),
                    "config": config.to_dict(),
                    "best": {"epoch": best.epoch, "model": best_model},
                },
            )

    def _drop_checkpoint(self, root: int) -> None:
        if self.checkpoints is not None:
            self.checkpoints.delete(root)

    def _record(
        self, trial: optuna.Trial, curves: dict[str, list[float]], patience: Patience, stats: dict[str, Any]
    ) -> None:
        for key in record.CURVES:
            curves[key].append(stats[_STAT_OF_CURVE.get(key, key)])
        patience.update(stats["epoch"], stats["val_acc"])
        attrs = {**{k: list(v) for k, v in curves.items()}, record.BEST_EPOCH: patience.best_epoch}
        rdb.record(trial, attrs, step=stats["epoch"], value=stats["val_acc"])  # the epoch's one database write

    def _train(
        self,
        trial: optuna.Trial,
        trainer: Trainer,
        config: TrialConfig,
        root: int,
        history: list[dict],
        best: WeightSnapshot,
    ) -> tuple[float, dict[str, list[float]]]:
        epochs = config.train.epochs
        patience = Patience(self.settings.patience)
        curves: dict[str, list[float]] = {key: [] for key in record.CURVES}
        for stats in history:  # a resumed trial carries its original's learning curve on
            self._record(trial, curves, patience, stats)
        for s in trainer.epochs():
            if s.val_acc > patience.best:  # the same test as Patience.update: this epoch is the new best
                best.take(trainer.model, s.epoch)
            self._checkpoint(root, trainer, config, best)
            self._record(trial, curves, patience, s.as_dict())
            self.log(epoch_line(trial.number, epochs, s))
            if self.should_stop(force=True):  # `alexsearch stop`: after the checkpoint, so the retry loses nothing
                raise Interrupted(f"stop requested after epoch {s.epoch}")
            # Never at the last epoch: its training is paid for, and the trial completes with its best score.
            if s.epoch < epochs and trial.should_prune():
                reason = (
                    f"val_acc {s.val_acc:.4f} at epoch {s.epoch} fell below the {self.settings.pruner} pruner's bar"
                )
                trial.set_user_attr(record.PRUNED_REASON, reason)
                self.log(events.pruned(trial.number, reason))
                raise optuna.TrialPruned(reason)
            if s.epoch < epochs and patience.exhausted(s.epoch):
                reason = (
                    f"no val_acc improvement for {self.settings.patience} epochs after best epoch "
                    f"{patience.best_epoch}; completed with its best score"
                )
                trial.set_user_attr(record.STOPPED_REASON, reason)
                self.log(f"trial {trial.number} stopped: {reason}")
                break
        return patience.best, curves
