"""One worker in this process (`alexsearch worker`, or `search --workers 1`): run trials until the study
reaches its budget, and stop cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from tqdm import tqdm

from model.device import device_name, resolve_device
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.best_artifacts import publish_if_best
from search.study.create import create_study
from search.trials.objective import Objective
from search.trials.stepwise import make_strategy
from search.workers.loop import best_line, finished_count, run_trials
from search.workers.signals import exit_code, install_stop_handlers, requested_signal, stop_requested
from storage.artifacts import artifact_dir, checkpoint_dir
from storage.checkpoints import CheckpointStore, CheckpointWriter
from storage.heartbeat import reap_stale_trials, retry
from storage.study import Heartbeat, quiet_optuna
from storage.url import redact


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
    install_stop_handlers()
    if place.ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_optuna()
    space = load_space(settings.space, settings.task)
    device = resolve_device(settings.device)
    data = space.task.load_search_data(settings.data)
    study = create_study(settings, space, settings.seed + 1000 * place.index, heartbeat_of(settings),
                         device_label=device_name(device))
    reaped = reap_stale_trials(study, settings.grace_period, settings.max_retry)
    if reaped:
        print(f"{place.prefix}reaped dead trials {reaped}: failed and queued for retry", file=sys.stderr)
    done = finished_count(study)
    if done >= settings.trials:
        print(f"study {settings.study!r} already has {done} finished trials (budget {settings.trials}); "
              "nothing to do")
        return 0
    print(f"{place.prefix}study {settings.study!r} in {redact(settings.storage)}: {done}/{settings.trials} trials "
          f"finished; {len(data.train)} train / {len(data.eval)} val items on {device_name(device)} "
          f"({torch.get_num_threads()} threads)", file=sys.stderr)
    bar = tqdm(total=settings.trials, initial=done, desc="trials", unit="trial", dynamic_ncols=True,
               file=sys.stderr, disable=not place.progress_bar)

    def log(line: str) -> None:
        bar.write(place.prefix + line) if place.progress_bar else print(place.prefix + line, flush=True)

    folder = artifact_dir(settings.storage, settings.artifacts)

    def publish_best(trial: optuna.Trial, value: float, trainer: Any, curves: dict[str, list[float]]) -> None:
        try:  # a full disk must not fail a trial that trained well
            publish_if_best(study, trial, value, trainer.model.state_dict(), curves, folder)
        except OSError as e:
            log(f"trial {trial.number}: could not save best-trial artifacts: {e}")

    objective = Objective(space, settings, data, device, log=log,
                          checkpoints=CheckpointWriter(CheckpointStore(checkpoint_dir(folder, settings.study)),
                                                       settings.checkpoint_every, log=log),
                          on_complete=publish_best)
    try:
        run_trials(study, objective, settings.trials, space, lambda n: bar.update(n - bar.n),
                   make_strategy(settings, space), should_stop=stop_requested)
    except KeyboardInterrupt:  # a stop signal, raised by the trainer at a step boundary (or a second signal)
        bar.close()
        objective.checkpoints.flush()  # the retry resumes from the checkpoint being written, if one is
        _requeue(study, objective, settings.max_retry, place.prefix)
        return exit_code(requested_signal())
    bar.close()
    if stop_requested():  # stopped between trials
        return exit_code(requested_signal())
    if place.progress_bar:
        print_best(study)
    return 0


def _requeue(study: optuna.Study, objective: Objective, max_retry: int, prefix: str) -> None:
    """The stopped trial is FAIL now (Optuna marked it); queue its retry, which resumes from its checkpoint."""
    if objective.current_trial_id is None:
        return
    trial = study._storage.get_trial(objective.current_trial_id)
    if trial.state == optuna.trial.TrialState.FAIL:
        retry(study, trial, max_retry)
        print(f"{prefix}stopped: trial {trial.number} failed and queued for retry", file=sys.stderr)


def print_best(study: optuna.Study) -> None:
    print(best_line(study))
