"""The trial record: every attr alexsearch writes on a study or its trials, by name, and the readers of them.

The names are stored in databases and read by the dashboard, the report and `export`: renaming one
orphans the studies already made. Optuna's own system attrs are read through Optuna's helpers or
storage/optuna_private.py.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from storage.rdb import SteadyRDBStorage

# Trial user attrs, written by the objective.
CONFIG = "config"  # the TrialConfig as a dict: what `export` turns into a final-run config
SEED = "seed"
DEVICE = "device"  # e.g. "NVIDIA H100 80GB HBM3" or "cpu"
VERSIONS = "versions"  # python, torch, optuna ... versions of the worker that trained it
BEST_EPOCH = "best_epoch"  # 1-based epoch of the best validation accuracy
DUPLICATE_OF = "duplicate_of"  # number of the earlier trial with the same config; this one did not train
PRUNED_REASON = "pruned_reason"
STOPPED_REASON = "stopped_reason"  # completed early by patience
CLOSED_REASON = "closed_reason"  # why a WAITING retry was closed (FAIL) without running: the budget was reached
RESUMED_FROM = "resumed_from"  # {"trial": root of the retry chain, "epoch": epochs its checkpoint held}
# Per-epoch curves, one list entry per epoch trained.
TRAIN_ACC = "train_acc"
VAL_ACC = "val_acc"
TRAIN_LOSS = "train_loss"
EPOCH_SECONDS = "epoch_seconds"  # wall seconds per epoch
IMAGES_PER_S = "images_per_s"  # training throughput per epoch
CURVES = (TRAIN_ACC, VAL_ACC, TRAIN_LOSS, EPOCH_SECONDS, IMAGES_PER_S)
# Trial user attrs: where the worker that ran the trial was (search/workers/placement.py: run_place).
HOST = "host"  # the node's name (SLURMD_NODENAME under Slurm, else the host name)
SLURM_JOB_ID = "slurm_job_id"  # "4711_3" for task 3 of array job 4711; only under Slurm
SLURM_ARRAY_TASK_ID = "slurm_array_task_id"  # "3"
SLURM_RESTART_COUNT = "slurm_restart_count"  # how often Slurm had requeued the task when the trial started
# Trial user attrs set by the stepwise strategy when it enqueues a trial.
STEPWISE_STEP = "stepwise_step"  # 1-based step of the plan
STEPWISE_PARAM = "stepwise_param"  # the parameter that step tunes

# Study user attrs.
SEARCH_CONFIG = "search_config"  # the SearchConfig the study was created with (storage password redacted)
SPACE = "space"  # the Space as a dict
STEPWISE_PLAN = "stepwise_plan"  # the plan's steps, so the report can draw one figure per step
BEST_ARTIFACTS = "best_artifacts"  # ids of the best trial's weights and curve in the artifact store
FINAL_RESULT = "final_result"  # what `alexsearch final` measured on the test set
FINAL_SMOKE_RESULT = "final_smoke_result"  # a `final --train-size N` smoke run, kept apart and marked
DATA_SIZE = "data_size"  # {"train": items, "val": items} as the workers loaded them: the report's captions
SLURM_JOB = "slurm_job"  # the job array `search --launcher slurm` last submitted: job_id, tasks, script, log_dir

# Study system attr: `alexsearch stop`'s request, {"at": UTC time, "time": Unix s, "by": "host:pid"}; None = cleared.
STOP_REQUEST = "alexsearch_stop"

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def is_duplicate(t: FrozenTrial) -> bool:
    """A trial the objective skipped because its config had already been trained."""
    return DUPLICATE_OF in t.user_attrs


def is_stopped(t: FrozenTrial) -> bool:
    """Completed early by patience (no improvement), with its best epoch's score."""
    return t.state == TrialState.COMPLETE and STOPPED_REASON in t.user_attrs


def note(t: FrozenTrial) -> str:
    """Why the trial ended early, or ''."""
    return t.user_attrs.get(PRUNED_REASON) or t.user_attrs.get(STOPPED_REASON) or t.user_attrs.get(CLOSED_REASON) or ""


def best_epoch(t: FrozenTrial, default: Any = None) -> Any:
    return t.user_attrs.get(BEST_EPOCH, default)


def epochs_trained(t: FrozenTrial) -> int:
    """Epochs this trial trained: one intermediate value (validation accuracy) per epoch."""
    return len(t.intermediate_values)


def curves(t: FrozenTrial) -> tuple[list[float], list[float]] | None:
    """Per-epoch train and validation accuracy, or None for a trial that has not finished an epoch."""
    train, val = t.user_attrs.get(TRAIN_ACC), t.user_attrs.get(VAL_ACC)
    if not train or not val:
        return None
    return list(train), list(val)


def retried_trial_number(t: FrozenTrial) -> int | None:
    """The first trial of the retry chain this trial retries; None if it is not a retry."""
    with warnings.catch_warnings():  # the helper is marked experimental; its notice is for developers
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(t)


def retry_root(t: FrozenTrial) -> int:
    """The number of the first trial in this trial's retry chain (itself if it is not a retry)."""
    root = retried_trial_number(t)
    return t.number if root is None else root


def finished_count(study: optuna.Study) -> int:
    """Trials that count towards the budget: the study's, not this process's. Skipped duplicates don't.

    One count query on our storage (milliseconds at 10,000 trials); other storages load the trials.
    """
    from storage.optuna_private import rdb_backend, study_id, study_storage
    from storage.rdb import SteadyRDBStorage

    backend = rdb_backend(study_storage(study))  # Optuna's _CachedStorage wraps ours
    if isinstance(backend, SteadyRDBStorage):
        return finished_count_in(backend, study_id(study))
    return sum(not is_duplicate(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


def finished_count_in(storage: SteadyRDBStorage, study_id: int) -> int:
    """finished_count for a storage and study id, without loading the study (the parent's progress poll)."""
    return storage.count_trials(study_id, FINISHED, without_user_attr=DUPLICATE_OF)


def best_so_far(study: optuna.Study) -> tuple[int, float] | None:
    """(number, value) of the study's best complete trial, or None."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None
    assert best.value is not None  # a complete trial's
    return best.number, best.value


def best_line(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return "best: none yet (no complete trial)"
    return f"best: trial {best.number}, val_acc {best.value:.4f} at epoch {best_epoch(best)}, {best.params}"
