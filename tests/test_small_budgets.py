"""Small budgets: TPE's random start scales with --trials, and the pruner never prunes at the last epoch.
Also the trainer's in-epoch progress callback, which the workers turn into progress lines."""

from __future__ import annotations

import pytest
import torch
from optuna.trial import TrialState

from model.tasks import DataConfig, get_task
from model.train import TrainConfig, Trainer
from search.settings import SearchConfig
from search.space.space import parse_space
from search.study.create import create_study
from search.trials.objective import Objective
from search.workers.loop import run_trials

SPACE = """
[params]
optimizer = { choices = ["adam", "sgd"] }
lr = { choices = [1e-3, 1e-6] }
batch_size = { choices = [10, 20] }
"""


@pytest.mark.parametrize("trials,expected", [(7, 3), (3, 3), (20, 7), (30, 10)])
def test_tpe_starts_with_a_third_of_the_budget_at_random(trials, expected, db_url):
    settings = SearchConfig(storage=db_url, study=f"t{trials}", trials=trials)
    assert settings.tpe_startup() == expected
    study = create_study(settings, parse_space(SPACE, "test.toml"), 0)
    assert study.sampler._n_startup_trials == expected  # Optuna keeps it private; read it to see it reached TPE


def test_tpe_startup_can_still_be_set(db_url):
    settings = SearchConfig(storage=db_url, study="t", trials=7, tpe_startup_trials=5)
    assert create_study(settings, parse_space(SPACE, "test.toml"), 0).sampler._n_startup_trials == 5


# mlp-synth with a learning setup: Adam at 1e-2 reaches about 0.95 in two epochs of 1,000 points, SGD at 1e-6
# stays at chance (0.48), so the pruner would stop the bad trial at any epoch it may prune at.
MLP_SPACE = """
task = "mlp-synth"
[params]
optimizer = { choices = ["adam", "sgd"] }
lr = { choices = [1e-2, 1e-6] }
batch_size = { choices = [10, 20] }
[fixed]
activation = "relu"
init = "he"
"""


def test_the_pruner_never_prunes_at_the_last_epoch(db_url):
    # Pruning is first allowed at epoch 2 (warm-up 1), which is also the last: the bad trial completes.
    space = parse_space(MLP_SPACE, "test.toml", "mlp-synth")
    data_cfg = DataConfig(val_size=500, train_size=1000)
    settings = SearchConfig(
        storage=db_url,
        study="t",
        task="mlp-synth",
        data=data_cfg,
        epochs=2,
        trials=3,
        startup_trials=2,
        warmup_epochs=1,
        patience=0,
    )
    study = create_study(settings, space, settings.seed)
    objective = Objective(
        space, settings, space.task.load_search_data(data_cfg), torch.device("cpu"), log=lambda s: None
    )
    good, bad = {"optimizer": "adam", "lr": 1e-2, "batch_size": 10}, {"optimizer": "sgd", "lr": 1e-6, "batch_size": 10}
    for params in (good, {**good, "batch_size": 20}, bad):
        study.enqueue_trial(params, skip_if_exists=False)
    run_trials(study, objective, 3, space)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len(trials[2].intermediate_values) == 2  # trained in full, and kept
    # though below both earlier trials at that epoch: a median pruner allowed to prune there would have
    assert trials[2].intermediate_values[2] < min(t.intermediate_values[2] for t in trials[:2])


def test_trainer_reports_progress_inside_an_epoch():
    task = get_task("mlp-synth")
    data = task.load_search_data(DataConfig(val_size=50, train_size=400))
    seen = []
    trainer = Trainer(
        task,
        task.model_config(),
        TrainConfig(batch_size=50, epochs=1),
        data,
        torch.device("cpu"),
        on_progress=seen.append,
        progress_every_s=0.0,
    )
    list(trainer.epochs())
    assert [p.steps for p in seen] == list(range(1, 8))  # after every step but the last, when due
    assert all(p.epoch == 1 and p.total_steps == 8 and p.images == 50 * p.steps for p in seen)
    assert all(p.images_per_s > 0 for p in seen)
