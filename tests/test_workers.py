"""Parallel workers on one study: a global budget, crash recovery from checkpoints, clean stops, exactly once.

The multi-process tests run on SQLite and PostgreSQL through the `storage_url` fixture."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.workers.placement import default_workers, gpu_for, threads_per_worker
from storage.artifacts import checkpoint_dir
from storage.checkpoints import CheckpointStore
from storage.heartbeat import reap_stale_trials
from storage.study import Heartbeat, open_storage
from tests.helpers import (
    ALEXSEARCH,
    CHECKPOINT_EVERY_EPOCH,
    ENV,
    FAST_HEARTBEAT,
    NO_EARLY_STOP,
    forked_processes,
    mlp_args,
    run_cli,
    take_enqueued,
    wait_for,
    worker_pids,
)


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False))


# --- placement and checkpoints: plain functions -------------------------------------------------------


def test_gpu_placement_is_i_mod_g_and_packs_k_per_gpu():
    assert [gpu_for(i, ["0", "1", "2", "3"]) for i in range(8)] == ["0", "1", "2", "3", "0", "1", "2", "3"]
    assert [gpu_for(i, ["2", "5"]) for i in range(3)] == ["2", "5", "2"]  # a user's CUDA_VISIBLE_DEVICES=2,5
    assert gpu_for(3, []) is None
    assert default_workers(gpus=4, workers_per_gpu=2) == 8 and default_workers(gpus=0, workers_per_gpu=2) == 1
    assert threads_per_worker(4, 16) == 4 and threads_per_worker(8, 2) == 1


def test_checkpoint_is_atomic_and_loads_weights_only(tmp_path):
    store = CheckpointStore(tmp_path / "ck")
    state = {"epoch": 3, "model": {"w": torch.ones(2)}, "history": [{"val_acc": 0.5}], "config": {"a": 1}}
    store.save(7, state)
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["trial-7.pt"]  # no temp file left behind
    loaded = store.load(7)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))
    store.path(7).write_bytes(b"torn")
    with pytest.warns(UserWarning, match="ignoring unreadable checkpoint"):
        assert store.load(7) is None
    store.delete(7)
    assert store.load(7) is None


def test_trial_that_died_before_its_first_heartbeat_is_reaped(storage_url):
    storage = open_storage(storage_url, create=True, heartbeat=Heartbeat(1, 2, 2))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # RUNNING, never beats
    assert reap_stale_trials(study, grace_period_s=60, max_retry=2) == []  # too young to call dead
    time.sleep(2.2)
    assert reap_stale_trials(study, grace_period_s=2, max_retry=2) == [dead.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials()[1].system_attrs["failed_trial"] == dead.number


# --- multi-process -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_workers_share_one_budget(storage_url, tmp_path):
    budget = 24
    r = subprocess.run(
        [ALEXSEARCH, *mlp_args("search", storage_url, "par", tmp_path / "art", "--workers", "4", trials=budget)],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "database is locked" not in r.stderr + r.stdout
    trials = load(storage_url, "par").get_trials()
    states = Counter(t.state for t in trials)
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, states
    counted = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert budget <= len(counted) <= budget + 3  # overshoot at most the other workers' running trials


def test_the_forkserver_preload_starts_neither_cuda_nor_a_thread():
    """Workers are forked from a process that imported search/workers/preload.py: forking is safe only if that
    import started no CUDA (PyTorch refuses CUDA in a child forked after it) and no Python thread. Checked in a
    fresh interpreter, as the forkserver is one; CUDA's half means something only on a GPU machine."""
    code = (
        "import threading, torch, search.workers.preload; print(torch.cuda.is_initialized(), threading.active_count())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "1"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_forked_workers_train_on_cuda(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    argv = mlp_args("search", db, "cuda", tmp_path / "art", "--workers", "2", trials=4)
    r = subprocess.run(
        [ALEXSEARCH, *[a if a != "cpu" else "cuda" for a in argv]], capture_output=True, text=True, env=ENV
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert {t.state for t in load(db, "cuda").get_trials()} <= {TrialState.COMPLETE, TrialState.PRUNED}


# The MLP task with epochs of 20,000 points (about 0.2 s each): a trial of EPOCHS epochs outlasts the 0.2 s polls
# that wait for its first checkpoint, and costs little.
EPOCHS = 8


def _worker_args(url: str, art: Path, command: str, *extra: str, epochs: int = EPOCHS) -> list[str]:
    return mlp_args(
        command,
        url,
        "crash",
        art,
        *extra,
        *NO_EARLY_STOP,
        *FAST_HEARTBEAT,
        *CHECKPOINT_EVERY_EPOCH,
        trials=2,
        epochs=epochs,
        train_size=20000,
        val_size=2000,
    )


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_from_checkpoint(storage_url, tmp_path, capsys):
    art = tmp_path / "art"
    ckpt = checkpoint_dir(art, "crash") / "trial-0.pt"
    worker = subprocess.Popen(
        [ALEXSEARCH, *_worker_args(storage_url, art, "worker", "--worker-index", "0")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        wait_for(ckpt.exists, 120, "the first checkpoint")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    saved_epoch = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= saved_epoch < EPOCHS
    assert load(storage_url, "crash").get_trials()[0].state == TrialState.RUNNING  # left behind by the kill

    time.sleep(3.5)  # past the grace period: the dead trial's heartbeat is stale now
    started = time.monotonic()
    capsys.readouterr()
    code = run_cli(_worker_args(storage_url, art, "search"))  # the resume: in this process, a real one was killed
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    trials = load(storage_url, "crash").get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].user_attrs["resumed_from"] == {"trial": 0, "epoch": saved_epoch}
    assert sorted(retried[0].intermediate_values) == list(range(1, EPOCHS + 1))  # the learning curve carries on
    assert f"resuming trial 0 after epoch {saved_epoch}" in out + err
    trained = [line for line in (out + err).splitlines() if f"trial {retried[0].number} epoch" in line]
    assert trained[0].split("epoch ")[1].startswith(f"{saved_epoch + 1}/{EPOCHS}")  # only the lost epoch was redone
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2  # the budget
    assert not ckpt.exists()  # finished trials leave no checkpoint
    if storage_url.startswith("sqlite"):
        con = sqlite3.connect(storage_url.removeprefix("sqlite:///"))
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    print(f"kill-and-resume: resume run took {time.monotonic() - started:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm-to-search", "ctrl-c-to-process-group", "sigterm-to-process-group"])
def test_stop_signal_stops_all_workers_and_leaves_nothing_running(how, tmp_path, db_url):
    art = tmp_path / "art"
    cmd = [ALEXSEARCH, *_worker_args(db_url, art, "search", "--workers", "2", epochs=50)]
    search = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )  # its own process group, as in a terminal
    folder = checkpoint_dir(art, "crash")
    try:
        wait_for(
            lambda: folder.exists() and len(list(folder.glob("trial-*.pt"))) == 2,
            180,
            "both workers to checkpoint an epoch",
        )
        workers = worker_pids(search.pid)
        assert len(workers) == 2
        sent = time.monotonic()
        if how == "sigterm-to-search":
            search.send_signal(signal.SIGTERM)
        elif how == "ctrl-c-to-process-group":  # a terminal's Ctrl-C: SIGINT to every process of the group
            os.killpg(search.pid, signal.SIGINT)
        else:  # what `timeout`, `kill -- -PGID` and a Slurm job's end send: the forkserver gets it too
            os.killpg(search.pid, signal.SIGTERM)
        search.wait(timeout=30)
        took = time.monotonic() - sent
        # search waited for its workers: none is left when it exits
        running = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    finally:
        if search.poll() is None:
            search.kill()
    err = search.stderr.read()
    assert took < 15, f"workers took {took:.1f} s to stop"
    assert not running, err[-3000:]
    assert "Traceback" not in err, err[-3000:]  # a requested stop is not an error
    assert search.returncode == 128 + (signal.SIGINT if how == "ctrl-c-to-process-group" else signal.SIGTERM)
    trials = load(db_url, "crash").get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2
    assert {t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING} == {
        t.number for t in failed
    }  # each stopped trial is queued for retry
    assert len(list(folder.glob("trial-*.pt"))) == 2  # and its checkpoint survives


@pytest.mark.slow
def test_each_enqueued_trial_runs_exactly_once(storage_url, tmp_path):
    names, logs = [f"once-{round_}" for round_ in range(3)], [tmp_path / f"log-{round_}.txt" for round_ in range(3)]
    studies = [optuna.create_study(study_name=name, storage=open_storage(storage_url, create=True)) for name in names]
    for study in studies:
        for k in range(20):
            study.enqueue_trial({"k": k})
    with forked_processes("tests.helpers") as ctx:
        # Six processes race on each round's queue in turn, starting each round together (a barrier).
        barrier = ctx.Barrier(6)
        args = (storage_url, names, [str(log) for log in logs], 0.05, barrier)
        procs = [ctx.Process(target=take_enqueued, args=args) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert all(p.exitcode == 0 for p in procs)
    for round_, (study, log) in enumerate(zip(studies, logs, strict=True)):
        runs = Counter(int(line.split()[0]) for line in log.read_text().splitlines())
        assert runs == Counter(range(20)), f"round {round_}: {runs}"
        enqueued = [t for t in study.get_trials() if "fixed_params" in t.system_attrs]
        assert len(enqueued) == 20 and all(t.state == TrialState.COMPLETE for t in enqueued)
