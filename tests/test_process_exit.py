"""search/process_exit.py: a command ends with os._exit after its own cleanup, skipping only the interpreter's
teardown. What a plain exit would leave behind, this leaves too: flushed output, atexit handlers run, and on
SQLite no -wal or -shm file once the last connection is closed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

from tests.helpers import ENV

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    import optuna
    from search.process_exit import exit_cleanly
    from storage.study import open_storage

    storage = open_storage(sys.argv[1], create=True)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.tell(study.ask(), 0.5)
    atexit.register(lambda: print("atexit ran"))
    if sys.argv[2] == "thread":  # a thread a plain exit waits for: exit_cleanly returns, the exit is the usual one
        threading.Thread(target=time.sleep, args=(1,)).start()
    print("last line", end="")  # no newline: still in the buffer when exit_cleanly is called
    exit_cleanly(3)
    print(" | returned")
    sys.exit(4)
    """
)


def run(tmp_path, mode: str) -> subprocess.CompletedProcess:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, url, mode], capture_output=True, text=True, env=ENV, timeout=120
    )


def test_exit_cleanly_flushes_runs_atexit_and_closes_the_database(tmp_path):
    r = run(tmp_path, "plain")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "last lineatexit ran\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("study.db")) == ["study.db"]
    con = sqlite3.connect(tmp_path / "study.db")
    try:
        assert con.execute("SELECT count(*) FROM trials").fetchone() == (1,)  # in the database file itself
    finally:
        con.close()


def test_exit_cleanly_returns_while_a_thread_a_plain_exit_waits_for_still_runs(tmp_path):
    r = run(tmp_path, "thread")
    assert r.returncode == 4, r.stderr
    assert r.stdout == "last line | returned\natexit ran\n"
