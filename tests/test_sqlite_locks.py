"""SQLite write-lock scope: only writing transactions take the write lock; reads never wait for it or hold it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages._rdb import models

from storage import sqlite as sqlite_settings
from storage.errors import StorageError
from storage.sqlite import reading
from storage.study import open_storage
from tests.helpers import forked_processes

WAIT_S = 5.0  # far under the 120 s busy timeout a lock wait would run into


def make_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    study.tell(trial, 0.5)
    return url, storage, study._study_id, trial._trial_id


def finishes_within(fn, seconds: float) -> bool:
    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return done.wait(seconds)


def test_optuna_reads_go_on_while_another_process_holds_the_write_lock(tmp_path):
    url, storage, study_id, trial_id = make_study(tmp_path)
    holder = sqlite3.connect(tmp_path / "study.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another worker in the middle of a write
    try:
        assert finishes_within(
            lambda: (
                storage.get_all_trials(study_id),
                storage.get_trial(trial_id),
                storage.get_study_user_attrs(study_id),
                storage.get_all_studies(),
            ),
            WAIT_S,
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_read_session_left_open_does_not_stall_another_workers_write(tmp_path):
    url, reader_storage, study_id, trial_id = make_study(tmp_path)
    writer_storage = open_storage(url, create=True)  # another worker: its own engine and connections
    new_trial = writer_storage.create_new_trial(study_id)
    with reading(), reader_storage.scoped_session() as session:
        assert session.query(models.TrialModel).count() == 2  # a read transaction, begun and left open
        assert finishes_within(lambda: writer_storage.set_trial_user_attr(new_trial, "k", 1), WAIT_S)
        session.rollback()
    assert reader_storage.get_trial(new_trial).user_attrs == {"k": 1}


def test_writes_begin_immediate_and_reads_plain(tmp_path):
    url, storage, study_id, trial_id = make_study(tmp_path)
    begins: list[str] = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    new_trial = storage.create_new_trial(study_id)
    storage.set_trial_user_attr(new_trial, "k", 1)
    writes = list(begins)
    begins.clear()
    storage.get_all_trials(study_id)
    storage.get_trial(new_trial)
    assert writes and set(writes) == {"BEGIN IMMEDIATE"}
    assert begins and set(begins) == {"BEGIN"}


def test_two_workers_claiming_one_waiting_trial_still_exclude_each_other(tmp_path):
    """A claim (WAITING -> RUNNING) is a write: two claims of one enqueued trial, one wins."""
    url, storage, study_id, _ = make_study(tmp_path)
    study = optuna.load_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0})
    waiting = [t for t in storage.get_all_trials(study_id) if t.state.name == "WAITING"][0]
    other = open_storage(url, create=True)
    results = []
    barrier = threading.Barrier(2)

    def claim(s) -> None:
        barrier.wait()
        results.append(s.set_trial_state_values(waiting._trial_id, optuna.trial.TrialState.RUNNING))

    threads = [threading.Thread(target=claim, args=(s,)) for s in (storage, other)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert time.monotonic() - start < WAIT_S
    assert sorted(results) == [False, True]


def journal_mode(path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_the_switch_to_wal_waits_out_a_reader_of_a_rollback_journal_file(tmp_path):
    """Switching to WAL needs the file to itself: a command that reads the file meanwhile (another search
    checking it) delays the switch, and the switch is tried again until it is made, not given up."""
    path = tmp_path / "study.db"
    sqlite3.connect(path).close()
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT name FROM sqlite_master").fetchall()  # the read lock, held
    switched = threading.Event()
    thread = threading.Thread(target=lambda: (sqlite_settings.enable_wal(path), switched.set()), daemon=True)
    thread.start()
    assert not switched.wait(1.5), "switched to WAL while another connection held a read lock"
    reader.execute("COMMIT")
    reader.close()
    assert switched.wait(WAIT_S)
    assert journal_mode(path) == "wal"


def test_a_switch_to_wal_that_stays_blocked_ends_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "study.db"
    sqlite3.connect(path).close()
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT name FROM sqlite_master").fetchall()
    monkeypatch.setattr(sqlite_settings, "BUSY_TIMEOUT_S", 1.0)
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"^--storage: cannot switch .* to WAL \(database is locked\) within 1 s"):
        sqlite_settings.enable_wal(path)
    assert time.monotonic() - started < WAIT_S
    reader.close()


def switch_many(folder: str, files: int, barrier) -> None:
    for i in range(files):
        barrier.wait(timeout=60)
        sqlite_settings.enable_wal(Path(folder) / f"{i}.db")


def test_searches_started_together_each_switch_new_files_to_wal(tmp_path):
    """Two processes open each of many fresh files at the same instant: both calls return, and every file is WAL."""
    with forked_processes(__name__) as ctx:
        barrier, files = ctx.Barrier(2), 40
        procs = [ctx.Process(target=switch_many, args=(str(tmp_path), files, barrier)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
    assert {journal_mode(tmp_path / f"{i}.db") for i in range(files)} == {"wal"}
