"""Checkpoint files don't leak (issue 14, class 2), and a study at its budget keeps no WAITING retry (class 11).

A worker, when it starts, deletes the temp files of interrupted writes and the checkpoints of chains no
trial will resume (complete, pruned, failed for good, retry closed), and never one of a RUNNING trial or of
a failed trial whose retry WAITs. `status` reports the bytes the checkpoints hold.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState, create_trial

from model.tasks import DataConfig
from search.cli import main
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.create import create_study
from storage.artifacts import checkpoint_dir
from storage.checkpoints import CheckpointStore
from storage.study import quiet_optuna

DIST: dict[str, BaseDistribution] = {"hidden": CategoricalDistribution([16, 32, 64])}
OLD = time.time() - 3600  # files written an hour ago: past any grace a sweep gives young files


def make_study(url: str, art: Path) -> tuple[optuna.Study, CheckpointStore, SearchConfig]:
    """A study with a trial in each state that matters, and a checkpoint (or temp file) for each.

    0 COMPLETE, 1 PRUNED: finished, their checkpoints leaked (a worker killed between tell and delete)
    2 FAIL with retry 4 WAITING: the retry needs trial-2.pt
    3 RUNNING, alive: trial-3.pt and the temp file of its write in progress stay
    5 FAIL for good (retried max_retry times already)
    plus a temp file left by a kill during a write of trial 0.
    """
    quiet_optuna()
    settings = SearchConfig(
        study="leaks",
        storage=url,
        task="mlp-synth",
        trials=2,
        epochs=2,
        max_retry=1,
        artifacts=str(art),
        data=DataConfig(val_size=200, train_size=300),
    )
    study = create_study(settings, load_space(None, "mlp-synth"), 0)
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params={"hidden": 16}, distributions=DIST))
    study.add_trial(
        create_trial(state=TrialState.PRUNED, params={"hidden": 32}, distributions=DIST, intermediate_values={1: 0.5})
    )
    study.add_trial(create_trial(state=TrialState.FAIL, params={"hidden": 64}, distributions=DIST))
    study.ask()  # trial 3: RUNNING (asked before a WAITING trial exists, which ask would take)
    study.add_trial(
        create_trial(
            state=TrialState.WAITING,
            params={"hidden": 64},
            distributions=DIST,
            system_attrs={"failed_trial": 2, "retry_history": [2]},
        )
    )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"hidden": 16},
            distributions=DIST,
            system_attrs={"failed_trial": 5, "retry_history": [5]},
        )
    )
    store = CheckpointStore(checkpoint_dir(art, "leaks"))
    for key in (0, 1, 2, 3, 5):
        store.save(key, {"w": torch.zeros(1000)})
    for name in ("trial-0.pt.k1l2m3.tmp", "trial-3.pt.a8b9c0.tmp"):
        (store.folder / name).write_bytes(b"\0" * 5000)
    for p in store.folder.iterdir():
        os.utime(p, (OLD, OLD))
    return study, store, settings


def names(store: CheckpointStore) -> list[str]:
    return sorted(re.sub(r"\.pt\..*\.tmp$", ".pt.*.tmp", p.name) for p in store.folder.iterdir())


def test_worker_start_deletes_leaks_and_keeps_what_live_trials_need(db_url, tmp_path, capsys):
    from search.workers.run import sweep_checkpoints

    study, store, _ = make_study(db_url, tmp_path / "art")
    assert names(store) == [
        "trial-0.pt",
        "trial-0.pt.*.tmp",
        "trial-1.pt",
        "trial-2.pt",
        "trial-3.pt",
        "trial-3.pt.*.tmp",
        "trial-5.pt",
    ]
    sweep_checkpoints(study, store)
    assert names(store) == ["trial-2.pt", "trial-3.pt", "trial-3.pt.*.tmp"]
    assert "deleted 4 old checkpoint files" in capsys.readouterr().err


def test_young_files_are_left_for_a_later_sweep(db_url, tmp_path):
    """A trial failed a moment ago may not have its retry queued yet: its checkpoint is not garbage yet."""
    from search.workers.run import sweep_checkpoints

    study, store, _ = make_study(db_url, tmp_path / "art")
    os.utime(store.path(5), None)  # now
    sweep_checkpoints(study, store)
    assert "trial-5.pt" in names(store)


def test_status_reports_the_bytes_checkpoints_hold(db_url, tmp_path, capsys):
    _, store, _ = make_study(db_url, tmp_path / "art")
    held = sum(p.stat().st_size for p in store.folder.iterdir())
    capsys.readouterr()
    assert main(["status", "--storage", db_url, "--study", "leaks"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoints: 7 files, {held / 1e6:.1f} MB ({held:,} bytes) in {store.folder}" in out, out


def test_study_at_its_budget_closes_waiting_retries_and_their_checkpoints(db_url, tmp_path, capsys):
    """The budget (2 finished) is reached while trial 4, a retry of trial 2, still WAITs: a worker that starts
    then closes it (no worker would ever run it) and deletes the checkpoint it would have resumed from."""
    study, store, settings = make_study(db_url, tmp_path / "art")
    capsys.readouterr()
    assert (
        main(
            [
                "worker",
                "--task",
                "mlp-synth",
                "--storage",
                db_url,
                "--study",
                "leaks",
                "--trials",
                "2",
                "--epochs",
                "2",
                "--max-retry",
                "1",
                "--artifacts",
                str(tmp_path / "art"),
                "--device",
                "cpu",
                "--val-size",
                "200",
                "--train-size",
                "300",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    err = captured.out + captured.err  # worker lines go through the display, to either stream
    trials = study.get_trials()
    assert [t.state for t in trials if t.state == TrialState.WAITING] == []
    assert trials[4].state == TrialState.FAIL
    assert "budget" in trials[4].user_attrs["closed_reason"] and "closed retries [4]" in err
    assert names(store) == ["trial-3.pt", "trial-3.pt.*.tmp"]  # only the live RUNNING trial's files remain
