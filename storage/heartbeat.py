"""Reaping dead trials: Optuna's heartbeat finds trials whose beat stopped; this also finds trials
that died before their first beat, which Optuna leaves RUNNING for ever."""

from __future__ import annotations

import datetime as dt
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from storage.optuna_private import heartbeat_trial_ids, study_storage, trial_id


def retry(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Queue a WAITING copy of a failed trial, as Optuna's heartbeat retry does (up to max_retry times).

    True if a retry of trial is queued now or was already (a second call queues no second retry)."""
    if any(trial.number in t.system_attrs.get("retry_history", ()) for t in study.get_trials(deepcopy=False)):
        return True
    if len(trial.system_attrs.get("retry_history", ())) >= max_retry:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)
    return True


def reap_stale_trials(study: optuna.Study, grace_period_s: int, max_retry: int) -> list[int]:
    """Fail and retry every RUNNING trial that is dead. Returns the numbers of the trials failed here.

    A trial with a heartbeat is Optuna's business (fail_stale_trials). A trial with none at all is
    dead if it started more than grace_period_s ago: live workers beat within one interval.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fail_stale_trials(study)
    storage = study_storage(study)
    beating = heartbeat_trial_ids(storage)  # which running trials have ever beaten
    now = dt.datetime.now()
    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial_id(t) in beating:
            continue
        started = t.datetime_start or now
        if (now - started).total_seconds() <= grace_period_s:
            continue
        try:
            failed = storage.set_trial_state_values(trial_id(t), state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker finished or reaped it first
        if failed:
            retry(study, storage.get_trial(trial_id(t)), max_retry)
            reaped.append(t.number)
    return reaped
