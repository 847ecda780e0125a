"""What several test files share: run the CLI in this process, wait for a condition, fingerprint a database,
and the module-level targets of spawned test workers.

Light to import: spawned workers import this module (spawn pickles a function by module and name), so the CLI,
and with it torch, is imported only by run_cli.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, TypeVar

import optuna
import pytest
import sqlalchemy

from storage.study import open_storage

T = TypeVar("T")

ALEXSEARCH = str(Path(sys.executable).parent / "alexsearch")  # the console script of this venv
# For `alexsearch` child processes: one torch thread each (CI has 2 cores), and their lines as they are written.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
NO_EARLY_STOP = ("--pruner", "none", "--patience", "0")  # every trial runs all its epochs
# A dead worker's trial is taken for dead within seconds: a beat a second, dead after 3 s without one.
FAST_HEARTBEAT = ("--heartbeat-interval", "1", "--grace-period", "3")
CHECKPOINT_EVERY_EPOCH = ("--checkpoint-every", "0")  # the default (60 s) writes none in a short trial


def mlp_args(
    command: str,
    url: str,
    study: str,
    art: Path | str,
    *extra: str,
    trials: int = 2,
    epochs: int = 2,
    train_size: int = 300,
    val_size: int = 200,
) -> list[str]:
    """The arguments of `alexsearch COMMAND` (search or worker) on the tiny mlp-synth task on the CPU: epochs of
    train_size points take milliseconds (20,000 points: about 0.2 s). extra: any other option. For a child
    process put ALEXSEARCH before them; run_cli takes them as they are."""
    return [
        *(command, "--task", "mlp-synth", "--device", "cpu", "--storage", url, "--study", study),
        *("--trials", str(trials), "--epochs", str(epochs)),
        *("--train-size", str(train_size), "--val-size", str(val_size), "--artifacts", str(art)),
        *extra,
    ]


def run_cli(argv: Sequence[str], timeout_s: float | None = None) -> int:
    """The exit code of `alexsearch ARGV` run in this process: what main() returns, or the code of the
    SystemExit that argparse's own errors leave through.

    With timeout_s, main() runs in a thread, so a command that wrongly starts serving fails the test after
    timeout_s seconds instead of hanging it.
    """
    from search.cli import main

    def run() -> int:
        try:
            return main(list(argv))
        except SystemExit as e:
            assert isinstance(e.code, int), f"SystemExit({e.code!r})"
            return e.code

    if timeout_s is None:
        return run()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert result, f"alexsearch {' '.join(argv)} still running after {timeout_s} s"
    return result[0]


def run_cli_stderr(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit code, stderr) of run_cli(argv): only what the command wrote, not what the test wrote before."""
    capsys.readouterr()
    rc = run_cli(argv)
    return rc, capsys.readouterr().err


@contextmanager
def forked_processes(*preload: str) -> Iterator[Any]:
    """A multiprocessing context whose processes a forkserver forks after importing the modules in preload once
    (the test module whose function they run): each starts at once, instead of importing optuna, and often
    torch, again (1-4 CPU-s a process), as the workers of `search --workers N` do. On exit, processes still
    running are killed, and the server is stopped and reaped, so that its CPU time and its children's count."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    try:
        yield ctx
    finally:
        for p in mp.active_children():
            p.kill()
            p.join()
        stop = getattr(forkserver._forkserver, "_stop", None)  # CPython's, as search/workers/launchers/local.py
        if stop is not None:
            stop()


def worker_pids(search_pid: int) -> list[int]:
    """Pids of the workers of `search --workers N` running as search_pid: the children of its forkserver."""
    return [pid for server in child_pids(search_pid, b"forkserver") for pid in child_pids(server)]


def child_pids(parent: int, cmdline_has: bytes = b"") -> list[int]:
    """Pids of parent's child processes whose command line holds cmdline_has."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent
                and cmdline_has in (entry / "cmdline").read_bytes()
            ):
                pids.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.2) -> T:
    """The first true value predicate() returns, asked every poll_s seconds; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def digest(db: Path) -> str:
    """SHA-256 of a SQLite database's SQL dump, read through SQLite (WAL included): equal digests = unchanged.

    Not of the file bytes: open()+close() on a database file drops this process's SQLite locks on it
    (sqlite.org/howtocorrupt.html, 2.2), and the bytes also move when SQLite checkpoints its WAL.
    """
    con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def digest_url(url: str) -> str:
    """A hash of every row of every table of any SQLAlchemy database (PostgreSQL): equal digests = unchanged."""
    engine = sqlalchemy.create_engine(url)
    h = hashlib.sha256()
    try:
        with engine.connect() as con:
            for name in sorted(sqlalchemy.inspect(engine).get_table_names()):
                for row in con.exec_driver_sql(f'SELECT * FROM "{name}" ORDER BY 1'):
                    h.update(repr((name, tuple(row))).encode())
    finally:
        engine.dispose()
    return h.hexdigest()


def take_enqueued(url: str, study_names: Sequence[str], log_paths: Sequence[str], seconds: float, barrier) -> None:
    """A spawned worker: for each study in turn, wait at barrier for the other workers, then run the study's
    waiting trials until none is left; each run appends its trial's `k` param to that study's log path.

    One process for every round (not one per round): the rounds race as before, at a third of the start-ups.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for study_name, log_path in zip(study_names, log_paths, strict=True):
        barrier.wait(timeout=120)
        _take_enqueued(url, study_name, log_path, seconds)


def _take_enqueued(url: str, study_name: str, log_path: str, seconds: float) -> None:
    storage = open_storage(url, create=True)
    study = optuna.load_study(study_name=study_name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        k = trial.suggest_int("k", 0, 10_000)
        if "fixed_params" not in trial.storage.get_trial_system_attrs(trial._trial_id):
            # The queue emptied between our check and our ask, so Optuna made a fresh trial: not ours to log.
            return -1.0
        with open(log_path, "a") as f:  # O_APPEND: one short line per write, never interleaved
            f.write(f"{k} {os.getpid()}\n")
        time.sleep(seconds)
        return float(k)

    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
                return
            study.optimize(objective, n_trials=1)
    finally:
        storage.engine.dispose()
