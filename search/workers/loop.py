"""The worker loop: run trials until the whole study has reached its budget."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage.rdb import SteadyRDBStorage

if TYPE_CHECKING:
    from search.space.space import Space

STORAGE_ERROR_PAUSE_S = 5.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class Strategy(Protocol):
    """A plan that enqueues trials itself (e.g. the report's stepwise protocol)."""

    def prepare(self, study: optuna.Study) -> bool:
        """Called before each trial: enqueue what should run next. False = the plan has nothing left."""
        ...


DUPLICATE_OF = "duplicate_of"  # user attr of a trial the objective skipped: the earlier trial's number


def is_duplicate(t: FrozenTrial) -> bool:
    """A trial the objective skipped because its config had already been trained."""
    return DUPLICATE_OF in t.user_attrs


def best_line(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "best: none yet (no complete trial)"
    return (f"best: trial {best.number}, val_acc {best.value:.4f} at epoch {best.user_attrs.get('best_epoch')}, "
            f"{best.params}")


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards the budget: the study's, not this process's. Skipped duplicates don't.

    One count query on our storage (milliseconds at 10,000 trials); other storages load the trials.
    """
    backend = getattr(study._storage, "_backend", study._storage)  # Optuna's _CachedStorage wraps ours
    if isinstance(backend, SteadyRDBStorage):
        return backend.count_trials(study._study_id, FINISHED, without_user_attr=DUPLICATE_OF)
    return sum(not is_duplicate(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


def finished_count_in(storage: SteadyRDBStorage, study_id: int) -> int:
    """finished_count for a storage and study id, without loading the study (the parent's progress poll)."""
    return storage.count_trials(study_id, FINISHED, without_user_attr=DUPLICATE_OF)


def space_exhausted(study: optuna.Study, space: Space) -> bool:
    """True when every config of a categorical space is finished or being run."""
    if not space.is_categorical():
        return False
    taken = {tuple(repr(t.params.get(n)) for n in space.names)
             for t in study.get_trials(deepcopy=False, states=TAKEN) if set(space.names) <= set(t.params)}
    return len(taken) >= space.grid_size()


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], budget: int, space: Space,
               on_progress: Callable[[int], None] = lambda done: None, strategy: Strategy | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> int:
    """Run one trial at a time until `budget` trials of the study have finished. Returns trials run here."""
    ran = 0
    while True:
        done = finished_count(study)
        on_progress(done)
        if done >= budget or space_exhausted(study, space):
            return ran
        if strategy is not None and not strategy.prepare(study):
            return ran
        if should_stop():
            return ran
        try:
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=False)
        except optuna.exceptions.StorageInternalError as e:
            # The database connection dropped mid-call. The pool reconnects on the next call; the
            # trial, if left RUNNING, stops beating and is retried from its checkpoint by the heartbeat.
            print(f"storage error, going on after {STORAGE_ERROR_PAUSE_S:.0f} s: {e.__cause__ or e}", file=sys.stderr)
            time.sleep(STORAGE_ERROR_PAUSE_S)
        ran += 1
