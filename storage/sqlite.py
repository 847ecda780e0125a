"""SQLite settings that let many workers and a dashboard share one file.

- WAL: readers never block the writer and the writer never blocks readers.
- busy timeout: a writer waits for the lock instead of failing with "database is locked".
- BEGIN IMMEDIATE for workers: each transaction takes the write lock when it starts, so two workers
  can never both read a WAITING trial and both claim it (SQLite has no SELECT ... FOR UPDATE), and a
  read transaction never has to be upgraded to a write one (which fails at once under WAL).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage.errors import StorageError

BUSY_TIMEOUT_S = 120.0  # how long a writer waits for the lock; transactions last milliseconds


def _read_only_uri(path: Path) -> str:
    # as_uri() percent-escapes '#' and '?', which would otherwise end the path and drop mode=ro
    return path.resolve().as_uri() + "?mode=ro"


def check_sqlite_file(path: Path) -> None:
    """Raise StorageError if path exists but is not a SQLite database.

    Asks SQLite itself rather than reading the header with open(): closing any descriptor of a database
    file drops every POSIX lock this process holds on it, which lets other processes corrupt it
    (sqlite.org/howtocorrupt.html, section 2.2).
    """
    if not path.exists():
        return
    if path.is_dir():
        raise StorageError(f"--storage: {path} is a folder, not a database file")
    con = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError:
        raise StorageError(f"--storage: {path} is not a SQLite database") from None
    finally:
        con.close()


def has_optuna_tables(path: Path) -> bool:
    con = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise StorageError(f"--storage: {path} is not a usable SQLite database ({e})") from None
    finally:
        con.close()
    return {"studies", "trials"} <= names


def enable_wal(path: Path) -> None:
    """WAL is a property of the file, so setting it once here holds for every later connection."""
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def engine_kwargs() -> dict:
    return {"connect_args": {"timeout": BUSY_TIMEOUT_S}}


def use_immediate_transactions(engine: Engine) -> None:
    """Make every transaction on engine BEGIN IMMEDIATE (see the module docstring)."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # drop connections made before the listeners existed
