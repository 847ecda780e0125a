"""The objective and the worker loop through Optuna's real API on a tiny study (the MLP task: trials take
a fraction of a second; 3,000 points and lr 1e-2 let a good trial clearly beat a flat one by epoch 2)."""

import pytest
import torch
from optuna.trial import TrialState

from model.tasks import DataConfig
from search.settings import SearchConfig
from search.space.space import parse_space
from search.study.create import create_study
from search.trials.objective import Objective
from search.trials.record import finished_count
from search.workers.loop import run_trials

SPACE = """task = "mlp-synth"
[params]
optimizer = { choices = ["adam", "sgd"] }
lr = { choices = [1e-2, 1e-6, 1e6] }
batch_size = { choices = [10, 20] }
[fixed]
activation = "relu"  # unbounded: sgd with lr 1e6 overflows to nan (sigmoid saturates instead)
"""


@pytest.fixture
def setup(db_url):
    space = parse_space(SPACE, "test.toml")
    data_cfg = DataConfig(val_size=500, train_size=3000)
    data = space.task.load_search_data(data_cfg)

    def make(**kw):
        settings = SearchConfig(storage=db_url, study="t", task="mlp-synth", data=data_cfg, **kw)
        study = create_study(settings, space, settings.seed)
        return study, Objective(space, settings, data, torch.device("cpu"), log=lambda s: None)

    return make, space


def test_clearly_worse_trial_is_pruned(setup):
    make, space = setup
    study, objective = make(epochs=3, trials=3, startup_trials=2, warmup_epochs=1, patience=0)
    good, bad = {"optimizer": "adam", "lr": 1e-2, "batch_size": 10}, {"optimizer": "sgd", "lr": 1e-6, "batch_size": 10}
    for params in (good, {**good, "batch_size": 20}, bad):
        study.enqueue_trial(params, skip_if_exists=False)
    run_trials(study, objective, 3, space)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert "fell below the median pruner's bar" in trials[2].user_attrs["pruned_reason"]
    assert len(trials[2].intermediate_values) == 2  # pruned at epoch 2, the first after the warm-up


def test_nan_trial_is_pruned_with_reason_and_study_goes_on(setup):
    make, space = setup
    study, objective = make(epochs=2, trials=2, pruner="none")
    study.enqueue_trial({"optimizer": "sgd", "lr": 1e6, "batch_size": 10})
    study.enqueue_trial({"optimizer": "adam", "lr": 1e-2, "batch_size": 10})
    run_trials(study, objective, 2, space)
    nan, ok = study.get_trials()
    assert nan.state == TrialState.PRUNED and nan.user_attrs["pruned_reason"].startswith("diverged: loss became nan")
    assert ok.state == TrialState.COMPLETE


def test_user_attrs_and_patience_stop(setup):
    make, space = setup
    study, objective = make(epochs=6, trials=1, pruner="none", patience=1)
    study.enqueue_trial({"optimizer": "sgd", "lr": 1e-6, "batch_size": 10})  # flat curve: stops after 1 epoch
    run_trials(study, objective, 1, space)
    t = study.get_trials()[0]
    assert t.state == TrialState.COMPLETE
    assert "no val_acc improvement for 1 epochs" in t.user_attrs["stopped_reason"]
    n = len(t.intermediate_values)
    assert 2 <= n < 6
    for key in ("train_acc", "val_acc", "train_loss", "epoch_seconds", "images_per_s"):
        assert len(t.user_attrs[key]) == n
    assert t.value == max(t.user_attrs["val_acc"]) == t.intermediate_values[t.user_attrs["best_epoch"]]
    assert t.user_attrs["config"]["train"]["epochs"] == 6
    assert {"torch", "optuna", "python"} <= set(t.user_attrs["versions"])
    assert t.user_attrs["device"] == "cpu" and t.user_attrs["seed"] == 0


def test_budget_counts_the_study_not_the_process(setup):
    make, space = setup
    study, objective = make(epochs=1, trials=2, pruner="none")
    assert run_trials(study, objective, 2, space) == 2
    study2, objective2 = make(epochs=1, trials=2, pruner="none")
    assert run_trials(study2, objective2, 2, space) == 0  # resumed: the study already has 2
    assert run_trials(study2, objective2, 3, space) >= 1  # more only if a sampled config was a duplicate
    assert finished_count(study2) == 3


def test_a_config_already_trained_is_not_trained_again(setup):
    make, space = setup
    study, objective = make(epochs=1, trials=2, pruner="none")
    same = {"optimizer": "adam", "lr": 1e-2, "batch_size": 20}
    for params in (same, same, {**same, "batch_size": 10}):
        study.enqueue_trial(params, skip_if_exists=False)
    run_trials(study, objective, 2, space)
    first, dup, other = study.get_trials()
    assert first.state == other.state == TrialState.COMPLETE
    assert dup.state == TrialState.PRUNED and dup.user_attrs["duplicate_of"] == 0
    assert not dup.intermediate_values  # nothing was trained
