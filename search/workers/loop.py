"""The worker loop: run trials until the whole study has reached its budget."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol

import optuna
from optuna.trial import TrialState

from search.space.space import Space
from search.trials.record import finished_count
from storage.optuna_private import study_storage, trial_id

STORAGE_ERROR_PAUSE_S = 5.0
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class Strategy(Protocol):
    """A plan that enqueues trials itself (e.g. the report's stepwise protocol)."""

    def prepare(self, study: optuna.Study) -> bool:
        """Called before each trial: enqueue what should run next. False = the plan has nothing left."""
        ...


def space_exhausted(study: optuna.Study, space: Space) -> bool:
    """True when every config of a categorical space is finished or being run."""
    if not space.is_categorical():
        return False
    taken = {tuple(repr(t.params.get(n)) for n in space.names)
             for t in study.get_trials(deepcopy=False, states=TAKEN) if set(space.names) <= set(t.params)}
    return len(taken) >= space.grid_size()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class _EndedElsewhere:
    """Runs the objective and notices when its trial was finished by someone else while it ran (a reaper that
    took it for dead, a user in the dashboard): every write to the trial then raises UpdateFinishedTrialError."""

    def __init__(self, study: optuna.Study, objective: Callable[[optuna.Trial], float]) -> None:
        self.study, self.objective = study, objective
        self.trial_id: int | None = None
        self.lost: int | None = None  # the number of this call's trial, once it is known to be lost

    def __call__(self, trial: optuna.Trial) -> float:
        self.trial_id, self.lost = trial_id(trial), None
        try:
            value = self.objective(trial)
            if study_storage(self.study).get_trial(trial_id(trial)).state.is_finished():  # failed after its last write
                raise optuna.exceptions.UpdateFinishedTrialError("finished elsewhere")
            return value
        except optuna.exceptions.UpdateFinishedTrialError:
            self.lost = trial.number
            # Optuna's tell now fails ("Cannot tell a FAIL trial") and logs the trial as failed with a
            # traceback; the worker says it in one line instead (run_trials restores the level).
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            raise optuna.TrialPruned("finished elsewhere") from None

    def state(self) -> str:
        return study_storage(self.study).get_trial(self.trial_id).state.name if self.trial_id is not None else "?"


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], budget: int, space: Space,
               on_progress: Callable[[int], None] = lambda done: None, strategy: Strategy | None = None,
               should_stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = _to_stderr) -> int:
    """Run one trial at a time until `budget` trials of the study have finished. Returns trials run here.

    A trial that someone else finishes while it runs here is stopped and left as they set it (its
    checkpoint stays, for the retry a reaper queues); the worker says so in one line and goes on.
    """
    ran = 0
    guarded = _EndedElsewhere(study, objective)
    while True:
        done = finished_count(study)
        on_progress(done)
        if done >= budget or space_exhausted(study, space):
            return ran
        if strategy is not None and not strategy.prepare(study):
            return ran
        if should_stop():
            return ran
        verbosity = optuna.logging.get_verbosity()
        try:
            study.optimize(guarded, n_trials=1, catch=(), gc_after_trial=False)
        except optuna.exceptions.StorageInternalError as e:
            # The database connection dropped mid-call. The pool reconnects on the next call; the
            # trial, if left RUNNING, stops beating and is retried from its checkpoint by the heartbeat.
            log(f"storage error, going on after {STORAGE_ERROR_PAUSE_S:.0f} s: {e.__cause__ or e}")
            time.sleep(STORAGE_ERROR_PAUSE_S)
        except ValueError:
            if guarded.lost is None:
                raise
            log(f"trial {guarded.lost} was set {guarded.state()} by another process while it ran here; "
                "stopped it, going on with the next trial")
        finally:
            optuna.logging.set_verbosity(verbosity)
        ran += 1
