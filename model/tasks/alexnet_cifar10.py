"""The report's task: AlexNet on CIFAR-10."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model import cifar10
from model.alexnet import AlexNet, AlexNetConfig
from model.config import ConfigError
from model.errors import DataError
from model.split import stratified_split, stratified_subset
from model.tasks.base import DataConfig, Preprocess, Split, Task, TaskData

PAD = 4  # pixels of zero padding for the random crop, as in the usual CIFAR-10 recipe


class AlexNetCifar10(Task[AlexNetConfig]):
    name = "alexnet-cifar10"
    model_config = AlexNetConfig
    space_file = "alexnet-cifar10.toml"
    grid_space_file = "alexnet-cifar10-table1.toml"
    default_val_size = 5000
    class_names = cifar10.CLASSES
    has_augmentation = True

    def build_model(self, config: AlexNetConfig) -> nn.Module:
        return AlexNet(config)

    def check_model(self, config: AlexNetConfig) -> None:
        if config.num_classes != len(cifar10.CLASSES):
            raise ConfigError(
                f"num_classes: CIFAR-10 has {len(cifar10.CLASSES)} classes (allowed: "
                f"{len(cifar10.CLASSES)}), got {config.num_classes}"
            )

    def load_search_data(self, data: DataConfig) -> TaskData:
        x, y = cifar10.load_train(data.root, data.download)
        val_size = data.val_size or self.default_val_size
        if val_size >= len(y):
            raise DataError(f"--val-size: must be less than the {len(y)} training images, got {val_size}")
        keep, val = stratified_split(y, val_size, data.split_seed)
        if data.train_size is not None:
            keep = keep[stratified_subset(y[keep], data.train_size, data.split_seed + 1)]
        return TaskData(Split(x[keep], y[keep]), Split(x[val], y[val]), "val")

    def load_final_data(self, data: DataConfig) -> TaskData:
        x, y = cifar10.load_train(data.root, data.download)
        if data.train_size is not None:
            keep = stratified_subset(y, data.train_size, data.split_seed + 1)
            x, y = x[keep], y[keep]
        tx, ty = cifar10.load_test(data.root, data.download)
        return TaskData(Split(x, y), Split(tx, ty), "test")

    input_normalisation = {  # noqa: RUF012 - a constant, read only
        "input": "uint8 RGB images, N x 3 x 32 x 32, values 0-255 (CIFAR-10's layout, channels R, G, B)",
        "formula": "x = (x / 255 - mean[c]) / std[c] for each channel c, as float32",
        "mean": list(cifar10.MEAN),
        "std": list(cifar10.STD),
    }

    def make_preprocess(self, device: torch.device) -> Preprocess:
        # uint8 [0, 255] -> (x/255 - mean)/std as one multiply-add, constants made once on the device.
        std = torch.tensor(cifar10.STD, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(cifar10.MEAN, device=device).view(1, 3, 1, 1)
        scale, shift = 1.0 / (255.0 * std), -mean / std
        channels_last = device.type == "cuda"

        def preprocess(x: torch.Tensor) -> torch.Tensor:
            out = torch.addcmul(shift, x.float(), scale)
            return out.contiguous(memory_format=torch.channels_last) if channels_last else out

        return preprocess

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random 32x32 crop of the 4-pixel zero-padded image and a random horizontal flip, per image."""
        n = len(x)
        padded = F.pad(x, (PAD, PAD, PAD, PAD))
        dy = torch.randint(0, 2 * PAD + 1, (n,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * PAD + 1, (n,), device=x.device, generator=generator)
        ar = torch.arange(32, device=x.device)
        rows = (dy[:, None] + ar)[:, None, :, None]  # (n, 1, 32, 1)
        cols = (dx[:, None] + ar)[:, None, None, :]  # (n, 1, 1, 32)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(3, device=x.device)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
        flip = torch.rand(n, device=x.device, generator=generator) < 0.5
        return torch.where(flip[:, None, None, None], out.flip(3), out)
