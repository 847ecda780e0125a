"""The worker loop: run trials until the whole study has reached its budget."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol

import optuna
from optuna.trial import TrialState

from search.space.space import Space
from search.trials import record
from search.trials.record import finished_count
from search.workers.failures import FAILED_PAUSE_S, MAX_FAILED_IN_A_ROW, WorkerGaveUp, classify
from storage.heartbeat import retry
from storage.optuna_private import close_waiting_trial, rdb_backend, study_storage, trial_id
from storage.rdb import first_line

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
    taken = {
        tuple(repr(t.params.get(n)) for n in space.names)
        for t in study.get_trials(deepcopy=False, states=TAKEN)
        if set(space.names) <= set(t.params)
    }
    return len(taken) >= space.grid_size()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    budget: int,
    space: Space,
    on_progress: Callable[[int], None] = lambda done: None,
    strategy: Strategy | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_retry: int = 0,
    log: Callable[[str], None] = _to_stderr,
) -> int:
    """Run one trial at a time until `budget` trials of the study have finished. Returns trials run here.

    A trial that fails for the environment (search/workers/failures.py) is failed and queued for retry, and
    the loop goes on; after MAX_FAILED_IN_A_ROW of them in a row it raises WorkerGaveUp. A trial another
    worker took over is left to it. A database outage is ridden out by the storage (storage/rdb.py);
    one longer than its timeout raises WorkerGaveUp.
    """
    ran = failed_in_a_row = 0
    guarded = _EndedElsewhere(study, objective)
    while True:
        guarded.trial_id = guarded.lost = None
        _take_started_trial(study)
        verbosity = optuna.logging.get_verbosity()
        try:
            done = finished_count(study)
            on_progress(done)
            if done >= budget:
                close_leftover_retries(study, budget, log)
                return ran
            if space_exhausted(study, space) and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return ran  # every config is finished or running (a WAITING retry is run first: ask takes it)
            if strategy is not None and not strategy.prepare(study):
                return ran
            if should_stop():
                return ran
            _check_disk(study)
            study.optimize(guarded, n_trials=1, catch=(), gc_after_trial=False)
            failed_in_a_row = 0
        except Exception as e:
            kind, reason = ("taken", "") if guarded.lost is not None else (classify(e) or (None, ""))
            if kind is None:
                raise
            started = _take_started_trial(study)
            if guarded.trial_id is None:  # Optuna made the trial, then failed before our objective ran
                guarded.trial_id = started
            current = [] if guarded.trial_id is None else [guarded.trial_id]
            number = _trial_number(study, current)
            if kind == "outage":
                left = f"; trial {number} stays RUNNING until a worker reaps it" if number is not None else ""
                raise WorkerGaveUp(f"{reason}{left}") from e
            if kind == "taken":  # reaped while this worker was paused or cut off, or failed in the dashboard
                log(
                    f"trial {number} was set {guarded.state()} by another process while it ran here; "
                    "stopped it, going on with the next trial"
                )
            else:
                failed_in_a_row += 1
                log(
                    f"{'trial ' + str(number) if number is not None else 'starting a trial'} failed: {reason}; "
                    f"{_settle(study, current, max_retry)} ({failed_in_a_row} in a row, "
                    f"stopping at {MAX_FAILED_IN_A_ROW})"
                )
                if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                    raise WorkerGaveUp(
                        f"{MAX_FAILED_IN_A_ROW} trials in a row failed, the last one with: {reason}"
                    ) from e
                time.sleep(FAILED_PAUSE_S * failed_in_a_row)
        finally:
            optuna.logging.set_verbosity(verbosity)
        ran += 1


def _check_disk(study: optuna.Study) -> None:
    storage = rdb_backend(study_storage(study))
    problem = storage.disk_space_problem() if storage is not None and hasattr(storage, "disk_space_problem") else None
    if problem is not None:
        raise WorkerGaveUp(f"{problem}; no trial started. Free some space and run the worker again")


def _take_started_trial(study: optuna.Study) -> int | None:
    storage = rdb_backend(study_storage(study))
    return storage.take_started_trial() if storage is not None and hasattr(storage, "take_started_trial") else None


def _trial_number(study: optuna.Study, current: list[int]) -> int | None:
    if not current:
        return None
    try:
        return study_storage(study).get_trial(current[0]).number
    except Exception:  # the database may be what failed
        return None


def _settle(study: optuna.Study, current: list[int], max_retry: int) -> str:
    """Fail the trial if Optuna could not (its tell failed too) and queue its retry. Says what was done."""
    if not current:
        return "no trial was started"
    storage = study_storage(study)
    try:
        trial = storage.get_trial(current[0])
        if trial.state == TrialState.RUNNING:
            storage.set_trial_state_values(trial_id(trial), state=TrialState.FAIL)
            trial = storage.get_trial(trial_id(trial))
        if trial.state != TrialState.FAIL:
            return f"it is {trial.state.name}"
        return "queued for retry" if retry(study, trial, max_retry) else f"not retried (max {max_retry} retries)"
    except Exception as e:  # the database refuses this write too: the reaper fails and retries it later
        return f"could not mark it failed ({first_line(e.__cause__ or e)}); a worker reaps it later"


def close_leftover_retries(study: optuna.Study, budget: int, log: Callable[[str], None]) -> list[int]:
    """Close the retries still WAITING once the study has reached its budget: no worker will run them, and
    their checkpoints can go. Returns their numbers."""
    closed = []
    storage = rdb_backend(study_storage(study))
    reason = f"the study reached its budget of {budget} finished trials first"
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if (
            record.retried_trial_number(t) is not None
            and storage is not None
            and close_waiting_trial(storage, trial_id(t), record.CLOSED_REASON, reason)
        ):
            closed.append(t.number)
    if closed:
        log(f"closed retries {closed}: the study reached its budget of {budget} finished trials first")
    return closed
