"""Tasks: what a trial trains (its data and its model) behind one small interface (base.py).

Adding a task means adding its module here, an entry in TASKS, and a space file in `search/spaces/`.
"""

from __future__ import annotations

from model.config import ConfigError
from model.tasks.alexnet_cifar10 import AlexNetCifar10
from model.tasks.base import DataConfig, Preprocess, Split, Task, TaskData
from model.tasks.mlp_synth import MLPSynth

TASKS: dict[str, Task] = {task.name: task for task in (AlexNetCifar10(), MLPSynth())}


def all_tasks() -> dict[str, Task]:
    return dict(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r} (allowed: {', '.join(sorted(TASKS))})")
    return TASKS[name]


__all__ = ["TASKS", "DataConfig", "Preprocess", "Split", "Task", "TaskData", "all_tasks", "get_task"]
