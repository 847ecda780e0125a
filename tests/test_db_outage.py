"""A PostgreSQL restart, and a 30 s outage, in the middle of a 2-worker search (issue 14, class 1).

Each worker must ride the outage out (retrying, with one line when it starts and one when it ends) and go on:
the search exits 0 with every trial finished exactly once, none RUNNING, none failed. The server is this
module's own (the session's is shared with other tests), stopped and started with pg_ctl.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage.study import open_storage
from tests.helpers import ALEXSEARCH, ENV, NO_EARLY_STOP, child_pids, mlp_args, run_cli, wait_for
from tests.pg_server import PgServer, find_pg_bin, missing_reason

TRIALS = 10


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    bin_dir = find_pg_bin()
    assert bin_dir is not None  # missing_reason() looked for it
    with PgServer(bin_dir) as server:
        yield server


def running(server: PgServer, database: str) -> int:
    """Trials RUNNING now (-1 while the server is down or the tables don't exist yet)."""
    try:
        with server.admin_connection(database) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    except Exception:
        return -1


def finished(server: PgServer, database: str) -> int:
    """Finished trials, read straight from the server (-1 while it is down or the tables don't exist yet)."""
    try:
        with server.admin_connection(database) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
    except Exception:
        return -1


def search(url: str, tmp_path: Path) -> subprocess.Popen:
    args = mlp_args(
        "search",
        url,
        "outage",
        tmp_path / "art",
        *("--workers", "2"),
        *NO_EARLY_STOP,
        *("--heartbeat-interval", "2", "--grace-period", "60"),
        trials=TRIALS,
        epochs=3,
        train_size=1500,
        val_size=300,
    )
    return subprocess.Popen(
        [ALEXSEARCH, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
    )


def mid_search(server: PgServer, database: str, proc: subprocess.Popen) -> None:
    """Return in the middle of the search: 2 of 10 trials done, and both workers training (with trials this short
    one worker could finish 2 trials before the other had started)."""
    deadline = time.monotonic() + 120
    both_up = False
    while finished(server, database) < 2 or not both_up:
        assert proc.poll() is None, "the search ended before the fault"
        assert time.monotonic() < deadline, "not 2 trials finished with both workers up in 120 s"
        both_up = both_up or running(server, database) == 2
        time.sleep(0.05)


def outage_of(server: PgServer, seconds: float):
    """A fault: the server stopped for that long, then started again."""

    def outage() -> None:
        server.stop_server()
        time.sleep(seconds)
        server.start_server()

    return outage


def run_with_fault(
    server: PgServer, tmp_path: Path, fault, when=mid_search, prefix: str = "outage"
) -> tuple[subprocess.Popen, str, str, str]:
    """A 2-worker search on a fresh database; fault() once when(server, database, proc) has returned."""
    database = server.create_database(prefix)
    url = server.url(database)
    proc = search(url, tmp_path)
    out: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()), daemon=True)
        for k, f in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for r in readers:
        r.start()
    try:
        when(server, database, proc)
        fault()
        proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    for r in readers:
        r.join(10)
    (tmp_path / "search.log").write_text(out.get("out", "") + out.get("err", ""))
    return proc, url, out.get("out", ""), out.get("err", "")


def check_exactly_once(proc: subprocess.Popen, url: str, err: str) -> None:
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "database unreachable" in err and "database back after" in err, err[-3000:]
    storage = open_storage(url, create=False)
    try:
        trials = optuna.load_study(study_name="outage", storage=storage).get_trials()
    finally:
        storage.engine.dispose()
    states = Counter(t.state for t in trials)
    assert set(states) == {TrialState.COMPLETE}, states  # none failed, none RUNNING, none WAITING
    counted = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert TRIALS <= len(counted) <= TRIALS + 1  # the budget (plus the other worker's last trial at most)
    for t in counted:  # every epoch of every trial reported exactly once: nothing lost, nothing run twice
        assert sorted(t.intermediate_values) == [1, 2, 3], (t.number, t.intermediate_values)
        assert "resumed_from" not in t.user_attrs and "failed_trial" not in t.system_attrs


@pytest.mark.slow
def test_search_rides_out_a_server_restart(own_pg, tmp_path):
    proc, url, out, err = run_with_fault(own_pg, tmp_path, own_pg.restart)
    check_exactly_once(proc, url, out + err)


@pytest.mark.slow
def test_search_rides_out_a_30_s_outage(own_pg, tmp_path):
    started = time.monotonic()
    proc, url, out, err = run_with_fault(own_pg, tmp_path, outage_of(own_pg, 30))
    check_exactly_once(proc, url, out + err)
    assert time.monotonic() - started > 30


@pytest.mark.slow
def test_workers_that_open_the_study_while_the_server_is_down_wait_for_it(own_pg, tmp_path):
    """search has created the study when the server goes down, and its workers open the study during the outage
    (while the forkserver imports torch, seconds): each waits for the server instead of exiting on "cannot open".
    A command given a server that is not there still fails at once: tests/test_postgres.py."""

    def workers_starting(_server: PgServer, _database: str, proc: subprocess.Popen) -> None:
        wait_for(lambda: child_pids(proc.pid, b"forkserver"), 120, "search to create the study and start the workers")

    proc, url, out, err = run_with_fault(
        own_pg, tmp_path, outage_of(own_pg, 5), when=workers_starting, prefix="startdown"
    )
    text = out + err
    check_exactly_once(proc, url, text)
    lines = text.splitlines()
    for w in ("[w0] ", "[w1] "):  # the wait came before the worker had opened the study
        waited = [i for i, line in enumerate(lines) if line.startswith(w + "database unreachable")]
        opened = [i for i, line in enumerate(lines) if line.startswith(w + "study 'outage'")]
        assert waited and opened and waited[0] < opened[0], text[-3000:]


@pytest.mark.slow
def test_worker_wait_for_database_waits_for_a_server_down_at_its_start(own_pg, tmp_path):
    """`worker --wait-for-database` (what a Slurm array task runs) on an existing study whose server is down when
    it starts: it says so, waits, and runs its trials once the server is back."""
    url = own_pg.url(own_pg.create_database("workerdown"))
    art = tmp_path / "art"
    assert run_cli(mlp_args("search", url, "w", art, trials=1)) == 0  # the study exists
    own_pg.stop_server()
    lines: list[str] = []
    try:
        worker = subprocess.Popen(
            [ALEXSEARCH, *mlp_args("worker", url, "w", art, "--wait-for-database", "--lines-only", trials=3)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        reader = threading.Thread(target=lambda: lines.extend(worker.stdout or ()), daemon=True)
        reader.start()
        wait_for(lambda: any("database unreachable" in line for line in lines), 120, "the worker to wait")
    finally:
        own_pg.start_server()
    assert worker.wait(timeout=120) == 0, "".join(lines)[-3000:]
    reader.join(10)
    text = "".join(lines)
    assert "database back after" in text and "Traceback" not in text, text[-3000:]
    storage = open_storage(url, create=False)
    try:
        states = [t.state for t in optuna.load_study(study_name="w", storage=storage).get_trials()]
    finally:
        storage.engine.dispose()
    assert len(states) == 3 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}  # 1 by search, 2 by it
