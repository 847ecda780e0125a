"""A full disk (issue 14, class 7), on a 2 MB tmpfs: a checkpoint that does not fit, and a database that cannot grow.

Wanted each time: one clear line per failed attempt and no traceback, the trial failed and queued for retry
(nothing left RUNNING), the worker stopping after a bounded number of attempts, the database intact, and
the study finishing once space is freed. Mounting needs root; without it these tests skip.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from model.tasks import DataConfig
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.create import create_study
from storage.study import open_storage, quiet_optuna
from tests.helpers import ALEXSEARCH, CHECKPOINT_EVERY_EPOCH, ENV, FAST_HEARTBEAT, run_cli

DATA = ["--train-size", "300", "--val-size", "200"]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path, leave_bytes: int) -> Path:
    """Fill fs with a file until only leave_bytes are free."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


def worker_argv(url: str, art: Path, *extra: str) -> list[str]:
    return [
        ALEXSEARCH,
        "worker",
        "--task",
        "mlp-synth",
        "--storage",
        url,
        "--study",
        "full",
        "--worker-index",
        "0",
        "--trials",
        "3",
        "--epochs",
        "2",
        "--max-retry",
        "5",
        *FAST_HEARTBEAT,
        *CHECKPOINT_EVERY_EPOCH,  # the test needs a checkpoint to resume from
        "--device",
        "cpu",
        "--artifacts",
        str(art),
        *DATA,
        *extra,
    ]


def worker(url: str, art: Path, *extra: str) -> subprocess.CompletedProcess:
    """A worker process: its whole output is checked for tracebacks, including a background thread's."""
    return subprocess.run(worker_argv(url, art, *extra), capture_output=True, text=True, timeout=240, env=ENV)


def worker_here(url: str, art: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The worker that finishes the study once there is space again, in this process: (exit code, output)."""
    capsys.readouterr()
    code = run_cli(worker_argv(url, art)[1:])
    out, err = capsys.readouterr()
    return code, out + err


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name="full", storage=storage).get_trials()
    finally:
        storage.engine.dispose()


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_fails_the_trial_for_retry_and_stops_the_worker(small_fs, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"  # the database has room; the checkpoints' disk has not
    filler = fill(small_fs, 8_000)  # an mlp-synth checkpoint with Adam is > 50 kB
    r = worker(url, small_fs)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    folder = next(small_fs.glob("checkpoints/*"))
    failed = [line for line in out.splitlines() if " failed: " in line]
    assert failed == [
        f"trial {n} failed: {folder / f'trial-{root}.pt'}: No space left on device; queued for retry "
        f"({n + 1} in a row, stopping at 3)"
        for n, root in ((0, 0), (1, 0), (2, 0))
    ], out[-3000:]
    assert "worker stopped: 3 trials in a row failed, the last one with:" in out
    states = Counter(t.state for t in trials(url))
    assert states == {TrialState.FAIL: 3, TrialState.WAITING: 1}, states  # the third one's retry waits
    assert list(folder.iterdir()) == []  # no temp file left behind

    filler.unlink()  # space again: the queued retry and the rest of the budget run
    code, out = worker_here(url, small_fs, capsys)
    assert code == 0, out[-3000:]
    after = trials(url)
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in after) == 3
    assert any(
        t.system_attrs.get("failed_trial") == 0 and t.state.is_finished() and t.state != TrialState.FAIL for t in after
    )  # the chain of trial 0 was retried to the end


@pytest.mark.slow
def test_database_that_cannot_grow_stops_the_worker_in_one_line_and_stays_intact(small_fs, tmp_path, capsys):
    quiet_optuna()
    db = small_fs / "study.db"
    url = f"sqlite:///{db}"
    create_study(
        SearchConfig(
            study="full",
            storage=url,
            task="mlp-synth",
            trials=3,
            epochs=2,
            max_retry=5,
            heartbeat_interval=1,
            grace_period=3,
            artifacts=str(tmp_path / "art"),
            data=DataConfig(val_size=200, train_size=300),
        ),
        load_space(None, "mlp-synth"),
        0,
    ).get_trials()
    filler = fill(small_fs, 200_000)
    r = worker(url, tmp_path / "art")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "storage error" not in out, out[-3000:]
    stopped = [line for line in out.splitlines() if line.startswith("worker stopped:")]
    assert len(stopped) == 1 and "database or disk is full" in stopped[0], out[-3000:]
    assert not [t for t in trials(url) if t.state == TrialState.RUNNING]
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    filler.unlink()
    code, out = worker_here(url, tmp_path / "art", capsys)
    assert code == 0, out[-3000:]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials(url)) == 3
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
