"""Why a trial's run ended in an exception, and what the worker does about it.

Three kinds, told apart by the exception and its chain (Optuna's own error handling often raises a second
exception, such as UnboundLocalError, while handling the first one):

- taken: the trial was declared dead and failed by another worker while this one was paused or cut off
  from the database for longer than the grace period; its retry runs elsewhere. Nothing to do; go on.
- environment: a full disk, a file that cannot be written, a database that refuses a write. The trial is
  failed and queued for retry (its checkpoint stays), in one line; the worker goes on, and stops after
  MAX_FAILED_IN_A_ROW such trials in a row.
- None: a bug. Raised, with its traceback.

An outage longer than the worker's outage timeout (storage/rdb.py: DatabaseUnavailable) stops the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

import sqlalchemy
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError

from storage.rdb import DatabaseUnavailable, first_line

MAX_FAILED_IN_A_ROW = 3  # trials failed by the environment, in a row, before the worker stops
FAILED_PAUSE_S = 2.0  # wait after such a failure, times the failures in a row: a disk may get freed

Kind = Literal["taken", "environment", "outage"]


class WorkerGaveUp(RuntimeError):
    """The worker cannot go on (its trials keep failing for the environment, or the database is gone)."""


def chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        todo += [x.__cause__, x.__context__]


def _is_taken(x: BaseException) -> bool:
    return isinstance(x, UpdateFinishedTrialError) or (
        isinstance(x, ValueError) and str(x).startswith("Cannot tell a ") and "trial" in str(x)
    )


def classify(e: BaseException) -> tuple[Kind, str] | None:
    """(kind, one-line reason), or None for an exception that is a bug."""
    errors = list(chain(e))
    for x in errors:
        if isinstance(x, DatabaseUnavailable):
            return "outage", str(x)
    for x in errors:
        if _is_taken(x):
            return "taken", first_line(x)
    for x in errors:
        if isinstance(x, OSError):
            where = f"{x.filename}: " if x.filename else ""
            return "environment", f"{where}{x.strerror or first_line(x)}"
    for x in errors:
        if isinstance(x, sqlalchemy.exc.SQLAlchemyError):
            return "environment", f"database error: {first_line(x)}"
    for x in errors:
        if isinstance(x, StorageInternalError):
            return "environment", f"database error: {first_line(x)}"
    return None


class HideHandledFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback, then "failed with value None". For failures the worker
    reports in its own line (environment, taken, a requested stop), both are noise; so is its warning about
    a query that failed on a dropped connection, which the storage rides out and reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            return not (isinstance(e, KeyboardInterrupt) or classify(e) is not None)
        message = record.getMessage()
        if message.startswith("Caught an error from sqlalchemy") and "connection" in message:
            return False  # Optuna's _get_trials on a dropped connection; storage/rdb.py says it in its own line
        return not message.endswith("failed with value None.")


def hide_handled_failures() -> None:
    for handler in logging.getLogger("optuna").handlers:  # logger filters don't reach child loggers; handlers do
        if not any(isinstance(f, HideHandledFailures) for f in handler.filters):
            handler.addFilter(HideHandledFailures())
