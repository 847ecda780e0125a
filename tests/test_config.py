import json

import pytest

from model.config import ConfigError
from model.tasks import DataConfig
from model.train import TrainConfig
from search.trials.trial_config import TrialConfig


def test_trial_config_round_trips_through_json():
    cfg = TrialConfig(
        "alexnet-cifar10",
        {"batch_norm": True},
        TrainConfig(lr=3e-4, batch_size=500),
        DataConfig(root="d", val_size=5000),
    )
    again = TrialConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.model_config().batch_norm is True
    assert json.loads(cfg.to_json())["train"]["lr"] == 3e-4


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"extra": 1}, "unknown key 'extra'"),
        ({"train": {"lr": "fast"}}, "TrainConfig.lr: expected a number"),
        ({"train": {"optimizer": "rmsprop"}}, "TrainConfig.optimizer: must be one of"),
        ({"model": {"bn": True}}, "AlexNetConfig: unknown key 'bn'"),
        ({"format_version": 99}, "format_version"),
        ({"task": "nope"}, "unknown task"),
    ],
)
def test_bad_config_is_refused_naming_the_field(change, fragment):
    d = TrialConfig("alexnet-cifar10", {}, TrainConfig(), DataConfig()).to_dict()
    d.update(change)
    with pytest.raises(ConfigError if "format" in fragment or "task" in fragment else ValueError) as e:
        TrialConfig.from_dict(d)
    assert fragment in str(e.value)


def test_missing_key():
    with pytest.raises(ConfigError, match="missing key 'train'"):
        TrialConfig.from_dict({"task": "alexnet-cifar10", "model": {}, "data": {}})


def test_train_config_ranges():
    with pytest.raises(ValueError, match="lr must be a positive"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
