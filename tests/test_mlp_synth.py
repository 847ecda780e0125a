"""The mlp-synth task: registry, seeded synthetic data, the MLP, and a real study through the CLI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from model import synth
from model.config import ConfigError
from model.mlp import MLP, MLPConfig
from model.tasks import DataConfig, all_tasks, get_task
from model.tasks.mlp_synth import TEST_POINTS, TRAIN_POINTS
from search.cli import main
from search.space.space import SpaceError, builtin_space_path, load_space
from search.trials.trial_config import TrialConfig


def test_registry_lists_both_tasks_and_names_them_on_error():
    assert {"alexnet-cifar10", "mlp-synth"} <= set(all_tasks())
    assert get_task("mlp-synth").name == "mlp-synth"
    with pytest.raises(ValueError, match=r"task: unknown task 'nope' \(allowed: alexnet-cifar10, mlp-synth"):
        get_task("nope")


def test_builtin_space_is_the_reports_study():
    space = load_space(None, "mlp-synth")
    assert space.task is get_task("mlp-synth")
    assert {"activation", "depth", "init", "hidden", "lr"} <= set(space.names)
    assert space.fixed["batch_size"] == 128
    grid = load_space(builtin_space_path(get_task("mlp-synth").grid_space_file), "mlp-synth")
    assert grid.grid() == {"activation": ["sigmoid", "relu"], "depth": [2, 3], "init": ["glorot", "he"]}
    with pytest.raises(SpaceError, match="task is 'mlp-synth' but --task is 'alexnet-cifar10'"):
        load_space(builtin_space_path("mlp-synth.toml"), "alexnet-cifar10")


def test_draws_are_seeded_balanced_and_labelled_by_the_ellipse():
    x, y = synth.draw(20_000, 5)
    x2, y2 = synth.draw(20_000, 5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (20_000, 2)
    assert 0.47 < y.float().mean().item() < 0.53
    assert not torch.equal(synth.draw(100, 6)[0], x[:100])
    # Inside the ellipse is class 0, far outside is class 1.
    assert synth.labels(torch.tensor([[0.0, 0.0], [3.0, 3.0]])).tolist() == [0, 1]


def test_search_and_final_data_have_the_documented_sizes_and_differ():
    task = get_task("mlp-synth")
    data = task.load_search_data(DataConfig(val_size=task.default_val_size))
    assert (len(data.train), len(data.eval), data.eval_name) == (TRAIN_POINTS, 10_000, "val")
    again = task.load_search_data(DataConfig(val_size=10_000))
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.eval.x, again.eval.x)
    final = task.load_final_data(DataConfig(val_size=10_000))
    assert (len(final.train), len(final.eval), final.eval_name) == (TRAIN_POINTS, TEST_POINTS, "test")
    assert torch.equal(final.train.x, data.train.x)
    for other in (data.train.x[:TEST_POINTS], data.eval.x):
        assert not torch.equal(final.eval.x, other)
    # The test draw does not depend on split_seed; the training draw does; train_size keeps a prefix.
    other_seed = task.load_final_data(DataConfig(split_seed=1, train_size=500))
    assert torch.equal(other_seed.eval.x, final.eval.x)
    assert len(other_seed.train) == 500 and not torch.equal(other_seed.train.x, final.train.x[:500])
    small = task.load_search_data(DataConfig(train_size=500, val_size=50))
    assert torch.equal(small.train.x, data.train.x[:500]) and len(small.eval) == 50


@pytest.mark.parametrize(
    "depth, activation, layers",
    [
        (2, "relu", ["Linear", "ReLU", "Linear"]),
        (3, "relu", ["Linear", "ReLU", "Linear", "Sigmoid", "Linear"]),  # the report's new model
        (3, "sigmoid", ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]),
    ],
)
def test_mlp_layers_match_depth_and_activation(depth, activation, layers):
    model = MLP(MLPConfig(depth=depth, activation=activation, hidden=8))
    assert [type(m).__name__ for m in model.layers] == layers
    assert model(torch.zeros(5, 2)).shape == (5, 2)


def test_initialisations_have_their_variances():
    torch.manual_seed(0)
    wide = {init: MLP(MLPConfig(init=init, hidden=2000)).layers[2].weight for init in ("glorot", "he")}
    assert wide["glorot"].var().item() == pytest.approx(2 / (2000 + 2), rel=0.05)
    assert wide["he"].var().item() == pytest.approx(2 / 2000, rel=0.05)


def test_bad_model_config_names_the_field():
    with pytest.raises(ValueError, match="depth must be 2 or 3, got 4"):
        MLPConfig(depth=4)
    with pytest.raises(ConfigError, match="MLPConfig.init: must be one of 'glorot', 'he'; got 'lecun'"):
        MLPConfig.from_dict({"init": "lecun"})
    config = TrialConfig.from_dict({"task": "mlp-synth", "model": {"depth": 3}, "train": {}, "data": {}})
    assert config.model_config() == MLPConfig(depth=3)


@contextmanager
def one_thread() -> Iterator[None]:
    """A tiny MLP gains nothing from a second intra-op thread, and on a busy 2-core machine a second one
    makes it several times slower (the threads wait on each other), so the CLI runs here use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mlp_study(tmp_path_factory) -> Path:
    """A real mlp-synth study of 4 trials, 3 epochs, on 6,000 training points, made through the CLI."""
    db = tmp_path_factory.mktemp("mlp") / "mlp.db"
    argv = [
        "search",
        "--task",
        "mlp-synth",
        "--storage",
        f"sqlite:///{db}",
        "--trials",
        "4",
        "--epochs",
        "3",
        "--train-size",
        "6000",
        "--val-size",
        "1000",
        "--device",
        "cpu",
    ]
    with one_thread():
        assert main(argv) == 0
    return db


@pytest.mark.slow
def test_cli_study_learns_the_ellipse(mlp_study, capsys):
    con = sqlite3.connect(mlp_study)
    assert con.execute("SELECT study_name FROM studies").fetchall() == [("mlp-synth",)]
    states = [r[0] for r in con.execute("SELECT state FROM trials")]
    assert len(states) == 4 and set(states) <= {"COMPLETE", "PRUNED"}
    best = con.execute("SELECT MAX(value) FROM trial_values").fetchone()[0]
    assert best > 0.95
    capsys.readouterr()
    assert main(["status", "--storage", f"sqlite:///{mlp_study}"]) == 0
    out = capsys.readouterr().out
    assert "study mlp-synth: 4 trials" in out and "activation=" in out


@pytest.mark.slow
def test_export_then_final_tests_on_the_separate_draw(mlp_study, tmp_path):
    best = tmp_path / "best.json"
    assert main(["export", "--storage", f"sqlite:///{mlp_study}", "--out", str(best)]) == 0
    assert json.loads(best.read_text())["trial_config"]["task"] == "mlp-synth"
    out = tmp_path / "final"
    with one_thread():
        assert (
            main(
                [
                    "final",
                    "--config",
                    str(best),
                    "--device",
                    "cpu",
                    "--seeds",
                    "1",
                    "--train-size",
                    "6000",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["task"], metrics["train_images"], metrics["test_images"]) == ("mlp-synth", 6000, TEST_POINTS)
    assert metrics["classes"] == ["inside", "outside"]
    assert metrics["test_acc_mean"] > 0.95
