"""The report's second study (Question 9): a small MLP on synthetic 2-D data.

Data (see model/synth.py for the features and the elliptic class boundary):
- search: a training draw of 60,000 points and a separate hold-out draw of `val_size` points (default 10,000),
  both seeded by DataConfig.split_seed; `train_size` keeps the first N training points.
- final run: the same 60,000 training points (or the first `train_size`) and a test draw of 10,000 points
  that is the same for every split_seed, so final runs are compared on the same points.
Draw seeds are 3 * split_seed + stream (training 0, hold-out 1), and 2 for the test draw: no two draws share
a seed. The data is generated, so DataConfig.root and DataConfig.download are ignored.
"""

from __future__ import annotations

import torch
from torch import nn

from model import synth
from model.config import ConfigError
from model.mlp import MLP, MLPConfig
from model.tasks.base import DataConfig, Preprocess, Split, Task, TaskData

TRAIN_POINTS = 60_000
TEST_POINTS = 10_000
TRAIN_STREAM, VAL_STREAM, TEST_SEED = 0, 1, 2


def _seed(split_seed: int, stream: int) -> int:
    return 3 * split_seed + stream


class MLPSynth(Task[MLPConfig]):
    name = "mlp-synth"
    model_config = MLPConfig
    space_file = "mlp-synth.toml"
    grid_space_file = "mlp-synth-q9.toml"
    default_val_size = 10_000
    class_names = ("inside", "outside")  # of the ellipse: labels 0 and 1, named in the final run's metrics

    def build_model(self, config: MLPConfig) -> nn.Module:
        return MLP(config)

    def check_model(self, config: MLPConfig) -> None:
        if config.in_features != synth.FEATURES:
            raise ConfigError(
                f"in_features: the synthetic data has {synth.FEATURES} features (allowed: "
                f"{synth.FEATURES}), got {config.in_features}"
            )
        if config.num_classes != len(self.class_names):
            raise ConfigError(
                f"num_classes: the synthetic data has {len(self.class_names)} classes (allowed: "
                f"{len(self.class_names)}), got {config.num_classes}"
            )

    def _train_split(self, data: DataConfig) -> Split:
        # Draw all 60,000 and keep a prefix, so a smaller train_size is a subset of the full training set.
        x, y = synth.draw(TRAIN_POINTS, _seed(data.split_seed, TRAIN_STREAM))
        keep = min(data.train_size or TRAIN_POINTS, TRAIN_POINTS)
        return Split(x[:keep], y[:keep])

    def load_search_data(self, data: DataConfig) -> TaskData:
        val = Split(*synth.draw(data.val_size or self.default_val_size, _seed(data.split_seed, VAL_STREAM)))
        return TaskData(self._train_split(data), val, "val")

    def load_final_data(self, data: DataConfig) -> TaskData:
        return TaskData(self._train_split(data), Split(*synth.draw(TEST_POINTS, TEST_SEED)), "test")

    input_normalisation = {  # noqa: RUF012 - a constant, read only
        "input": "float32 features, N x 2, as model/synth.py draws them",
        "formula": "none: the features are already standard normal",
    }

    def make_preprocess(self, device: torch.device) -> Preprocess:
        # The features are already standard normal float32: nothing to scale.
        def preprocess(x: torch.Tensor) -> torch.Tensor:
            return x

        return preprocess
