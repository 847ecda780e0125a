"""SQLite settings that let many workers and a dashboard share one file.

- WAL: readers never block the writer and the writer never blocks readers.
- busy timeout: a writer waits for the lock instead of failing with "database is locked".
- BEGIN IMMEDIATE for workers' writing transactions: such a transaction takes the write lock when it
  starts, so two workers can never both read a WAITING trial and both claim it (SQLite has no SELECT ...
  FOR UPDATE), and a read transaction never has to be upgraded to a write one (which fails at once under
  WAL when another writer committed meanwhile, without waiting for the busy timeout).
- Plain (deferred) BEGIN for transactions that only read: under WAL a reader takes no lock a writer waits
  for, so a read, however long (all trials of a 10,000-trial study) or however long left open, stalls no
  other worker. Which transactions only read is declared, not guessed: code that runs inside `reading()`
  begins plain; everything else begins IMMEDIATE, so an undeclared write is never turned into an upgrade.
  storage.rdb.SteadyRDBStorage declares Optuna's read methods.
- synchronous=NORMAL on workers' connections: under WAL a commit then writes the WAL without an fsync (the WAL is
  synced at each checkpoint instead). A commit held the write lock for its fsync, 3 ms here against 0.01 ms
  without; with 8 workers committing ~100 times a second that alone kept the lock busy a third of the time
  (bench/lock_wait.py). What it gives up: after a power cut or an OS crash (not a killed worker: that loses
  nothing) the database is whole, but the last commits since the WAL was last synced may be gone, i.e. the
  latest epochs' records and states; a trial rolled back to RUNNING is reaped and retried like any dead one.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from optuna.storages._rdb import models
from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage.errors import StorageError

BUSY_TIMEOUT_S = 120.0  # how long a writer waits for the lock; transactions last milliseconds
WAL_TRY_TIMEOUT_S = 0.5  # one try at switching to WAL; tries repeat with a random pause until BUSY_TIMEOUT_S
SYNCHRONOUS = "NORMAL"  # workers' commits: no fsync each (see the module docstring)

_state = threading.local()  # per thread: the heartbeat thread's writes must not inherit a reader's mark


@contextmanager
def _marked(flag: str) -> Iterator[None]:
    """Set this thread's flag inside, and put back what it was after (so marks nest)."""
    previous = getattr(_state, flag, False)
    setattr(_state, flag, True)
    try:
        yield
    finally:
        setattr(_state, flag, previous)


def reading() -> AbstractContextManager[None]:
    """Transactions this thread begins inside take no write lock (plain BEGIN): only for code that only reads."""
    return _marked("reading")


def deciding() -> AbstractContextManager[None]:
    """Reads this thread makes inside take the write lock after all (BEGIN IMMEDIATE), as every transaction did
    before `reading()`: for a read whose result decides a write that must not race another worker's (read the
    queue, then enqueue). It waits for writes in flight and so sees them."""
    return _marked("deciding")


def is_reading() -> bool:
    return getattr(_state, "reading", False) and not getattr(_state, "deciding", False)


# Every table Optuna's RDBStorage makes (alembic_version: its schema migrations).
OPTUNA_TABLES = frozenset(models.BaseModel.metadata.tables) | {"alembic_version"}


def _read_only_uri(path: Path, immutable: bool = False) -> str:
    # as_uri() percent-escapes '#' and '?', which would otherwise end the path and drop mode=ro
    return path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")


def immutable_url(path: Path) -> str:
    """A SQLAlchemy URL that reads path without writing anything, not even WAL's -shm file.

    immutable=1 tells SQLite that nobody changes the file while it is open: true of read-only media.
    """
    return "sqlite:///" + _read_only_uri(path, immutable=True) + "&uri=true"


def _tables(path: Path, immutable: bool = False) -> set[str]:
    """The database's table names, read through SQLite in read-only mode (never with open(): closing any
    descriptor of a database file drops every POSIX lock this process holds on it, which lets other
    processes corrupt it; sqlite.org/howtocorrupt.html, section 2.2)."""
    con = sqlite3.connect(_read_only_uri(path, immutable), uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def check_sqlite_file(path: Path) -> bool:
    """Raise StorageError if path exists but is not a SQLite database.

    Returns True when the database can be read only as immutable: a WAL database on read-only media or in a
    folder this process cannot write, where SQLite cannot make the -shm file that WAL readers need.
    """
    if not path.exists():
        return False
    if path.is_dir():
        raise StorageError(f"--storage: {path} is a folder, not a database file")
    try:
        _tables(path)
        return False
    except sqlite3.DatabaseError as e:
        first = e
    if not getattr(first, "sqlite_errorname", "").startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")):
        if "not a database" in str(first) or "malformed" in str(first):
            raise StorageError(f"--storage: {path} is not a SQLite database") from None
        raise StorageError(f"--storage: cannot read {path} ({first})") from None
    try:  # SQLite could not open it for reading: read-only media holding a WAL database?
        _tables(path, immutable=True)
    except sqlite3.DatabaseError as e:
        raise StorageError(f"--storage: cannot read {path} ({first}; read as immutable: {e})") from None
    return True


def has_optuna_tables(path: Path, immutable: bool = False) -> bool:
    try:
        names = _tables(path, immutable)
    except sqlite3.DatabaseError as e:
        raise StorageError(f"--storage: {path} is not a usable SQLite database ({e})") from None
    return {"studies", "trials"} <= names


def check_not_foreign(path: Path) -> None:
    """Refuse a database that holds another program's tables, before anything (WAL, Optuna's tables) changes it.

    Empty, and Optuna's tables alone (perhaps still being made by another worker), are fine; so is a complete
    Optuna schema next to other tables.
    """
    try:
        names = {n for n in _tables(path) if not n.startswith("sqlite_")}
    except sqlite3.DatabaseError as e:
        raise StorageError(f"--storage: {path} is not a usable SQLite database ({e})") from None
    if names <= OPTUNA_TABLES or {"studies", "trials", "version_info"} <= names:
        return
    foreign = sorted(names - OPTUNA_TABLES)
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    raise StorageError(
        f"--storage: {path} is another program's database (tables {shown}) and holds no Optuna "
        "study; left untouched. Give a new file or an alexsearch database"
    )


def enable_wal(path: Path) -> None:
    """WAL is a property of the file, so setting it once here holds for every later connection.

    Switching a rollback-journal file to WAL needs the file to itself for a moment, and two commands started
    together (two searches, a search and its workers) can each hold the read lock the other's switch waits for,
    or see the switch refused: SQLite then answers with the old mode instead of an error. So each try waits
    briefly, a busy or refused switch is tried again after a random pause (which breaks the tie), and the mode
    is read back, until BUSY_TIMEOUT_S.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    mode, error = "", ""
    while True:
        try:
            con = sqlite3.connect(path, timeout=WAL_TRY_TIMEOUT_S)
            try:
                mode = str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode != "wal":
                    mode = str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            finally:
                con.close()
            if mode == "wal":
                return
            error = f"journal mode stayed {mode}"
        except sqlite3.Error as e:
            if getattr(e, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                error = str(e)
            else:  # a read-only folder or medium: a search has to write the database
                raise StorageError(
                    f"--storage: cannot write {path} ({e}); a search needs a database in a writable folder"
                ) from None
        if time.monotonic() >= deadline:
            raise StorageError(
                f"--storage: cannot switch {path} to WAL ({error}) within {BUSY_TIMEOUT_S:.0f} s; "
                "another program holds it locked"
            )
        time.sleep(random.uniform(0.0, WAL_TRY_TIMEOUT_S))


def engine_kwargs() -> dict:
    return {"connect_args": {"timeout": BUSY_TIMEOUT_S}}


def use_immediate_transactions(engine: Engine) -> None:
    """Make every transaction on engine BEGIN IMMEDIATE, except those begun inside `reading()`; commits without
    fsync (see the module docstring)."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not BEGIN on its own
        dbapi_connection.execute(f"PRAGMA synchronous={SYNCHRONOUS}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN" if is_reading() else "BEGIN IMMEDIATE")

    engine.dispose()  # drop connections made before the listeners existed
