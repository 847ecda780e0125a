"""The AlexNet of the report's section 6, for 32x32 CIFAR-10 images. Holds only the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.config import ConfigError, JsonConfig


@dataclass(frozen=True)
class AlexNetConfig(JsonConfig):
    batch_norm: bool = False  # BatchNorm2d after each conv, before its ReLU (report step 1)
    dropout: float = 0.5  # before FC6 and FC7, as nn.Dropout() in the report
    num_classes: int = 10

    def __post_init__(self) -> None:
        self.check_types()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")


def _conv(c_in: int, c_out: int, batch_norm: bool, **kw) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, **kw)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return layers


class AlexNet(nn.Module):
    """Input (N, 3, 32, 32) float, output (N, num_classes) logits.

    Spatial sizes: 32 -conv s2-> 16 -pool-> 8 -pool-> 4 -pool-> 2, so FC6 sees 256*2*2 features.
    Without batch norm it has 23,272,266 parameters.
    """

    def __init__(self, config: AlexNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or AlexNetConfig()
        bn = config.batch_norm
        self.features = nn.Sequential(
            *_conv(3, 64, bn, stride=2, padding=1),
            nn.MaxPool2d(2),  # layer 1
            *_conv(64, 192, bn, padding=1),
            nn.MaxPool2d(2),  # layer 2
            *_conv(192, 384, bn, padding=1),  # layer 3
            *_conv(384, 256, bn, padding=1),  # layer 4
            *_conv(256, 256, bn, padding=1),
            nn.MaxPool2d(2),  # layer 5
        )
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(256 * 2 * 2, 4096),
            nn.ReLU(inplace=True),  # layer 6
            nn.Dropout(config.dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),  # layer 7
            nn.Linear(4096, config.num_classes),  # layer 8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
