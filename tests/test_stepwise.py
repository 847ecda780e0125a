"""The report's stepwise protocol (Table 1) as enqueued trials: order, no repeats, resume, several workers."""

from __future__ import annotations

import sqlite3
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.cli import main
from search.settings import SearchConfig
from search.space.space import builtin_space_path, load_space, parse_space
from search.trials.stepwise import PLAN_ATTR, Plan, Stepwise, apply_protocol, plan_done, plan_for, trial_values
from search.workers.loop import run_trials
from storage.study import open_storage

TABLE1 = str(builtin_space_path("alexnet-cifar10-table1.toml"))

# Each step has a winner that is not the default, so every step must build on the one before.
SCORE = {("batch_norm", True): 0.10, ("optimizer", "sgd"): 0.05, ("batch_size", 500): 0.03, ("lr", 1e-4): 0.02}
EXPECTED = [  # (batch_norm, optimizer, batch_size, lr) in the order the protocol runs them
    (False, "adam", 100, 1e-3),  # step 1: the report's defaults ...
    (True, "adam", 100, 1e-3),  # ... and batch norm on (wins)
    (True, "sgd", 100, 1e-3),  # step 2: adam already ran; sgd wins
    (True, "sgd", 10, 1e-3),  # step 3: 100 already ran
    (True, "sgd", 500, 1e-3),  # wins
    (True, "sgd", 500, 1e-4),  # step 4: 1e-3 already ran; 1e-4 wins
    (True, "sgd", 500, 1e-5),
]


def fake_objective(space, pause_s: float = 0.0):
    """Scores a config without training: 0.5 plus the bonus of each winning value.

    Like the real objective, it skips (prunes, with user attr duplicate_of) a config that an earlier
    trial has run or is running: two workers can enqueue the same config at the same moment.
    """

    def objective(trial: optuna.Trial) -> float:
        values = space.sample(trial)
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            # as the real objective: a just-claimed enqueued trial may not have written its params yet
            if t.number < trial.number and trial_values(t) == trial.params and "duplicate_of" not in t.user_attrs:
                trial.set_user_attr("duplicate_of", t.number)
                raise optuna.TrialPruned("duplicate")
        score = 0.5 + sum(SCORE.get((k, v), 0.0) for k, v in values.items())
        for epoch in (1, 2):
            trial.report(score - 0.1 / epoch, epoch)
        trial.set_user_attr("val_acc", [score - 0.1, score - 0.05])
        time.sleep(pause_s)
        return score - 0.05

    return objective


def configs(study: optuna.Study) -> list[tuple]:
    """The configs trained, in trial order (skipped duplicates left out)."""
    return [
        tuple(trial_values(t)[k] for k in ("batch_norm", "optimizer", "batch_size", "lr"))
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        if "duplicate_of" not in t.user_attrs
    ]


def new_study(db_url: str) -> optuna.Study:
    return optuna.create_study(storage=open_storage(db_url, create=True), study_name="sw", direction="maximize")


def test_stepwise_runs_table1_in_order_building_on_each_best(db_url):
    space = load_space(TABLE1)
    plan = plan_for(space)
    assert [s.name for s in plan.steps] == ["batch_norm", "optimizer", "batch_size", "lr"]
    assert plan.defaults == {"batch_norm": False, "optimizer": "adam", "batch_size": 100, "lr": 1e-3}
    assert plan.size == 7
    study = new_study(db_url)
    ran = run_trials(study, fake_objective(space), 100, space, strategy=Stepwise(plan))
    assert ran == 7  # the plan ends itself, well under the budget
    assert configs(study) == EXPECTED
    steps = [t.user_attrs["stepwise_step"] for t in study.trials]
    assert steps == [1, 1, 2, 3, 3, 4, 4]
    assert Plan.from_dict(study.user_attrs[PLAN_ATTR]) == plan
    assert study.best_trial.number == 5


def test_stepwise_resumes_and_never_repeats_a_config(db_url):
    space = load_space(TABLE1)
    study = new_study(db_url)
    run_trials(study, fake_objective(space), 3, space, strategy=Stepwise(plan_for(space)))
    assert configs(study) == EXPECTED[:3]
    again = optuna.load_study(study_name="sw", storage=open_storage(db_url, create=False))
    run_trials(again, fake_objective(space), 100, space, strategy=Stepwise(plan_for(space)))
    assert configs(again) == EXPECTED
    assert Stepwise(plan_for(space)).prepare(again) is False  # done: nothing new is enqueued
    assert len(again.trials) == 7 and plan_done(plan_for(space), again.trials)


def test_a_crashing_config_is_retried_then_given_up(db_url):
    space = load_space(TABLE1)
    inner = fake_objective(space)

    def crashing(trial: optuna.Trial) -> float:
        if space.sample(trial)["optimizer"] == "sgd":
            raise RuntimeError("out of memory")
        return inner(trial)

    study = new_study(db_url)
    for _ in range(3):  # the worker dies on the crash (catch=()); each rerun tries the config again
        with pytest.raises(RuntimeError):
            run_trials(study, crashing, 100, space, strategy=Stepwise(plan_for(space)))
    run_trials(study, crashing, 100, space, strategy=Stepwise(plan_for(space)))
    states = [(trial_values(t)["optimizer"], t.state) for t in study.trials]
    assert states.count(("sgd", TrialState.FAIL)) == 3 and len(study.trials) == 2 + 3 + 4
    assert plan_done(plan_for(space), study.trials)  # step 2 kept adam; steps 3 and 4 went on


def test_a_trial_that_finds_the_queue_empty_repeats_the_start_instead_of_sampling(db_url):
    space = load_space(TABLE1)
    study = new_study(db_url)
    run_trials(study, fake_objective(space), 2, space, strategy=Stepwise(plan_for(space)))
    study.optimize(fake_objective(space), n_trials=1)  # no enqueue: Optuna asks the sampler
    stray = study.trials[-1]
    assert trial_values(stray) == dict(zip(("batch_norm", "optimizer", "batch_size", "lr"), EXPECTED[0], strict=True))
    assert stray.user_attrs["duplicate_of"] == 0 and stray.state == TrialState.PRUNED


def test_two_workers_share_the_plan_and_wait_for_each_step(db_url):
    """Each worker enqueues one config before it takes one, and waits while a step still runs elsewhere."""
    space = load_space(TABLE1)
    new_study(db_url)
    errors = []

    def worker() -> None:
        try:
            study = optuna.load_study(study_name="sw", storage=open_storage(db_url, create=True))
            run_trials(
                study,
                fake_objective(space, pause_s=0.3),
                100,
                space,
                strategy=Stepwise(plan_for(space), poll_s=0.05, orphan_s=5.0, log=lambda line: None),
            )
        except Exception as e:  # surfaced below; a thread's exception would vanish
            errors.append(e)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]  # a hang must not block pytest
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    study = optuna.load_study(study_name="sw", storage=open_storage(db_url, create=False))
    assert not errors
    assert not any(t.is_alive() for t in threads), [(t.number, t.state.name, trial_values(t)) for t in study.trials]
    done = configs(study)
    assert sorted(done, key=EXPECTED.index) == EXPECTED  # the same 7 configs, none sampled by TPE, none twice
    # Two workers enqueueing the same config at once, or a rare empty pop of Optuna's queue (then the
    # StartSampler gives step 1's config), show up as instant duplicate_of skips, never as a new config.
    assert all("stepwise_step" in t.user_attrs or "duplicate_of" in t.user_attrs for t in study.trials)
    assert len(study.trials) <= 10


def test_a_range_parameter_takes_table1_values_and_other_params_are_refused():
    plan = plan_for(load_space(None, "alexnet-cifar10"))  # the default space: lr is a log range
    assert plan.steps[-1].name == "lr" and plan.steps[-1].values == (1e-3, 1e-4, 1e-5)
    extra = parse_space("[params]\nlr = { choices = [1e-3, 1e-4] }\ndropout = { choices = [0.0, 0.5] }\n", "x.toml")
    with pytest.raises(ValueError, match=r"params.dropout is not a step of the report's protocol"):
        plan_for(extra)
    fixed = parse_space("[params]\nbatch_size = { choices = [32, 64] }\n[fixed]\nbatch_norm = true\n", "y.toml")
    plan = plan_for(fixed)  # 100 is not a choice: the first choice is the starting point
    assert plan.defaults == {"batch_size": 32} and plan.size == 2


def test_apply_protocol_turns_pruning_off_and_budgets_the_plan():
    space = load_space(TABLE1)
    stepwise = apply_protocol(SearchConfig(strategy="stepwise"), space, trials_given=None)
    assert (stepwise.pruner, stepwise.patience, stepwise.trials) == ("none", 0, 7)
    assert apply_protocol(SearchConfig(strategy="stepwise"), space, trials_given=3).trials == 3
    assert apply_protocol(SearchConfig(), space, None) == SearchConfig()


@pytest.mark.slow
def test_cli_stepwise_on_tiny_data(tiny_data, tmp_path):
    """Through the CLI on a two-step space (batch 500 fixed keeps it quick): 3 configs, no pruning."""
    space = tmp_path / "two-steps.toml"
    space.write_text(
        "[params]\nbatch_norm = { choices = [false, true] }\nlr = { choices = [1e-3, 1e-4] }\n"
        "[fixed]\nbatch_size = 500\n"
    )
    db = tmp_path / "sw.db"
    rc = main(
        [
            "search",
            "--storage",
            f"sqlite:///{db}",
            "--study",
            "sw",
            "--data",
            str(tiny_data),
            "--strategy",
            "stepwise",
            "--space",
            str(space),
            "--epochs",
            "1",
            "--train-size",
            "100",
            "--val-size",
            "100",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    study = optuna.load_study(study_name="sw", storage=f"sqlite:///{db}")
    assert study.user_attrs["search_config"]["pruner"] == "none"
    assert study.user_attrs["search_config"]["patience"] == 0
    assert study.user_attrs["search_config"]["trials"] == 3
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert [trial_values(t)["batch_norm"] for t in trials[:2]] == [False, True]
    best_bn = max(trials[:2], key=lambda t: (t.value, not t.params["batch_norm"])).params["batch_norm"]
    assert trial_values(trials[2]) == {"batch_norm": best_bn, "lr": 1e-4}
    assert [t.user_attrs["stepwise_step"] for t in trials] == [1, 1, 2]
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()[0] == 3
