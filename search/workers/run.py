"""One worker in this process (`alexsearch worker`, or `search --workers 1`): run trials until the study
reaches its budget, and stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState
from tqdm import tqdm

from model.device import device_name, resolve_device
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.best_artifacts import publish_if_best
from search.study.create import create_study
from search.trials import record
from search.trials.objective import Objective
from search.trials.record import best_line, finished_count
from search.trials.stepwise import make_strategy
from search.workers.failures import WorkerGaveUp, hide_handled_failures
from search.workers.loop import close_leftover_retries, run_trials
from search.workers.placement import run_place
from search.workers.safe_output import survive_closed_pipes
from search.workers.signals import exit_code, install_stop_handlers, requested_signal, stop_requested
from storage.artifacts import artifact_dir, checkpoint_dir
from storage.checkpoints import CheckpointStore
from storage.heartbeat import reap_stale_trials, retry
from storage.optuna_private import rdb_backend, study_storage
from storage.study import Heartbeat, quiet_optuna
from storage.url import redact

GAVE_UP_EXIT = 1  # the worker stopped because its environment failed (full disk, database gone)


@dataclass(frozen=True)
class WorkerPlace:
    index: int = 0  # distinct per worker: offsets the sampler seed
    gpu: str | None = None  # CUDA device id made the only visible one, before CUDA starts
    ignore_sigint: bool = False  # spawned workers: Ctrl-C reaches the whole process group; the parent forwards it
    threads: int | None = None  # torch CPU threads
    prefix: str = ""  # put before each log line, e.g. "[w2] "
    progress_bar: bool = True


def heartbeat_of(settings: SearchConfig) -> Heartbeat:
    return Heartbeat(settings.heartbeat_interval, settings.grace_period, settings.max_retry)


def run_worker(settings: SearchConfig, place: WorkerPlace = WorkerPlace()) -> int:
    """One worker: run trials until the study reaches its budget. Returns the exit code."""
    if place.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = place.gpu  # before CUDA starts in this process
    if place.threads:
        torch.set_num_threads(place.threads)
    survive_closed_pipes()
    install_stop_handlers()
    if place.ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_optuna()
    hide_handled_failures()
    space = load_space(settings.space, settings.task)
    device = resolve_device(settings.device)
    data = space.task.load_search_data(settings.data)
    study = create_study(settings, space, settings.seed + 1000 * place.index, heartbeat_of(settings),
                         device_label=device_name(device))
    backend = rdb_backend(study_storage(study))
    if backend is not None:  # its outage lines (storage/rdb.py), with this worker's prefix
        backend.say = lambda line: print(place.prefix + line, file=sys.stderr, flush=True)
    reaped = reap_stale_trials(study, settings.grace_period, settings.max_retry)
    if reaped:
        print(f"{place.prefix}reaped dead trials {reaped}: failed and queued for retry", file=sys.stderr)
    folder = artifact_dir(settings.storage, settings.artifacts)
    checkpoints = CheckpointStore(checkpoint_dir(folder, settings.study))
    done = finished_count(study)
    if done >= settings.trials:
        close_leftover_retries(study, settings.trials, lambda line: print(place.prefix + line, file=sys.stderr))
        sweep_checkpoints(study, checkpoints, place.prefix)
        print(f"study {settings.study!r} already has {done} finished trials (budget {settings.trials}); "
              "nothing to do")
        return 0
    sweep_checkpoints(study, checkpoints, place.prefix)
    print(f"{place.prefix}study {settings.study!r} in {redact(settings.storage)}: {done}/{settings.trials} trials "
          f"finished; {len(data.train)} train / {len(data.eval)} val items on {device_name(device)} "
          f"({torch.get_num_threads()} threads)", file=sys.stderr)
    bar = tqdm(total=settings.trials, initial=done, desc="trials", unit="trial", dynamic_ncols=True,
               file=sys.stderr, disable=not place.progress_bar)

    def log(line: str) -> None:
        bar.write(place.prefix + line) if place.progress_bar else print(place.prefix + line, flush=True)

    def publish_best(trial: optuna.Trial, value: float, weights: dict[str, torch.Tensor],
                     curves: dict[str, list[float]]) -> None:
        try:  # a full disk must not fail a trial that trained well
            publish_if_best(study, trial, value, weights, curves, folder)
        except OSError as e:
            log(f"trial {trial.number}: could not save best-trial artifacts: {e}")

    objective = Objective(space, settings, data, device, log=log,
                          checkpoints=checkpoints, on_complete=publish_best, place=run_place())
    try:
        run_trials(study, objective, settings.trials, space, lambda n: bar.update(n - bar.n),
                   make_strategy(settings, space), should_stop=stop_requested, max_retry=settings.max_retry,
                   log=log)
    except KeyboardInterrupt:  # a stop signal, raised by the trainer at a step boundary (or a second signal)
        _requeue(study, objective, settings.max_retry, place.prefix)  # before any output, which may have no reader
        bar.close()
        return exit_code(requested_signal())
    except WorkerGaveUp as e:
        bar.close()
        print(f"{place.prefix}worker stopped: {e}", file=sys.stderr)
        return GAVE_UP_EXIT
    bar.close()
    if stop_requested():  # stopped between trials
        return exit_code(requested_signal())
    if place.progress_bar:
        print_best(study)
    return 0


def live_roots(study: optuna.Study) -> set[int]:
    """Checkpoint keys still needed: the retry-chain roots of RUNNING and WAITING trials."""
    live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    return {record.retry_root(t) for t in live}


def sweep_checkpoints(study: optuna.Study, checkpoints: CheckpointStore, prefix: str = "") -> None:
    """Delete the checkpoints no live trial will resume from (see CheckpointStore.sweep)."""
    try:
        files, freed = checkpoints.sweep(live_roots(study))
    except OSError as e:  # a read-only or vanished folder: nothing to sweep, nothing to stop for
        print(f"{prefix}could not sweep old checkpoints: {e}", file=sys.stderr)
        return
    if files:
        print(f"{prefix}deleted {files} old checkpoint files ({freed / 1e6:.1f} MB) of trials no retry will "
              "resume", file=sys.stderr)


def _requeue(study: optuna.Study, objective: Objective, max_retry: int, prefix: str) -> None:
    """The stopped trial is FAIL now (Optuna marked it; or RUNNING, if a second signal cut Optuna short);
    queue its retry, which resumes from its checkpoint. Further signals are ignored meanwhile: this takes
    milliseconds, and a second Ctrl-C landing in it would lose the retry."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    if objective.current_trial_id is None:
        return
    storage = study_storage(study)
    trial = storage.get_trial(objective.current_trial_id)
    if trial.state == TrialState.RUNNING:
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        trial = storage.get_trial(trial._trial_id)
    if trial.state == TrialState.FAIL:
        retry(study, trial, max_retry)
        print(f"{prefix}stopped: trial {trial.number} failed and queued for retry", file=sys.stderr)


def print_best(study: optuna.Study) -> None:
    print(best_line(study))
