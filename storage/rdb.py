"""Optuna's RDBStorage that rides out a database outage: a restart, a failover, a server down for minutes.

Optuna 5.0 does not survive one. A storage call that loses its server raises StorageInternalError from deep
inside `study.optimize`, whose own error handling then calls the storage again and turns the failure into an
UnboundLocalError or AssertionError, with the trial left RUNNING. So the outage is handled here, below Optuna:

- Every storage call that fails because the server cannot be reached (connection refused, connection dropped,
  server starting up or shutting down) is retried with backoff for up to `outage_timeout_s`, and says so in
  one line when the outage starts and when it ends. Optuna never sees an outage shorter than that.
- A call whose COMMIT was in flight when the connection dropped may or may not have committed. Writes that
  set a value are simply repeated. A state change that turns out to be done already counts as done. A trial
  or study creation is not repeated (that could make two): it fails, and a trial it may have created is
  left RUNNING without a heartbeat, which the reaper (storage/heartbeat.py) fails and retries.
- The heartbeat thread does not retry: a failed beat is logged and skipped, and the next beat, one interval
  later, gets a fresh connection from the pool (pool_pre_ping). Optuna's own thread would end at the first
  failed beat, and the live trial would later be failed as stale and run twice.
- An outage longer than `outage_timeout_s` raises DatabaseUnavailable; the worker loop stops on it.

A SQLite write that fails on a full disk is tried once more after the write-ahead log has been checkpointed
and truncated (that frees the log's pages, often enough to finish a trial, or at least to fail it cleanly).
Other errors (a constraint, a full disk that stays full) are not retried: they are not transient in seconds.

Reads: each of Optuna's methods is one transaction. READ_METHODS only read, so on SQLite they run inside
storage.sqlite.reading() and begin without the write lock; every other method (a trial claimed, a state,
param, value or attr written, a beat) still begins IMMEDIATE. On PostgreSQL the mark changes nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from storage import optuna_private
from storage.optuna_private import cached_frozen_trial, rdb_backend, trial_id
from storage.sqlite import reading

logger = logging.getLogger(__name__)

# Checked against Optuna 5.0's RDBStorage: each of these opens one session, queries, and writes nothing.
READ_METHODS = (
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "get_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "get_best_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "count_trials",
    "state_counts",
    "last_trials",
)


def _read_only(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with reading():
            return method(self, *args, **kwargs)

    return wrapper


BACKOFF_FIRST_S = 0.5  # first wait after a failed call; doubles up to BACKOFF_MAX_S
BACKOFF_MAX_S = 10.0
# PostgreSQL SQLSTATEs that mean "the server is not there right now": class 08 (connection exception),
# and admin_shutdown, crash_shutdown, cannot_connect_now (starting up or shutting down).
_OUTAGE_SQLSTATES = ("57P01", "57P02", "57P03")
# Connection failures that waiting does not mend: the server answered, and said no. psycopg gives connection-time
# errors no SQLSTATE, so without these a wrong password or a missing pg_hba.conf line would count as the server
# being away, and a worker would wait for it for the whole outage timeout.
_REFUSED_FOR_GOOD = ("authentication failed", "password", "pg_hba.conf", "does not exist")
# Free space a SQLite database's disk must have before a trial starts: the write-ahead log grows by one 4 KiB
# page per page written until a checkpoint, and a trial writes some dozens per epoch.
MIN_FREE_BYTES = 1_000_000
# Storage calls that create a row: not repeated when their commit may have landed.
_CREATES = ("create_new_study", "create_new_trial", "_create_new_trial")
# Every RDBStorage method that _CachedStorage or our code calls, except record_heartbeat.
_RIDDEN = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "_create_new_trial",
    "set_trial_param",
    "_set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_param",
    "get_best_trial",
    "_get_best_trial_id",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "_get_stale_trial_ids",
)


class DatabaseUnavailable(StorageInternalError):
    """The database could not be reached for longer than the outage timeout."""


def outage_cause(e: BaseException) -> BaseException | None:
    """The driver error if e means the database server cannot be reached (not a bad statement, not a full
    disk); None otherwise."""
    cause = e.__cause__ if isinstance(e, StorageInternalError) else e
    for _ in range(3):  # an error raised while handling a dropped connection counts as the drop itself
        if isinstance(cause, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            break
        if not isinstance(cause, sqlalchemy.exc.PendingRollbackError) or cause.__context__ is None:
            return None
        # Optuna's _get_trials catches an OperationalError and queries again in the same session, which
        # then raises "Can't reconnect until invalid transaction is rolled back": the drop is its context.
        cause = cause.__context__
    else:
        return None
    if cause.connection_invalidated:
        return cause
    sqlstate: Any = getattr(cause.orig, "sqlstate", False)  # psycopg: None for client-side connection failures
    if sqlstate is False:  # not a server database (SQLite): nothing to wait for
        return None
    if sqlstate is None and any(text in str(cause.orig).lower() for text in _REFUSED_FOR_GOOD):
        return None
    if sqlstate is None or sqlstate.startswith("08") or sqlstate in _OUTAGE_SQLSTATES:
        return cause
    return None


def say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def unreachable_line(cause: BaseException, timeout_s: float) -> str:
    """What a process says when an outage begins; back_line when it ends."""
    return f"database unreachable ({first_line(cause)}); retrying for up to {timeout_s:.0f} s"


def back_line(seconds: float) -> str:
    return f"database back after {seconds:.0f} s; going on"


def disk_full(e: BaseException) -> bool:
    """e is SQLite's "database or disk is full" (SQLITE_FULL)."""
    cause = e.__cause__ if isinstance(e, StorageInternalError) else e
    return getattr(getattr(cause, "orig", None), "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def first_line(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


class _CallState(threading.local):
    depth = 0  # nested ridden calls (get_all_trials -> _get_trials): only the outermost one retries
    committing = False  # a COMMIT was sent on this thread's connection during the current attempt
    started: int | None = None  # the id of the last trial this thread created or claimed (WAITING -> RUNNING)


def _ride_out(method: Callable[..., Any]) -> Callable[..., Any]:
    name = method.__name__

    @functools.wraps(method)
    def call(self: SteadyRDBStorage, *args: Any, **kwargs: Any) -> Any:
        calls = self._calls
        if calls.depth:
            calls.depth += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                calls.depth -= 1
        began = None  # when the first failure of this call happened
        wait = BACKOFF_FIRST_S
        reclaimed = False
        while True:
            calls.depth, calls.committing = 1, False
            try:
                return method(self, *args, **kwargs)
            except UpdateFinishedTrialError:
                if began is not None and name == "set_trial_state_values" and self._already_set(*args, **kwargs):
                    return True  # our earlier attempt committed before its connection dropped
                raise
            except (StorageInternalError, sqlalchemy.exc.DBAPIError) as e:
                if disk_full(e) and not reclaimed:
                    reclaimed = True
                    if self._reclaim_wal():  # space freed: try the call once more
                        continue
                    raise
                cause = outage_cause(e)
                if cause is None or (calls.committing and name in _CREATES):
                    raise
                now = time.monotonic()
                if self.outage_timeout_s <= 0:
                    raise
                began = began if began is not None else now
                self._outage_began(now, cause)
                if now - began >= self.outage_timeout_s:
                    raise DatabaseUnavailable(
                        f"the database could not be reached for {now - began:.0f} s ({first_line(cause)})"
                    ) from cause
                time.sleep(min(wait, max(0.0, began + self.outage_timeout_s - now)))
                wait = min(2 * wait, BACKOFF_MAX_S)
            finally:
                calls.depth = 0
            if began is not None:
                self._outage_ended_maybe()

    return call


_OPEN: weakref.WeakSet[SteadyRDBStorage] = weakref.WeakSet()  # every storage this process opened


def close_all() -> None:
    """Close the pooled connections of every storage this process opened, as the interpreter's teardown would:
    for a process that ends with os._exit. On SQLite the last connection to close copies the WAL into the
    database file and deletes it, so that a plain copy of study.db afterwards holds every trial."""
    for storage in list(_OPEN):
        try:
            storage.remove_session()
            storage.engine.dispose()
        except Exception:  # noqa: BLE001 - the database may be away; nothing is left to write anyway
            pass


class SteadyRDBStorage(RDBStorage):
    """RDBStorage that rides out outages of up to outage_timeout_s (0: fail at once, as Optuna does)."""

    def __init__(self, *args: Any, outage_timeout_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outage_timeout_s = outage_timeout_s
        self.say: Callable[[str], None] = say_on_stderr
        self._calls = _CallState()
        self._outage_lock = threading.Lock()
        self._outage_since: float | None = None  # monotonic time the current outage was first seen
        self._watch_commits()
        _OPEN.add(self)

    def _watch_commits(self) -> None:
        def mark_commit(_conn: Any) -> None:
            self._calls.committing = True

        sqlalchemy.event.listen(self.engine, "commit", mark_commit)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        for key in ("say", "_calls", "_outage_lock"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.say = say_on_stderr
        self._calls = _CallState()
        self._outage_lock = threading.Lock()
        self._outage_since = None
        self._watch_commits()
        _OPEN.add(self)

    def _outage_began(self, now: float, cause: BaseException) -> None:
        with self._outage_lock:
            if self._outage_since is None:
                self._outage_since = now
                self.say(unreachable_line(cause, self.outage_timeout_s))

    def _outage_ended_maybe(self) -> None:
        with self._outage_lock:
            if self._outage_since is not None:
                self.say(back_line(time.monotonic() - self._outage_since))
                self._outage_since = None

    def _create_new_trial(self, study_id: int, template_trial: Any = None) -> Any:
        frozen = super()._create_new_trial(study_id, template_trial)
        if frozen.state == TrialState.RUNNING:
            self._calls.started = frozen._trial_id
        return frozen

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        done = super().set_trial_state_values(trial_id, state, values)
        if done and state == TrialState.RUNNING:
            self._calls.started = trial_id
        return done

    def take_started_trial(self) -> int | None:
        """The id of the trial this thread last created or claimed, and forget it. Optuna's ask can fail after
        it made a trial and before the caller learns its id (a sampler's write to a full disk, say): this is
        how the worker finds that trial, to fail and retry it instead of leaving it RUNNING."""
        started, self._calls.started = self._calls.started, None
        return started

    def disk_space_problem(self) -> str | None:
        """For a SQLite database: a one-line reason not to start a trial if its disk is (nearly) full. A trial
        started there could not even be marked failed when its writes hit the full disk, and would stay
        RUNNING until reaped. None for a server database (its disk is the server's) or enough space."""
        path = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not path or path == ":memory:":
            return None
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        if free >= MIN_FREE_BYTES:
            return None
        return (
            f"database or disk is full: {free / 1e6:.2f} MB free for {path}, less than the "
            f"{MIN_FREE_BYTES / 1e6:.0f} MB a trial's writes may need"
        )

    def _reclaim_wal(self) -> bool:
        """On a full disk, copy SQLite's write-ahead log into the database and truncate it: the log holds a
        copy of every page written since the last checkpoint, often more than the write that failed needs.
        True if the checkpoint completed (then the failed write may fit)."""
        if self.engine.dialect.name != "sqlite":
            return False
        try:
            raw = self.engine.raw_connection()
            try:
                con = raw.driver_connection
                assert con is not None  # a pooled connection that is open
                busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.close()
        except Exception:  # the checkpoint may itself need space the disk lacks
            return False
        return busy == 0

    def _already_set(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        return self.get_trial(trial_id).state == state

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            cause = e.__cause__ or e
            logger.warning(
                "alexsearch: heartbeat of trial id %d missed (%s); the next beat retries", trial_id, first_line(cause)
            )

    # One-transaction writes and cheap reads, whose SQL on Optuna's tables is in storage.optuna_private.

    def record_trial(
        self,
        trial_id: int,
        user_attrs: dict[str, Any],
        step: int | None = None,
        intermediate_value: float | None = None,
    ) -> None:
        """Set user attrs of a running trial, and its intermediate value at step if given, in ONE transaction.

        What set_trial_user_attr and set_trial_intermediate_value do, one commit instead of one per call
        (on SQLite each commit holds the one write lock).
        """
        optuna_private.record_trial(self, trial_id, user_attrs, step, intermediate_value)

    def count_trials(self, study_id: int, states: tuple[TrialState, ...], without_user_attr: str | None = None) -> int:
        """How many of the study's trials are in states, leaving out those with the user attr without_user_attr:
        one count query, where get_all_trials takes seconds on a study of 10,000 trials."""
        return optuna_private.count_trials(self, study_id, states, without_user_attr)

    def state_counts(self, study_id: int) -> dict[TrialState, int]:
        return optuna_private.state_counts(self, study_id)

    def last_trials(self, study_id: int, n: int) -> list[FrozenTrial]:
        """The n trials with the highest numbers, in number order."""
        return optuna_private.last_trials(self, study_id, n)


for _name in READ_METHODS:
    setattr(SteadyRDBStorage, _name, _read_only(getattr(SteadyRDBStorage, _name)))
for _name in (*_RIDDEN, "record_trial", "count_trials", "state_counts", "last_trials"):
    setattr(SteadyRDBStorage, _name, _ride_out(getattr(SteadyRDBStorage, _name)))


def record(
    trial: optuna.Trial, user_attrs: dict[str, Any], step: int | None = None, value: float | None = None
) -> None:
    """trial.set_user_attr for each of user_attrs, and trial.report(value, step) if step is given, as ONE
    database transaction on our storage (one commit per epoch instead of one per attr). Other storages get
    the plain calls.

    Through storage.optuna_private: the trial's cached FrozenTrial, which Optuna's own set_user_attr and report
    keep in step with the database, and the RDBStorage under Optuna's _CachedStorage, which never caches a
    running trial, so writing past it leaves nothing stale.
    """
    backend = rdb_backend(trial.storage)
    cached = cached_frozen_trial(trial)
    report: tuple[int, float] | None = None
    if step is not None:
        assert value is not None, "a reported step needs its value"
        if int(step) not in cached.intermediate_values:  # as trial.report: a step is reported once
            report = int(step), float(value)
    if not isinstance(backend, SteadyRDBStorage):
        for key, v in user_attrs.items():
            trial.set_user_attr(key, v)
        if report is not None:
            trial.report(report[1], report[0])
        return
    if report is None:
        backend.record_trial(trial_id(trial), user_attrs)
    else:
        backend.record_trial(trial_id(trial), user_attrs, *report)
        cached.intermediate_values[report[0]] = report[1]
    cached.user_attrs.update(user_attrs)
