"""The three ways to train the report's AlexNet (Adam, lr 1e-3) that the throughput bench compares.

Each `run_*` builds a fresh seeded model (not timed), trains `steps` steps of `batch` images and returns the
wall seconds of those steps, device work included.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.data import TASK, normalised, sync
from model import cifar10
from model.alexnet import AlexNet, AlexNetConfig
from model.tasks import Split, TaskData
from model.train import Precision, TrainConfig, Trainer

SEED = 0
LR = 1e-3  # the report's Adam learning rate


class PilCifar(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: an HWC uint8 array -> PIL image -> transform."""

    def __init__(self, split: Split, transform: Callable) -> None:
        self.data = split.x.cpu().permute(0, 2, 3, 1).contiguous().numpy()  # (N, 32, 32, 3), as torchvision keeps it
        self.targets = split.y.cpu().tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(np.asarray(self.data[i]))), self.targets[i]


def usual_transform() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(cifar10.MEAN, cifar10.STD)])


def run_trainer(
    train: Split, batch: int, steps: int, device: torch.device, precision: Precision = "auto", compile: bool = False
) -> float:
    """(a) alexsearch's Trainer: one epoch over exactly steps * batch images (plus its eval of 10 images)."""
    n = steps * batch
    data = TaskData(Split(train.x[:n], train.y[:n]), Split(train.x[:10], train.y[:10]), "val")
    config = TrainConfig(optimizer="adam", lr=LR, batch_size=batch, epochs=1, seed=SEED, precision=precision)
    trainer = Trainer(TASK, AlexNetConfig(), config, data, device, compile=compile)
    sync(device)
    start = time.perf_counter()
    next(trainer.epochs())  # ends with the epoch's host sync
    return time.perf_counter() - start


def plain_model(device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A model and optimizer as a user writes them: fp32, default memory format, torch's default Adam."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # torch's default; the Trainer sets it process-wide
    torch.manual_seed(SEED)
    model = AlexNet(AlexNetConfig()).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=LR)


def run_dataloader(train: Split, batch: int, steps: int, device: torch.device, workers: int = 0) -> float:
    """(b) the usual pipeline, as in Optuna's PyTorch example: PIL dataset, ToTensor+Normalize, DataLoader."""
    n = steps * batch
    loader = DataLoader(
        PilCifar(Split(train.x[:n], train.y[:n]), usual_transform()),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
    )
    model, optimizer = plain_model(device)
    model.train()
    sync(device)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def run_plain(train_normalised: Split, batch: int, steps: int, device: torch.device) -> float:
    """(c) a hand-written loop over pre-normalised float tensors already on the device."""
    x_all, y_all = train_normalised.x[: steps * batch], train_normalised.y[: steps * batch]
    model, optimizer = plain_model(device)
    model.train()
    sync(device)
    start = time.perf_counter()
    for idx in torch.randperm(len(y_all), device=device).split(batch):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def normalised_split(split: Split) -> Split:
    return Split(normalised(split.x), split.y)
