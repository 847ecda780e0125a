"""One worker in this process (`alexsearch worker`, or `search --workers 1`): run trials until the study
reaches its budget, and stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import TrialState

from model.device import device_name, resolve_device
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.best_artifacts import publish_if_best
from search.study.create import create_study
from search.study.stop import StopFlag
from search.trials import record
from search.trials.objective import Objective
from search.trials.record import best_line, finished_count
from search.trials.stepwise import make_strategy
from search.workers.display import Display
from search.workers.failures import WorkerGaveUp, hide_handled_failures
from search.workers.loop import close_leftover_retries, run_trials
from search.workers.placement import run_place
from search.workers.safe_output import survive_closed_pipes
from search.workers.signals import exit_code, install_stop_handlers, requested_signal, stop_requested
from storage.artifacts import artifact_dir, checkpoint_dir
from storage.checkpoints import CheckpointStore, CheckpointWriter
from storage.heartbeat import reap_stale_trials, retry
from storage.optuna_private import study_storage, trial_id
from storage.study import Heartbeat, OpeningStopped, quiet_optuna
from storage.url import redact

GAVE_UP_EXIT = 1  # the worker stopped because its environment failed (full disk, database gone)


@dataclass(frozen=True)
class WorkerPlace:
    index: int = 0  # distinct per worker: offsets the sampler seed
    gpu: str | None = None  # CUDA device id made the only visible one, before CUDA starts
    ignore_sigint: bool = False  # launched workers: Ctrl-C reaches the whole process group; the parent forwards it
    threads: int | None = None  # torch CPU threads
    prefix: str = ""  # put before each log line, e.g. "[w2] "
    progress_bar: bool = True  # show the study's progress too (bar or progress lines), not only event lines
    deadline: float | None = None  # time.time() after which no new trial starts (search --timeout)
    debug: bool = False  # let Optuna's own log lines through
    # Started by `search` after it created the study: a database server that cannot be reached at the opening is
    # an outage to wait out (--db-outage-timeout), not a wrong URL to report at once.
    study_exists: bool = False


def heartbeat_of(settings: SearchConfig) -> Heartbeat:
    return Heartbeat(settings.heartbeat_interval, settings.grace_period, settings.max_retry)


def worker_label(place: WorkerPlace) -> str:
    return f"w{place.index} ({socket.gethostname()}:{os.getpid()})"


def run_worker(
    settings: SearchConfig, place: WorkerPlace = WorkerPlace(), emit: Callable[[str], None] | None = None
) -> int:
    """One worker: run trials until the study reaches its budget. Returns the exit code.

    Every line it has to say goes to emit, whole (a launcher's queue); without one, this process owns the
    terminal and shows its lines and the study's progress on a Display.
    """
    if place.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = place.gpu  # before CUDA starts in this process
    if place.threads:
        torch.set_num_threads(place.threads)
    survive_closed_pipes()
    install_stop_handlers()
    if place.ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_optuna(place.debug)
    hide_handled_failures()
    opened: dict[str, optuna.Study] = {}
    display = None
    if emit is None:
        display = Display(
            settings.trials, lambda: _count(opened.get("study")), epochs=settings.epochs, progress=place.progress_bar
        )
        emit = display.line

    def log(line: str) -> None:
        emit(place.prefix + line)

    try:
        return _run(settings, place, log, opened)
    finally:
        if display is not None:
            display.close()


def _count(study: optuna.Study | None) -> int | None:
    if study is None:
        return None
    try:
        return finished_count(study)
    except Exception:  # noqa: BLE001 - progress is best effort; the trial loop reports storage errors
        return None


def _run(
    settings: SearchConfig, place: WorkerPlace, log: Callable[[str], None], opened: dict[str, optuna.Study]
) -> int:
    space = load_space(settings.space, settings.task)
    device = resolve_device(settings.device)
    data = space.task.load_search_data(settings.data)
    try:
        study = create_study(
            settings,
            space,
            settings.seed + 1000 * place.index,
            heartbeat_of(settings),
            device_label=device_name(device),
            say=log,  # the storage's outage lines, with this worker's prefix
            wait_for_server=stop_requested if place.study_exists else None,
        )
    except OpeningStopped:
        log("stopped while waiting for the database; no trial was started")
        return exit_code(requested_signal())
    opened["study"] = study
    if record.DATA_SIZE not in study.user_attrs:  # for the report's captions: what "all" meant in items
        study.set_user_attr(record.DATA_SIZE, {"train": len(data.train), "val": len(data.eval)})
    reaped = reap_stale_trials(study, settings.grace_period, settings.max_retry)
    if reaped:
        log(f"reaped dead trials {reaped}: failed and queued for retry")
    flag = StopFlag(study_storage(study), settings.study)
    if flag(force=True):
        log(
            f"study {settings.study!r} was stopped by {flag.describe()}; not starting (`alexsearch search` "
            "clears the stop and resumes)"
        )
        return 0
    folder = artifact_dir(settings.storage, settings.artifacts)
    checkpoints = CheckpointStore(checkpoint_dir(folder, settings.study))
    done = finished_count(study)
    if done >= settings.trials:
        close_leftover_retries(study, settings.trials, log)
        sweep_checkpoints(study, checkpoints, log)
        log(f"study {settings.study!r} already has {done} finished trials (budget {settings.trials}); nothing to do")
        return 0
    log(
        f"study {settings.study!r} in {redact(settings.storage)}: {done}/{settings.trials} trials "
        f"finished; {len(data.train)} train / {len(data.eval)} val items on {device_name(device)} "
        f"({torch.get_num_threads()} threads)"
    )
    sweep_checkpoints(study, checkpoints, log)

    def publish_best(
        trial: optuna.Trial, value: float, weights: dict[str, torch.Tensor], curves: dict[str, list[float]]
    ) -> None:
        try:  # a full disk must not fail a trial that trained well
            publish_if_best(study, trial, value, weights, curves, folder)
        except OSError as e:
            log(f"trial {trial.number}: could not save best-trial artifacts: {e}")

    def should_stop(force: bool = False) -> bool:
        return stop_requested() or flag(force)

    def out_of_time() -> bool:
        return place.deadline is not None and time.time() >= place.deadline

    objective = Objective(
        space,
        settings,
        data,
        device,
        log=log,
        checkpoints=CheckpointWriter(checkpoints, settings.checkpoint_every),
        on_complete=publish_best,
        place=run_place(),
        should_stop=should_stop,
        worker=worker_label(place),
    )
    try:
        run_trials(
            study,
            objective,
            settings.trials,
            space,
            strategy=make_strategy(settings, space),
            should_stop=lambda: should_stop(force=True) or out_of_time(),
            max_retry=settings.max_retry,
            log=log,
        )
    except KeyboardInterrupt:  # a stop signal or flag, raised by the trainer at a step boundary (or a 2nd signal)
        if objective.checkpoints is not None:
            objective.checkpoints.flush(
                raise_error=False
            )  # the retry resumes from the checkpoint being written, if one is
        _requeue(study, objective, settings.max_retry, log)  # before any output, which may have no reader
        if flag.flag is not None and not stop_requested():
            log(f"stopped by {flag.describe()}")
            return 0
        return exit_code(requested_signal())
    except WorkerGaveUp as e:
        log(f"worker stopped: {e}")
        return GAVE_UP_EXIT
    if stop_requested():  # stopped between trials
        return exit_code(requested_signal())
    if flag.flag is not None:
        log(f"stopped by {flag.describe()}")
    elif out_of_time() and finished_count(study) < settings.trials:
        log("time limit (--timeout) reached: no new trials started")
    if place.progress_bar:
        log(best_line(study))
    return 0


def live_roots(study: optuna.Study) -> set[int]:
    """Checkpoint keys still needed: the retry-chain roots of RUNNING and WAITING trials."""
    live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    return {record.retry_root(t) for t in live}


def sweep_checkpoints(
    study: optuna.Study,
    checkpoints: CheckpointStore,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> None:
    """Delete the checkpoints no live trial will resume from (see CheckpointStore.sweep)."""
    try:
        files, freed = checkpoints.sweep(live_roots(study))
    except OSError as e:  # a read-only or vanished folder: nothing to sweep, nothing to stop for
        log(f"could not sweep old checkpoints: {e}")
        return
    if files:
        log(f"deleted {files} old checkpoint files ({freed / 1e6:.1f} MB) of trials no retry will resume")


def _requeue(study: optuna.Study, objective: Objective, max_retry: int, log: Callable[[str], None]) -> None:
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
        storage.set_trial_state_values(trial_id(trial), state=TrialState.FAIL)
        trial = storage.get_trial(trial_id(trial))
    if trial.state == TrialState.FAIL:
        retry(study, trial, max_retry)
        log(f"stopped: trial {trial.number} failed and queued for retry")


def print_best(study: optuna.Study) -> None:
    print(best_line(study))
