"""The small multilayer perceptron of the report's Question 9 study, for 2-D synthetic data. Holds only the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from model.config import ConfigError, JsonConfig

Activation = Literal["sigmoid", "relu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


@dataclass(frozen=True)
class MLPConfig(JsonConfig):
    activation: Activation = "sigmoid"  # after the first linear layer (the report's basic model used sigmoid)
    depth: int = 2  # linear layers, 2 or 3: one or two hidden layers
    second_activation: Activation = "sigmoid"  # after the second linear layer when depth = 3, as in the report
    init: Literal["glorot", "he"] = "glorot"  # weight initialisation of every linear layer; biases start at 0
    hidden: int = 32  # units in each hidden layer
    in_features: int = 2
    num_classes: int = 2

    def __post_init__(self) -> None:
        self.check_types()
        if self.depth not in (2, 3):
            raise ConfigError(f"depth must be 2 or 3, got {self.depth}")
        for name in ("hidden", "in_features"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")


class MLP(nn.Module):
    """Input (N, in_features) float, output (N, num_classes) logits (softmax lives in the cross-entropy loss).

    depth 2: input -> linear -> activation -> linear
    depth 3: input -> linear -> activation -> linear -> second_activation -> linear
    With activation = relu and depth 3 this is the report's "new model" (linear, ReLU, linear, sigmoid, linear).
    """

    def __init__(self, config: MLPConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MLPConfig()
        acts = [config.activation, config.second_activation][: config.depth - 1]
        layers: list[nn.Module] = []
        width = config.in_features
        for act in acts:
            layers += [nn.Linear(width, config.hidden), ACTIVATIONS[act]()]
            width = config.hidden
        layers.append(nn.Linear(width, config.num_classes))
        self.layers = nn.Sequential(*layers)
        for m in self.layers:
            if isinstance(m, nn.Linear):
                init_linear(m, config.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def init_linear(layer: nn.Linear, init: str) -> None:
    """glorot: uniform with variance 2 / (fan_in + fan_out); he: normal with variance 2 / fan_in. Bias 0."""
    if init == "glorot":
        nn.init.xavier_uniform_(layer.weight)
    else:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
