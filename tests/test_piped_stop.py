"""Ctrl-C on `alexsearch search ... 2>&1 | tee run.log` keeps the interrupted trials (issue 12, item 1b).

The reader of the pipe is a process that dies on SIGINT, in the same process group as the search, and the test
sends SIGINT to that group as a terminal does: the reader is usually gone before the workers have stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage.artifacts import checkpoint_dir
from storage.study import open_storage
from tests.helpers import (
    ALEXSEARCH,
    CHECKPOINT_EVERY_EPOCH,
    ENV,
    FAST_HEARTBEAT,
    NO_EARLY_STOP,
    mlp_args,
    run_cli,
    wait_for,
)

# Copies its input to its output, line by line, until Ctrl-C (KeyboardInterrupt) ends it, as tee would.
READER = "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n    sys.stdout.flush()\n"


def search_cmd(url: str, art: Path, workers: int, trials: int) -> list[str]:
    return [
        ALEXSEARCH,
        *mlp_args(
            "search",
            url,
            "piped",
            art,
            *NO_EARLY_STOP,
            *FAST_HEARTBEAT,
            *CHECKPOINT_EVERY_EPOCH,  # the test needs a checkpoint to resume from
            *("--workers", str(workers)),
            trials=trials,
            epochs=30,
            train_size=20000,
            val_size=2000,
        ),
    ]


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_on_a_piped_search_queues_the_retries_and_the_rerun_finishes_them(workers, db_url, tmp_path, capsys):
    art = tmp_path / "art"
    folder = checkpoint_dir(art, "piped")  # a readable slug plus a hash of the name
    log = tmp_path / "run.log"
    search = subprocess.Popen(
        search_cmd(db_url, art, workers, trials=workers),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=ENV,
        process_group=0,
    )  # own group: a terminal job
    reader = subprocess.Popen(
        [sys.executable, "-c", READER],
        stdin=search.stdout,
        stdout=log.open("w"),
        stderr=subprocess.DEVNULL,
        process_group=search.pid,
    )
    search.stdout.close()  # the reader holds the only read end: when it dies, writes get EPIPE
    try:
        wait_for(
            lambda: folder.exists() and len(list(folder.glob("trial-*.pt"))) == workers,
            180,
            "every worker to checkpoint an epoch",
        )
        os.killpg(search.pid, signal.SIGINT)  # Ctrl-C
        reader.wait(timeout=30)
        search.wait(timeout=60)
        wait_for(lambda: group_is_gone(search.pid), 30, "every process of the group to end")
    finally:
        for p in (search, reader):
            if p.poll() is None:
                p.kill()
    assert reader.returncode != 0  # the reader died of the Ctrl-C, before or while the workers stopped
    assert search.returncode == 128 + signal.SIGINT, log.read_text()[-3000:]
    storage = open_storage(db_url, create=False)
    trials = optuna.load_study(study_name="piped", storage=storage).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == workers and not [t for t in trials if t.state == TrialState.RUNNING]
    assert sorted(t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING) == sorted(
        t.number for t in failed
    )  # each interrupted trial has its retry queued
    saved = {t.number: torch_epoch(folder / f"trial-{t.number}.pt") for t in failed}

    capsys.readouterr()
    code = run_cli(search_cmd(db_url, art, 1, trials=workers)[1:])  # the rerun: in this process
    assert code == 0, capsys.readouterr().err[-3000:]
    trials = optuna.load_study(study_name="piped", storage=storage).get_trials()
    retried = {t.system_attrs["failed_trial"]: t for t in trials if "failed_trial" in t.system_attrs}
    assert sorted(retried) == sorted(saved)
    for number, t in retried.items():
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs["resumed_from"] == {"trial": number, "epoch": saved[number]}  # from the checkpoint
    assert len(trials) == 2 * workers  # no new trial started in their place
    assert list(folder.glob("*")) == []  # no checkpoint left on disk
    storage.engine.dispose()


def torch_epoch(path: Path) -> int:
    import torch

    return int(torch.load(path, weights_only=True)["epoch"])
