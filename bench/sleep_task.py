"""A task whose training epoch is a sleep: the whole worker path (objective, checkpoints, heartbeat, database)
runs as in a real search, minus the training. Importing this module registers it as task "sleep"; the space
file it needs is written by `write_space`.

Data: 64 training points (one batch of 64, so one training step per epoch) and 16 validation points of the
synthetic 2-D task. The model is a linear layer whose training forward sleeps `seconds`; evaluation does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model import synth
from model.config import JsonConfig
from model.tasks import TASKS, DataConfig, Preprocess, Split, Task, TaskData

TRAIN_POINTS, VAL_POINTS = 64, 16


@dataclass(frozen=True)
class SleepConfig(JsonConfig):
    seconds: float = 0.25  # of each training forward: the whole epoch, as there is one step per epoch
    width: int = 1  # a parameter for the sampler to choose; it changes nothing but the config


class SleepModel(nn.Module):
    def __init__(self, config: SleepConfig) -> None:
        super().__init__()
        self.seconds = config.seconds
        self.linear = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(self.seconds)
        return self.linear(x)


class SleepTask(Task):
    name = "sleep"
    model_config = SleepConfig
    space_file = "sleep.toml"  # not shipped: pass write_space's file as --space
    default_val_size = VAL_POINTS

    def build_model(self, config: SleepConfig) -> nn.Module:
        return SleepModel(config)

    def load_search_data(self, data: DataConfig) -> TaskData:
        return TaskData(Split(*synth.draw(TRAIN_POINTS, 0)), Split(*synth.draw(VAL_POINTS, 1)), "val")

    def load_final_data(self, data: DataConfig) -> TaskData:
        return self.load_search_data(data)

    def make_preprocess(self, device: torch.device) -> Preprocess:
        return lambda x: x


TASKS[SleepTask.name] = SleepTask()  # a bench task: not in the shipped catalogue


def write_space(path: Path, seconds: float) -> Path:
    path.write_text(
        f'task = "sleep"\n\n[params]\nwidth = {{ choices = [1, 2, 3, 4, 5, 6, 7, 8] }}\n'
        f"lr = {{ low = 1e-4, high = 1e-1, log = true }}\n\n[fixed]\nseconds = {seconds}\n"
        f"batch_size = {TRAIN_POINTS}\n"
    )
    return path
