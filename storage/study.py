"""Open or create an Optuna study from a SQLAlchemy URL, with the settings each engine needs."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from storage import sqlite as sqlite_settings
from storage.defaults import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, MAX_RETRY  # noqa: F401 - re-exported
from storage.errors import StorageError
from storage.rdb import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    SteadyRDBStorage,
    back_line,
    outage_cause,
    say_on_stderr,
    unreachable_line,
)
from storage.url import parse_url, redact, redact_text, sqlite_path

SCHEMA_RACE_RETRIES = 5
POOL_RECYCLE_S = 1800  # reconnect before servers and firewalls drop idle connections (~1 h seen)


class OpeningStopped(StorageError):
    """A stop was asked for while the opening waited for the database server."""


@dataclass(frozen=True)
class Heartbeat:
    interval_s: int = HEARTBEAT_INTERVAL_S
    grace_period_s: int = GRACE_PERIOD_S
    max_retry: int = MAX_RETRY


def open_storage(
    url: str,
    *,
    create: bool,
    heartbeat: Heartbeat | None = None,
    outage_timeout_s: float = 0.0,
    say: Callable[[str], None] = say_on_stderr,
    wait_for_server: Callable[[], bool] | None = None,
) -> SteadyRDBStorage:
    """A SteadyRDBStorage (an RDBStorage) for url.

    create=False is for read-only commands: the database must already exist and hold Optuna's
    tables, and nothing is created or written by opening it. outage_timeout_s > 0: storage calls
    ride out a database server that cannot be reached for up to that long (storage/rdb.py).
    say: where the storage's outage lines go (a worker's prefixed log). wait_for_server: the opening itself rides
    out such a server too (up to outage_timeout_s), until wait_for_server() says stop (OpeningStopped); only for
    a caller that knows the database is there (a worker that `search` started after it created the study), since
    a wrong host or port looks the same as a server that is down, and a command given one must fail at once.
    """
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    kwargs: dict = {}
    engine_url = url
    if path is not None:
        immutable = sqlite_settings.check_sqlite_file(path)
        if not create:
            if not path.exists():
                raise StorageError(
                    f"--storage: no database at {path} (check the path, or run `alexsearch search` first to create one)"
                )
            if not sqlite_settings.has_optuna_tables(path, immutable):
                raise StorageError(f"--storage: {path} is a SQLite database but holds no Optuna study")
            if immutable:  # read-only media: read it as it is; nothing can write it anyway
                engine_url = sqlite_settings.immutable_url(path)
        elif immutable:
            raise StorageError(
                f"--storage: {path} is on read-only media or in a folder this user cannot write; "
                "a search writes to its database: copy it to a writable folder"
            )
        else:
            if path.exists():
                sqlite_settings.check_not_foreign(path)  # before WAL or Optuna's tables change the file
            path.parent.mkdir(parents=True, exist_ok=True)
            sqlite_settings.enable_wal(path)
        kwargs.update(sqlite_settings.engine_kwargs())
    else:
        kwargs.update(pool_pre_ping=True, pool_recycle=POOL_RECYCLE_S)
    hb: dict = {}
    if heartbeat is not None:
        hb = dict(
            heartbeat_interval=heartbeat.interval_s,
            grace_period=heartbeat.grace_period_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry),
        )
    try:
        # Checked before RDBStorage, which on a database without Optuna's tables fails inside its own session.
        if path is None and not create and not _server_has_tables(url, kwargs):
            raise StorageError(f"--storage: {redact(url)} holds no Optuna study")
        storage = _ride_out_opening(
            lambda: _create_rdb_storage(
                engine_url, kwargs, skip_table_creation=not create, outage_timeout_s=outage_timeout_s, **hb
            ),
            outage_timeout_s if wait_for_server is not None else 0.0,
            say,
            wait_for_server or (lambda: False),
        )
        storage.say = say
    except optuna.exceptions.StorageInternalError as e:  # Optuna wraps errors of its own sessions
        if not isinstance(e.__cause__, sqlalchemy.exc.OperationalError):
            raise
        why = _first_line(e.__cause__.orig or e.__cause__, url)
        raise StorageError(f"--storage: cannot open {redact(url)}: {why}") from None
    except sqlalchemy.exc.OperationalError as e:
        raise StorageError(f"--storage: cannot open {redact(url)}: {_first_line(e.orig or e, url)}") from None
    except RuntimeError as e:  # Optuna's schema check: a database from another Optuna version
        raise StorageError(f"--storage: {redact(url)}: {_first_line(e, url)}") from None
    except sqlalchemy.exc.DatabaseError as e:
        why = _first_line(e.orig or e, url)
        raise StorageError(f"--storage: {redact(url)} is not a usable database: {why}") from None
    if path is not None and create:
        sqlite_settings.use_immediate_transactions(storage.engine)
    return storage


def _ride_out_opening(
    open_it: Callable[[], SteadyRDBStorage], timeout_s: float, say: Callable[[str], None], stop: Callable[[], bool]
) -> SteadyRDBStorage:
    """open_it(), tried again with storage/rdb.py's backoff while the server cannot be reached, for up to
    timeout_s (0: once), until stop() is true. Says one line when the outage is first seen and one when it ends."""
    began = None
    pause = BACKOFF_FIRST_S
    while True:
        try:
            storage = open_it()
        except (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError) as e:
            cause = outage_cause(e)
            now = time.monotonic()
            if cause is None or timeout_s <= 0 or (began is not None and now - began >= timeout_s):
                raise
            if began is None:
                began = now
                say(unreachable_line(cause, timeout_s))
            until = now + min(pause, max(0.0, began + timeout_s - now))
            while time.monotonic() < until:  # in short naps: a stop asked for meanwhile ends the wait
                if stop():
                    raise OpeningStopped("--storage: stopped while waiting for the database server") from None
                time.sleep(min(0.2, max(0.0, until - time.monotonic())))
            pause = min(2 * pause, BACKOFF_MAX_S)
            continue
        if began is not None:
            say(back_line(time.monotonic() - began))
        return storage


def _first_line(e: BaseException, url: str) -> str:
    text = str(e).strip()
    return redact_text(text.splitlines()[0] if text else type(e).__name__, url)


def _create_rdb_storage(url: str, engine_kwargs: dict, **kwargs) -> SteadyRDBStorage:
    """SteadyRDBStorage: a beat that fails on a dropped connection is skipped instead of ending the beats.

    Workers that start together on a new database all create Optuna's tables at once; the losers of
    that race see "already exists" or a UNIQUE constraint failed (SQLite) or a duplicate key (PostgreSQL), and
    simply open it again.
    """
    for attempt in range(SCHEMA_RACE_RETRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return SteadyRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except sqlalchemy.exc.DBAPIError as e:
            text = str(e.orig).lower()
            raced = ("already exists", "duplicate key", "unique constraint failed")  # sqlite, postgresql, sqlite
            if attempt + 1 == SCHEMA_RACE_RETRIES or not any(r in text for r in raced):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _server_has_tables(url: str, engine_kwargs: dict) -> bool:
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_study(storage: RDBStorage, name: str | None, **kwargs) -> optuna.Study:
    """Load an existing study, or fail with the list of studies that exist.

    name=None picks the storage's only study.
    """
    names = study_names(storage)
    if name is None:
        if len(names) != 1:
            raise StorageError(
                f"--study: this storage holds {len(names)} studies; name one (studies: {', '.join(names) or 'none'})"
            )
        name = names[0]
    if name not in names:
        have = ", ".join(names) if names else "none"
        raise StorageError(f"--study: no study named {name!r} in this storage (studies: {have})")
    return optuna.load_study(study_name=name, storage=storage, **kwargs)


def quiet_optuna(debug: bool = False) -> None:
    """Our own event lines replace Optuna's log lines ("[I ...] Trial 3 finished", "[W ...] Trial 1 failed with
    value None." for a stopped trial): errors only, unless debug. A trial that fails on a bug still ends its
    worker with the traceback (the workers run Optuna with catch=())."""
    optuna.logging.set_verbosity(logging.INFO if debug else logging.ERROR)
