"""Every command against a real PostgreSQL server (tests/pg_server.py), and dropped connections.

The parallel-workers and kill-and-resume tests run on both backends through the `storage_url` fixture;
this file covers what is PostgreSQL's own: the URL in each command, read-only commands on an empty or
missing database, and connections the server drops under a running study.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from search.cli import build_parser, main
from search.space.space import load_space
from search.workers.loop import run_trials
from storage.errors import StorageError
from storage.study import Heartbeat, OpeningStopped, load_study, open_storage, quiet_optuna
from tests.helpers import digest_url, mlp_args, run_cli
from tests.pg_server import PgServer

FAST_TASK = "mlp-synth"  # a small MLP on generated points: a trial takes well under a second
QUICK_ARGS = ["--task", FAST_TASK, "--epochs", "2", "--train-size", "300", "--val-size", "200", "--device", "cpu"]


def database_of(url: str) -> str:
    name = sqlalchemy.engine.make_url(url).database
    assert name, url
    return name


def tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_study(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a database holding a real 3-trial study made by `alexsearch search`."""
    url = pg_server.url(pg_server.create_database("study"))
    artifacts = tmp_path_factory.mktemp("pg-artifacts")  # not ./alexsearch-artifacts, a server database's default
    assert main(["search", "--storage", url, "--trials", "3", *QUICK_ARGS, "--artifacts", str(artifacts)]) == 0
    return url


def test_search_writes_the_study_to_postgres(pg_study):
    engine = sqlalchemy.create_engine(pg_study)
    try:
        with engine.connect() as con:
            states = [r[0] for r in con.exec_driver_sql("SELECT state FROM trials")]
            steps = con.exec_driver_sql("SELECT COUNT(*) FROM trial_intermediate_values").scalar()
            keys = {r[0] for r in con.exec_driver_sql("SELECT DISTINCT key FROM trial_user_attributes")}
            study_keys = {r[0] for r in con.exec_driver_sql("SELECT key FROM study_user_attributes")}
    finally:
        engine.dispose()
    assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}
    assert steps >= 3
    assert {"config", "val_acc", "train_acc", "best_epoch", "versions", "seed"} <= keys
    assert {"search_config", "space"} <= study_keys


def test_status_and_rerun_on_postgres(pg_study, capsys):
    assert main(["status", "--storage", pg_study]) == 0
    out = capsys.readouterr().out
    assert f"study {FAST_TASK}: 3 trials" in out and "best: trial" in out
    assert main(["search", "--storage", pg_study, "--trials", "3", *QUICK_ARGS]) == 0
    assert "already has 3 finished trials" in capsys.readouterr().out


def test_worker_on_postgres(pg_url, tmp_path):
    argv = ["worker", "--storage", pg_url, "--trials", "2", "--artifacts", str(tmp_path / "artifacts")]
    assert main([*argv, *QUICK_ARGS]) == 0
    storage = open_storage(pg_url, create=False)
    try:
        trials = load_study(storage, None).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()
    assert len(trials) == 2 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}


def test_export_and_final_on_postgres(pg_study, tmp_path, capsys):
    out = tmp_path / "best.json"
    assert main(["export", "--storage", pg_study, "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported["provenance"]["storage"] == pg_study  # no password in this URL, so nothing was redacted
    # A full run (no --train-size): a smoke run is not recorded as the study's final_result.
    rc = main(
        [
            "final",
            "--config",
            str(out),
            "--seeds",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "final"),
            "--artifacts",
            str(tmp_path / "artifacts"),
        ]
    )
    assert rc == 0
    storage = open_storage(pg_study, create=False)
    try:
        assert "final_result" in load_study(storage, None).user_attrs  # recorded on the study in PostgreSQL
    finally:
        storage.engine.dispose()


def test_report_on_postgres(pg_study, tmp_path):
    assert main(["report", "--storage", pg_study, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "summary.md").exists()


def test_dashboard_serves_the_postgres_study(pg_study, tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search.cli",
            "dashboard",
            "--storage",
            pg_study,
            "--port",
            "0",
            "--artifacts",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "dashboard for URL, study 'NAME': http://127.0.0.1:PORT/dashboard/..."
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert port, f"no URL in {line!r}"
        base = f"http://127.0.0.1:{port.group(1)}/api/studies"
        with urllib.request.urlopen(base, timeout=30) as r:
            studies = json.load(r)["study_summaries"]
        assert [s["study_name"] for s in studies] == [FAST_TASK]
        with urllib.request.urlopen(f"{base}/{studies[0]['study_id']}", timeout=30) as r:
            assert len(json.load(r)["trials"]) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def command_names() -> list[str]:
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(subcommands.choices)


# Commands that only read the study. search (and worker) create one; final reads an exported file and records
# on the study only if it can.
READ_ONLY = [c for c in command_names() if c not in ("search", "worker", "final")]
EXTRA = {
    "export": ["--out", "{tmp}/best.json"],
    "dashboard": ["--port", "0", "--artifacts", "{tmp}/artifacts"],
    "report": ["--out", "{tmp}/report"],
}


def read_only_argv(command: str, url: str, tmp_path: Path) -> list[str]:
    return [command, "--storage", url, *(a.format(tmp=tmp_path) for a in EXTRA.get(command, []))]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_command_on_empty_database_creates_no_tables(command, pg_url, tmp_path, capsys):
    capsys.readouterr()
    assert run_cli(read_only_argv(command, pg_url, tmp_path), timeout_s=60) == 2
    assert "holds no Optuna study" in one_line_error(capsys)
    assert tables(pg_url) == []


@pytest.mark.parametrize("command", [c for c in READ_ONLY if c != "studies"])  # `studies` takes no --study
def test_read_only_command_on_unknown_study_changes_nothing(command, pg_study, tmp_path, capsys):
    before = digest_url(pg_study)
    capsys.readouterr()
    assert run_cli([*read_only_argv(command, pg_study, tmp_path), "--study", "nope"], timeout_s=60) == 2
    assert f"no study named 'nope' in this storage (studies: {FAST_TASK})" in one_line_error(capsys)
    assert digest_url(pg_study) == before


def test_missing_database_or_server_is_one_line_and_creates_nothing(pg_server, capsys, tmp_path):
    capsys.readouterr()
    assert run_cli(["status", "--storage", pg_server.url("no_such_db")], timeout_s=60) == 2
    err = one_line_error(capsys)
    assert "cannot open" in err and 'database "no_such_db" does not exist' in err
    with pg_server.admin_connection() as con:
        assert con.execute("SELECT COUNT(*) FROM pg_database WHERE datname = 'no_such_db'").fetchone()[0] == 0
    nothing_on_port_1 = "postgresql+psycopg://postgres@127.0.0.1:1/x"
    assert run_cli(["status", "--storage", nothing_on_port_1], timeout_s=60) == 2
    assert "cannot open" in one_line_error(capsys)
    for command in ("search", "worker"):  # no waiting for a server that may be a typo (only search's workers wait)
        started = time.monotonic()
        assert run_cli(mlp_args(command, nothing_on_port_1, "x", tmp_path / "art")) == 2  # a thread has no signals
        assert "cannot open" in one_line_error(capsys) and time.monotonic() - started < 30


NOTHING_ON_PORT_1 = "postgresql+psycopg://postgres@127.0.0.1:1/x"


def test_a_waiting_opening_says_so_gives_up_at_its_timeout_and_stops_when_asked():
    """open_storage(wait_for_server=...), as search's workers open the study: connection refused is waited for,
    with one line, until the outage timeout; a stop asked for meanwhile ends the wait at once."""
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot open"):
        open_storage(
            NOTHING_ON_PORT_1, create=True, outage_timeout_s=1.5, say=said.append, wait_for_server=lambda: False
        )
    assert 1.5 <= time.monotonic() - started < 10
    assert len(said) == 1 and said[0].startswith("database unreachable (") and "retrying for up to 2 s" in said[0]
    said.clear()
    started = time.monotonic()
    with pytest.raises(OpeningStopped):
        open_storage(NOTHING_ON_PORT_1, create=True, outage_timeout_s=60, say=said.append, wait_for_server=lambda: True)
    assert time.monotonic() - started < 5 and len(said) == 1


def test_a_server_that_refuses_the_connection_is_not_waited_for(pg_server):
    """A missing database (or a wrong password, a missing pg_hba.conf line): the server answered, and waiting for
    --db-outage-timeout would not change its answer."""
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(StorageError, match='database "no_such_db" does not exist'):
        open_storage(
            pg_server.url("no_such_db"),
            create=True,
            outage_timeout_s=60,
            say=said.append,
            wait_for_server=lambda: False,
        )
    assert time.monotonic() - started < 10 and not said


def test_connections_dropped_between_storage_calls_are_replaced(pg_server, pg_url):
    """Kill every connection of the study's database in the middle of each trial (while the worker's connection
    is back in the pool, as when a server or firewall drops an idle one): pool_pre_ping replaces it, the heartbeat
    thread's too, and every trial completes."""
    quiet_optuna()
    db = database_of(pg_url)
    storage = open_storage(pg_url, create=True, heartbeat=Heartbeat(interval_s=1, grace_period_s=60, max_retry=0))
    study = optuna.create_study(study_name="drops", storage=storage, direction="maximize")
    space = load_space(None, FAST_TASK)
    killed = []

    def objective(trial: optuna.Trial) -> float:
        values = space.sample(trial)
        trial.report(0.1, 1)
        killed.append(pg_server.terminate_backends(db))
        time.sleep(0.6)  # the heartbeat thread beats (and reconnects) once in a while
        trial.set_user_attr("params_seen", len(values))
        trial.report(0.2, 2)
        killed.append(pg_server.terminate_backends(db))
        return 0.2 + 0.01 * trial.number

    try:
        assert run_trials(study, objective, 4, space) == 4
        states = [t.state for t in study.get_trials(deepcopy=False)]
    finally:
        storage.engine.dispose()
    assert states == [optuna.trial.TrialState.COMPLETE] * 4
    assert len(killed) == 8 and min(killed) >= 1, killed  # every kill found at least the worker's pooled connection


def test_connection_dropped_mid_beat_keeps_the_heartbeat_alive(pg_server, pg_url, caplog):
    """A beat in flight when the connection drops is skipped, and the next beat lands (Optuna's own heartbeat
    thread would end there, and the live trial would later be failed as stale and run twice)."""
    quiet_optuna()
    db = database_of(pg_url)
    storage = open_storage(pg_url, create=True, heartbeat=Heartbeat(interval_s=1, grace_period_s=60, max_retry=0))
    study = optuna.create_study(study_name="beats", storage=storage)
    armed = threading.Event()

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def drop_during_a_beat(conn, cursor, statement, parameters, context, executemany) -> None:
        if armed.is_set() and "trial_heartbeats" in statement:
            armed.clear()
            pg_server.terminate_backends(db)

    beats = []
    reader = sqlalchemy.create_engine(pg_url)  # not storage.engine, whose statements the listener watches

    def last_beat() -> object:
        with reader.connect() as con:
            return con.exec_driver_sql("SELECT MAX(heartbeat) FROM trial_heartbeats").scalar()

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.3)
        armed.set()
        time.sleep(2.5)  # the armed beat fails; the one after it must land
        beats.append(last_beat())
        time.sleep(1.2)
        beats.append(last_beat())
        return 1.0

    try:
        with caplog.at_level("WARNING", logger="storage.rdb"):
            study.optimize(objective, n_trials=1)
        state = study.trials[0].state
    finally:
        storage.engine.dispose()
        reader.dispose()
    assert not armed.is_set()  # the drop happened
    assert beats[1] > beats[0]  # still beating after the drop
    assert any("heartbeat of trial id" in r.getMessage() for r in caplog.records)
    assert state == optuna.trial.TrialState.COMPLETE


def test_connection_dropped_mid_call_fails_only_that_call(pg_server, pg_url):
    """The documented limit: a storage call in flight when its connection drops fails (it is not retried: a write
    may already have committed); the pool replaces the connection, so the next call works."""
    db = database_of(pg_url)
    storage = open_storage(pg_url, create=True)
    study = optuna.create_study(study_name="mid-call", storage=storage)
    trial = study.ask()
    armed = threading.Event()

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def drop_now(conn, cursor, statement, parameters, context, executemany) -> None:
        if armed.is_set():
            armed.clear()
            pg_server.terminate_backends(db)

    try:
        armed.set()
        with pytest.raises(optuna.exceptions.StorageInternalError):
            trial.set_user_attr("a", 1)
        trial.set_user_attr("a", 2)
        study.tell(trial, 1.0)
        assert study.trials[0].user_attrs == {"a": 2} and study.trials[0].value == 1.0
    finally:
        storage.engine.dispose()


def test_storage_url_fixture_gives_each_backend_a_fresh_database(storage_url, capsys):
    """The fixture the multi-worker tests use: an empty database per test on each backend, usable by the CLI."""
    quiet_optuna()
    storage = open_storage(storage_url, create=True)
    try:
        assert storage.get_all_studies() == []
        study = optuna.create_study(study_name="fresh", storage=storage, direction="maximize")
        space = load_space(None, FAST_TASK)
        assert run_trials(study, lambda t: len(space.sample(t)) / 10, 3, space) == 3
    finally:
        storage.engine.dispose()
    capsys.readouterr()
    assert main(["status", "--storage", storage_url]) == 0
    assert "study fresh: 3 trials" in capsys.readouterr().out
