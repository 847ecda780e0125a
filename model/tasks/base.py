"""The task interface: what a trial trains (its data and its model), and the data types tasks share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from model.config import ConfigError, JsonConfig
from model.data_config import DataConfig  # noqa: F401 - re-exported: the tasks' data type
from model.device import memory_bytes


@dataclass
class Split:
    """Inputs in their stored dtype (uint8 images, float features) and int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class TaskData:
    train: Split
    eval: Split  # the validation hold-out during search; the test set in the final run
    eval_name: str  # "val" or "test"


Preprocess = Callable[[torch.Tensor], torch.Tensor]
# Bytes of training state per model parameter: fp32 weights, gradients and Adam's two moments (4 x 4 bytes).
TRAINING_BYTES_PER_PARAMETER = 16


ModelConfigT = TypeVar("ModelConfigT", bound=JsonConfig)


class Task(ABC, Generic[ModelConfigT]):
    """One task; ModelConfigT is its model's config class (model_config), which build_model and check_model take."""

    name: str
    model_config: type[ModelConfigT]
    space_file: str  # default search space, in search/spaces/
    grid_space_file: str | None = None  # a categorical space for --sampler grid
    default_val_size: int
    class_names: tuple[str, ...] | None = None  # for figures and per-class metrics; None = "0".."n-1"
    # What make_preprocess does, for people who load saved weights elsewhere (written into final's metrics.json).
    input_normalisation: dict = {"formula": "none: the model takes the stored inputs as they are"}  # noqa: RUF012
    has_augmentation: bool = False  # whether `augment` is implemented, so a trial may set augment = true

    @abstractmethod
    def build_model(self, config: ModelConfigT) -> nn.Module: ...

    def check_model(self, config: ModelConfigT) -> None:  # noqa: B027 (a hook: most tasks accept every model)
        """Raise ConfigError naming the field when a model of config cannot take this task's data."""

    def check_train(self, config: Any) -> None:
        """Raise ConfigError naming the field when training with config (a TrainConfig) cannot run on this task."""
        if config.augment and not self.has_augmentation:
            raise ConfigError(f"augment: task {self.name} has no augmentation (allowed: false)")

    def model_parameters(self, config: ModelConfigT) -> int:
        """Parameters and buffers of the model, built on the meta device: every layer is made, with its shapes
        checked, but no memory is taken, so a model too big for any machine is measured, not allocated."""
        try:
            with torch.device("meta"):
                model = self.build_model(config)
        except (RuntimeError, ValueError, OverflowError, MemoryError) as e:  # e.g. a size past 2^63 bytes
            text = str(e).strip()
            raise ConfigError(
                f"the model cannot be built ({text.splitlines()[0] if text else type(e).__name__})"
            ) from None
        return sum(t.numel() for t in (*model.parameters(), *model.buffers()))

    def training_bytes(self, config: ModelConfigT) -> int:
        """Device memory a trial's model state takes at least (activations come on top)."""
        return self.model_parameters(config) * TRAINING_BYTES_PER_PARAMETER

    def check_fits(self, config: ModelConfigT, device: torch.device) -> None:
        """Raise ConfigError when the model cannot be built, or its training state exceeds the device's memory."""
        needed, have = self.training_bytes(config), memory_bytes(device)
        if needed > have:
            raise ConfigError(
                f"the model's training state alone takes {needed / 1e9:.3g} GB (fp32 weights, "
                f"gradients, Adam moments), more than the {have / 1e9:.3g} GB of the {device.type}"
            )

    @abstractmethod
    def load_search_data(self, data: DataConfig) -> TaskData:
        """Training items minus a seeded hold-out, and that hold-out. Never the test set."""

    @abstractmethod
    def load_final_data(self, data: DataConfig) -> TaskData:
        """All training items, and the test set. Only the final run calls this."""

    @abstractmethod
    def make_preprocess(self, device: torch.device) -> Preprocess:
        """A function that turns a batch of stored inputs into model inputs on the device."""

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise ConfigError(f"task {self.name} has no augmentation; set augment = false")
