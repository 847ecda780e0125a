"""Module-level targets for spawned test workers (spawn pickles functions by module and name)."""

from __future__ import annotations

import os
import time

import optuna

from storage.study import open_storage


def take_enqueued(url: str, study_name: str, log_path: str, seconds: float) -> None:
    """Run waiting trials until none is left; each run appends its trial's `k` param to log_path."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url, create=True))

    def objective(trial: optuna.Trial) -> float:
        k = trial.suggest_int("k", 0, 10_000)
        if "fixed_params" not in trial.storage.get_trial_system_attrs(trial._trial_id):
            # The queue emptied between our check and our ask, so Optuna made a fresh trial: not ours to log.
            return -1.0
        with open(log_path, "a") as f:  # O_APPEND: one short line per write, never interleaved
            f.write(f"{k} {os.getpid()}\n")
        time.sleep(seconds)
        return float(k)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            return
        study.optimize(objective, n_trials=1)
