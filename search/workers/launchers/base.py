"""The launcher interface: how `alexsearch search --workers N` starts its workers.

A launcher starts `workers` worker processes on one study (each runs search.workers.run.run_worker),
watches them until the study reaches its budget or a stop signal arrives, and returns the exit code of
the whole search: 0, the first failed worker's code, or 128 + the stop signal.
"""

from __future__ import annotations

from typing import Protocol

from search.settings import SearchConfig


class Launcher(Protocol):
    def launch(self, settings: SearchConfig, workers: int) -> int:
        """Run `workers` workers on settings.study until they stop; return the exit code."""
        ...
