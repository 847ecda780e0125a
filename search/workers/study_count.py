"""The study's finished-trial count for a Display: read from the database, None while it cannot be read.

Shared by every watcher of a study's workers: the local launcher and the Slurm watcher."""

from __future__ import annotations

from typing import Any

from search.settings import SearchConfig
from search.trials.record import finished_count
from storage.study import load_study, open_storage


class StudyCount:
    """Call it for the count; .study is the opened study once a read has succeeded."""

    def __init__(self, settings: SearchConfig) -> None:
        self.settings = settings
        self.study: Any = None

    def __call__(self) -> int | None:
        try:
            if self.study is None:
                self.study = load_study(open_storage(self.settings.storage, create=False), self.settings.study)
            return finished_count(self.study)
        except Exception:  # noqa: BLE001 - the database may be busy or away a moment; progress is best effort
            return None
