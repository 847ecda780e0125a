"""The objective: train the sampled config, report validation accuracy each epoch, prune, return the best."""

from __future__ import annotations

from collections.abc import Callable

import optuna
import torch

from model.device import device_name
from model.errors import DivergedError
from model.tasks import TaskData
from model.train import EpochStats, Trainer
from search.pruning import Patience
from search.settings import SearchConfig
from search.space import Space
from search.trial_config import TrialConfig, versions

Log = Callable[[str], None]


def epoch_line(trial_number: int, epochs: int, s: EpochStats) -> str:
    return (f"trial {trial_number} epoch {s.epoch}/{epochs}: loss {s.train_loss:.4f} "
            f"train_acc {s.train_acc:.4f} val_acc {s.val_acc:.4f} {s.seconds:.1f}s {s.images_per_s:.0f} img/s")


class Objective:
    def __init__(self, space: Space, settings: SearchConfig, data: TaskData, device: torch.device,
                 log: Log = print) -> None:
        self.space, self.settings, self.data, self.device, self.log = space, settings, data, device, log
        self.versions = versions()

    def config_for(self, trial: optuna.Trial) -> TrialConfig:
        values = self.space.sample(trial)
        model, train = self.space.build(values, epochs=self.settings.epochs, seed=self.settings.seed)
        return TrialConfig(self.space.task.name, model.to_dict(), train, self.settings.data)

    def __call__(self, trial: optuna.Trial) -> float:
        config = self.config_for(trial)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("seed", config.train.seed)
        trial.set_user_attr("device", device_name(self.device))
        trial.set_user_attr("versions", self.versions)
        trainer = Trainer(self.space.task, config.model_config(), config.train, self.data, self.device)
        try:
            return self._train(trial, trainer, config)
        except DivergedError as e:
            reason = f"diverged: {e}"
            trial.set_user_attr("pruned_reason", reason)
            self.log(f"trial {trial.number} pruned: {reason}")
            raise optuna.TrialPruned(reason) from None

    def _train(self, trial: optuna.Trial, trainer: Trainer, config: TrialConfig) -> float:
        epochs = config.train.epochs
        patience = Patience(self.settings.patience)
        curves: dict[str, list[float]] = {"train_acc": [], "val_acc": [], "train_loss": [], "epoch_seconds": [],
                                          "images_per_s": []}
        for s in trainer.epochs():
            for key, values in zip(curves, (s.train_acc, s.val_acc, s.train_loss, s.seconds, s.images_per_s),
                                   strict=True):
                curves[key].append(values)
                trial.set_user_attr(key, curves[key])
            patience.update(s.epoch, s.val_acc)
            trial.set_user_attr("best_epoch", patience.best_epoch)
            trial.report(s.val_acc, s.epoch)
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
        return patience.best
