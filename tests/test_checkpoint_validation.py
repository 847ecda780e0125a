"""A checkpoint that loads but does not fit the trial resuming it (issue 14, class 3): the retry trains from
scratch with one warning line instead of crashing the worker or resuming from an epoch it never reached."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from optuna.trial import TrialState

from model.tasks import DataConfig
from model.train import EpochStats, Trainer
from search.settings import SearchConfig
from search.space.space import parse_space
from search.study.create import create_study
from search.trials.objective import Objective
from search.workers.loop import run_trials
from storage.checkpoints import CheckpointError, CheckpointStore, CheckpointWriter, check_resumable
from storage.heartbeat import retry

EPOCHS = 3
SPACE = """
task = "mlp-synth"
[params]
hidden = { choices = [8] }
lr = { low = 0.01, high = 0.02 }  # a range: a categorical space of one point counts as exhausted
"""
HISTORY_KEYS = [f.name for f in dataclasses.fields(EpochStats)]


@pytest.fixture
def setup(db_url, tmp_path):
    """A study whose trial 0 died after epoch 1 and is queued for retry, its real checkpoint, and the objective."""
    space = parse_space(SPACE, "test.toml")
    data_cfg = DataConfig(val_size=50, train_size=100)
    data = space.task.load_search_data(data_cfg)
    settings = SearchConfig(
        storage=db_url, study="t", task="mlp-synth", data=data_cfg, epochs=EPOCHS, pruner="none", patience=0
    )
    study = create_study(settings, space, settings.seed)
    lines: list[str] = []
    store = CheckpointStore(tmp_path / "ck")
    objective = Objective(
        space, settings, data, torch.device("cpu"), log=lines.append, checkpoints=CheckpointWriter(store, every_s=0)
    )
    trial = study.ask()
    config = objective.config_for(trial)
    study.tell(trial, state=TrialState.FAIL)
    retry(study, study.get_trials()[0], max_retry=2)
    trainer = Trainer(space.task, config.model_config(), config.train, data, torch.device("cpu"))
    next(trainer.epochs())
    state = {**trainer.state_dict(), "config": config.to_dict()}
    return study, objective, space, store, state, lines, (config, trainer)


def spoil(state: dict, what: str) -> Any:
    state = {**state, "model": dict(state["model"]), "optimizer": {**state["optimizer"]}}
    first = next(iter(state["model"]))
    if what == "missing-key":
        del state["optimizer"]
    elif what == "wrong-shape":
        state["model"][first] = torch.zeros(3, 3)
    elif what == "missing-tensor":
        del state["model"][first]
    elif what == "another-config":
        state["config"] = {**state["config"], "task": "alexnet-cifar10"}
    elif what == "epoch-999":
        state["epoch"] = 999
    elif what == "epoch-0":
        state["epoch"] = 0
    elif what == "short-history":
        state["history"] = []
    elif what == "optimizer-state-shape":
        pid, entry = next(iter(state["optimizer"]["state"].items()))
        state["optimizer"]["state"] = {pid: {**entry, "exp_avg": torch.zeros(7)}}
    elif what == "rng":
        state["torch_rng"] = torch.zeros(3, dtype=torch.uint8)
    elif what == "not-a-dict":
        return [1, 2, 3]
    return state


BAD = [
    "missing-key",
    "wrong-shape",
    "missing-tensor",
    "another-config",
    "epoch-999",
    "epoch-0",
    "short-history",
    "optimizer-state-shape",
    "rng",
    "not-a-dict",
]


@pytest.mark.parametrize("what", BAD)
def test_a_checkpoint_that_does_not_fit_trains_from_scratch_with_one_line(what, setup):
    study, objective, space, store, state, lines, _ = setup
    store.save(0, spoil(state, what))
    run_trials(study, objective, 1, space)
    retried = study.get_trials()[1]
    assert retried.state == TrialState.COMPLETE
    assert sorted(retried.intermediate_values) == list(range(1, EPOCHS + 1))  # all epochs trained here
    assert "resumed_from" not in retried.user_attrs
    warnings = [line for line in lines if "not resuming trial 0" in line]
    assert len(warnings) == 1 and warnings[0].endswith("training from scratch"), lines
    assert str(store.path(0)) in warnings[0]


def test_a_torn_checkpoint_trains_from_scratch_with_one_line(setup):
    study, objective, space, store, _, lines, _ = setup
    store.folder.mkdir(parents=True, exist_ok=True)
    store.path(0).write_bytes(b"PK\x03\x04 torn")
    run_trials(study, objective, 1, space)
    assert study.get_trials()[1].state == TrialState.COMPLETE
    assert len([line for line in lines if "is unreadable" in line and "training from scratch" in line]) == 1


def test_a_good_checkpoint_still_resumes(setup):
    study, objective, space, store, state, lines, _ = setup
    store.save(0, state)
    run_trials(study, objective, 1, space)
    retried = study.get_trials()[1]
    assert retried.state == TrialState.COMPLETE and retried.user_attrs["resumed_from"] == {"trial": 0, "epoch": 1}
    assert "trial 1: resuming trial 0 after epoch 1" in lines


@pytest.mark.parametrize("what", BAD)
def test_check_resumable_names_what_is_wrong(what, setup):
    *_, state, _, (config, trainer) = setup
    expected = dict(
        config=config.to_dict(),
        model=trainer.model,
        optimizer=trainer.optimizer,
        epochs=EPOCHS,
        history_keys=HISTORY_KEYS,
    )
    check_resumable(state, **expected)  # the real one passes
    with pytest.raises(CheckpointError) as e:
        check_resumable(spoil(state, what), **expected)
    assert len(str(e.value).splitlines()) == 1
