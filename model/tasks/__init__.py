"""Tasks: what a trial trains (its data and its model) behind one small interface.

A task module in this package defines a `Task` subclass and calls `register` on an instance.
Every module here is imported on first use, so adding a task means adding one module here and
one space file in `search/spaces/`.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.config import JsonConfig

if TYPE_CHECKING:  # torch is imported by the task modules; commands that only read a study never load it
    import torch
    from torch import nn


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


@dataclass(frozen=True)
class DataConfig(JsonConfig):
    root: str = "data"  # folder searched for the data (CIFAR-10: ROOT/cifar-10-batches-py)
    download: bool = False  # fetch the data when missing (needs internet)
    val_size: int | None = None  # hold-out size; None = the task's default
    train_size: int | None = None  # cap on training items for quick runs; None = all that remain
    split_seed: int = 0  # seeds the hold-out and the training cap

    def __post_init__(self) -> None:
        self.check_types()
        if self.val_size is not None and self.val_size < 1:
            raise ValueError(f"val_size must be >= 1, got {self.val_size}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1, got {self.train_size}")


Preprocess = Callable[["torch.Tensor"], "torch.Tensor"]


class Task(ABC):
    name: str
    model_config: type[JsonConfig]
    space_file: str  # default search space, in search/spaces/
    grid_space_file: str | None = None  # a categorical space for --sampler grid
    default_val_size: int
    class_names: tuple[str, ...] | None = None  # for figures and per-class metrics; None = "0".."n-1"

    @abstractmethod
    def build_model(self, config: JsonConfig) -> nn.Module: ...

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
        raise ValueError(f"task {self.name} has no augmentation; set augment = false")


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} registered twice")
    _REGISTRY[task.name] = task
    return task


_discovered = False  # a registry that is not empty may still miss tasks: importing one task module registers only it


def _discover() -> None:
    global _discovered
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    _discovered = True


def all_tasks() -> dict[str, Task]:
    if not _discovered:
        _discover()
    return dict(_REGISTRY)


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise ValueError(f"task: unknown task {name!r} (allowed: {', '.join(sorted(tasks))})")
    return tasks[name]
