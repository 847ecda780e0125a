"""The study as the report reads it: once.

Every figure of a report, Optuna's plots and importance included, asks the study for its trials. On a study
of 10,000 trials each ask cost a database read or a deep copy of every trial (seconds each, ~15 of them). A
StudySnapshot is the study with its trials and user attrs read once; Optuna's functions take it as a study and
all see the same trials. It is read-only: nothing may be written through it.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


class StudySnapshot(optuna.Study):
    def __init__(self, study: optuna.Study) -> None:  # noqa: D107 - no super().__init__: nothing is re-opened
        self.__dict__.update(study.__dict__)
        self._snapshot = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        self._snapshot_user_attrs = study.user_attrs

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        # deepcopy is ignored: the snapshot's trials are shared by its readers, which only read them
        return [t for t in self._snapshot if states is None or t.state in states]

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        return self.get_trials(states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    @property
    def user_attrs(self) -> dict[str, Any]:
        return self._snapshot_user_attrs
