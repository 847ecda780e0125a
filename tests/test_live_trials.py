"""A live trial is never taken for dead, and a worker whose trial is ended under it goes on (issue 12, item 1).

Real `alexsearch worker` processes on mlp-synth, on SQLite and PostgreSQL, with a 1 s heartbeat and a 3 s grace
period so a trial outlives the grace period within seconds.
"""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage.errors import StorageError
from storage.heartbeat import reap_stale_trials, retry
from storage.study import Heartbeat, open_storage
from tests.helpers import ALEXSEARCH, CHECKPOINT_EVERY_EPOCH, ENV, NO_EARLY_STOP, mlp_args, wait_for

GRACE_S = 3


def worker_cmd(url: str, art: Path, trials: int, epochs: int, index: int, train_size: int = 20000) -> list[str]:
    return [
        ALEXSEARCH,
        *mlp_args(
            "worker",
            url,
            "live",
            art,
            *NO_EARLY_STOP,
            *("--heartbeat-interval", "1", "--grace-period", str(GRACE_S)),
            *CHECKPOINT_EVERY_EPOCH,  # the test needs a checkpoint to kill or resume from
            *("--worker-index", str(index)),
            trials=trials,
            epochs=epochs,
            train_size=train_size,
            val_size=2000,
        ),
    ]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV)


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        storage = open_storage(url, create=False)
    except StorageError:  # the worker has not created the database yet
        return []
    try:
        return optuna.load_study(study_name="live", storage=storage).get_trials()
    except KeyError:  # nor the study
        return []
    finally:
        storage.engine.dispose()


def first_trial_running_for(url: str, seconds: float) -> bool:
    ts = trials(url)
    return (
        bool(ts)
        and ts[0].state == TrialState.RUNNING
        and ts[0].datetime_start is not None
        and (datetime.now() - ts[0].datetime_start).total_seconds() > seconds
    )


@pytest.mark.slow
def test_a_second_worker_leaves_a_trial_that_beats_past_the_grace_period_alone(storage_url, tmp_path):
    art = tmp_path / "art"
    a = start(worker_cmd(storage_url, art, 1, 1000, 0), tmp_path / "a.log")  # one trial of 100 s or more
    b = None
    try:
        wait_for(
            lambda: first_trial_running_for(storage_url, GRACE_S + 1.5),
            120,
            "trial 0 to run for longer than the grace period",
        )
        b = start(worker_cmd(storage_url, art, 1, 1000, 1), tmp_path / "b.log")
        # B reaps before it prints its "study ... trials finished" line.
        wait_for(lambda: "trials finished" in (tmp_path / "b.log").read_text(), 120, "worker B to start")
        time.sleep(1.5)  # and A's trial goes on beating (a reaped trial would make A fail at its next epoch)
        assert a.poll() is None, (tmp_path / "a.log").read_text()[-2000:]
        ts = trials(storage_url)
        assert ts[0].state == TrialState.RUNNING, "trial 0 ended: it was reaped, or it finished too soon to tell"
        assert not [t for t in ts if t.system_attrs.get("failed_trial") == 0]
    finally:
        for p in (b, a):  # the rest of both trials is not the point here
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(timeout=60)
    out_a, out_b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    print("worker B:", out_b[:400])
    assert "reaped" not in out_b
    assert "Cannot tell" not in out_a and "Traceback" not in out_a


@pytest.mark.slow
def test_a_worker_whose_trial_is_failed_under_it_says_so_and_goes_on(storage_url, tmp_path):
    art = tmp_path / "art"
    a = start(worker_cmd(storage_url, art, 2, 10, 0, train_size=60000), tmp_path / "a.log")  # ~0.3 s an epoch
    try:
        wait_for(
            lambda: bool(trials(storage_url)) and len(trials(storage_url)[0].intermediate_values) >= 2,
            120,
            "trial 0 to report two epochs",
        )
        # Another process ends trial 0 and queues its retry, as a reaper that took it for dead would.
        storage = open_storage(storage_url, create=True)
        study = optuna.load_study(study_name="live", storage=storage)
        trial0 = study.get_trials()[0]
        storage.set_trial_state_values(trial0._trial_id, state=TrialState.FAIL)
        retry(study, storage.get_trial(trial0._trial_id), max_retry=2)
        storage.engine.dispose()
        a.wait(timeout=240)
    finally:
        if a.poll() is None:
            a.kill()
    out = (tmp_path / "a.log").read_text()
    print(out[-2500:])
    assert a.returncode == 0, out[-3000:]
    assert "Cannot tell" not in out and "Traceback" not in out
    said = [line for line in out.splitlines() if "by another process" in line]
    assert said == [
        "trial 0 was set FAIL by another process while it ran here; stopped it, going on with the next trial"
    ]
    ts = trials(storage_url)
    assert ts[0].state == TrialState.FAIL
    retried = [t for t in ts if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].user_attrs["resumed_from"]["trial"] == 0  # the checkpoint was left for the retry
    assert sum(t.state == TrialState.COMPLETE for t in ts) == 2  # and the worker went on to its budget


def test_reaping_skips_a_trial_that_beats_and_is_older_than_the_grace_period(storage_url):
    """The check a starting worker makes, in process: a beating trial older than the grace period stays."""
    storage = open_storage(storage_url, create=True, heartbeat=Heartbeat(1, 2, 2))
    study = optuna.create_study(study_name="s", storage=storage)
    live = study.ask()
    storage.record_heartbeat(live._trial_id)
    time.sleep(2.2)
    storage.record_heartbeat(live._trial_id)  # still beating
    assert reap_stale_trials(study, grace_period_s=2, max_retry=2) == []
    assert study.get_trials()[0].state == TrialState.RUNNING
