"""The complete config of one trial: task, model, training and data. Saved with every trial,
checkpoint and export, and enough to repeat the trial."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from model.config import ConfigError, JsonConfig
from model.tasks import DataConfig, get_task
from model.train import TrainConfig

FORMAT_VERSION = 1  # bump when a field changes meaning; older files are refused, not guessed at


@dataclass(frozen=True)
class TrialConfig(JsonConfig):
    task: str
    model: dict[str, Any]
    train: TrainConfig
    data: DataConfig
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.check_types()
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"TrialConfig.format_version: this config is format {self.format_version}; "
                f"this alexsearch reads format {FORMAT_VERSION}"
            )
        try:
            task = get_task(self.task)
        except ValueError as e:
            raise ConfigError(f"TrialConfig.{e}") from None
        model = task.model_config.from_dict(self.model)
        for part, check, config in (("model", task.check_model, model), ("train", task.check_train, self.train)):
            try:  # what the task's data allows, e.g. in_features = 2 for mlp-synth
                check(config)
            except ValueError as e:
                raise ConfigError(f"TrialConfig.{part}.{e}") from None
        object.__setattr__(self, "model", model.to_dict())

    def model_config(self) -> JsonConfig:
        return get_task(self.task).model_config.from_dict(self.model)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("alexsearch", "torch", "torchvision", "optuna", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
