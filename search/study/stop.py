"""`alexsearch stop`: a flag in the study that asks every worker of it, on any host, to stop.

The flag is a study system attr, so every worker sees it through the database it already uses. Workers read
it between trials, after each epoch, and inside an epoch at most every STOP_POLL_S seconds (never a database
read per batch). A worker that sees it stops as on SIGTERM: the running trial fails at a step boundary and is
queued for retry, to resume from its checkpoint. `alexsearch search` clears the flag when it starts, so the
same command resumes the study; `alexsearch worker` obeys a flag set before it started.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from optuna.storages import BaseStorage

from search.trials import record
from storage.optuna_private import study_storage, study_system_attr

STOP_ATTR = record.STOP_REQUEST
STOP_POLL_S = 5.0  # inside an epoch, the flag is read at most this often


def request_stop(storage: BaseStorage, study_name: str) -> dict[str, Any]:
    now = time.time()
    flag: dict[str, Any] = {
        "at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "time": now,
        "by": f"{socket.gethostname()}:{os.getpid()}",
    }
    storage.set_study_system_attr(storage.get_study_id_from_name(study_name), STOP_ATTR, flag)
    return flag


def read_stop(storage: BaseStorage, study_id: int) -> dict[str, Any] | None:
    return study_system_attr(storage, study_id, STOP_ATTR)


def clear_stop(storage: BaseStorage, study_name: str) -> dict[str, Any] | None:
    """Remove the flag (Optuna has no delete for attrs: it is set to None). Returns the flag that was set."""
    study_id = storage.get_study_id_from_name(study_name)
    flag = read_stop(storage, study_id)
    if flag is not None:
        storage.set_study_system_attr(study_id, STOP_ATTR, None)
    return flag


class StopFlag:
    """Reads the study's stop flag at most every `every_s` seconds, and whenever asked with force=True.

    A failing read (the database is away for a moment) counts as no flag: the workers' own storage
    handling deals with outages.
    """

    def __init__(
        self,
        storage: BaseStorage,
        study_name: str,
        every_s: float = STOP_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage, self.every_s, self.clock = storage, every_s, clock
        self.study_id = storage.get_study_id_from_name(study_name)
        self.flag: dict[str, Any] | None = None
        self._last = float("-inf")

    def __call__(self, force: bool = False) -> bool:
        if self.flag is not None:
            return True
        now = self.clock()
        if force or now - self._last >= self.every_s:
            self._last = now
            try:
                self.flag = read_stop(self.storage, self.study_id)
            except Exception:  # noqa: BLE001 - see the class docstring
                self.flag = None
        return self.flag is not None

    def describe(self) -> str:
        f = self.flag or {}
        return f"`alexsearch stop` at {f.get('at', '?')} from {f.get('by', '?')}"


def existing_study(storage_url: str, study_name: str):  # -> optuna.Study | None
    """The study if its database and it exist; None otherwise (nothing is created)."""
    import optuna

    from storage.errors import StorageError
    from storage.study import open_storage, study_names

    try:
        storage = open_storage(storage_url, create=False)
    except StorageError:
        return None  # no database yet: search creates it
    if study_name not in study_names(storage):
        return None
    return optuna.load_study(study_name=study_name, storage=storage)


def clear_stopped_study(storage_url: str, study_name: str) -> dict[str, Any] | None:
    """Clear the stop flag of an existing study (`search` resumes it). None when there was none to clear,
    or no such database or study yet."""
    study = existing_study(storage_url, study_name)
    return None if study is None else clear_stop(study_storage(study), study_name)
