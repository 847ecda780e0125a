"""Running workers: one in this process (`alexsearch worker`, or `search --workers 1`), or N spawned
processes on one study (`search --workers N`) that the parent watches and stops together."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from tqdm import tqdm

from model.device import device_name, resolve_device
from model.errors import ConfigError
from search.best_artifacts import publish_if_best
from search.note import save_study_note, study_note
from search.objective import Objective
from search.placement import gpu_for
from search.pruning import make_pruner
from search.safe_output import survive_closed_pipes
from search.samplers import make_sampler
from search.settings import SearchConfig
from search.signals import exit_code, install_stop_handlers, requested_signal, stop_requested
from search.space import Space, load_space
from search.stepwise import make_strategy
from search.worker import best_line, finished_count, run_trials
from storage.artifacts import artifact_dir, checkpoint_dir
from storage.checkpoints import CheckpointStore
from storage.heartbeat import reap_stale_trials, retry
from storage.study import Heartbeat, load_study, open_storage, quiet_optuna
from storage.url import redact

STOP_WAIT_S = 30.0  # how long the parent waits for stopped workers before killing them
POLL_S = 2.0  # how often the parent reads the study to update its progress bar


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


def create_study(settings: SearchConfig, space: Space, sampler_seed: int, heartbeat: Heartbeat | None = None,
                 device_label: str = "unknown") -> optuna.Study:
    """Create the study, or load it to resume; the sampler seed also moves on with the trials already run,
    so a resumed study does not propose its first configs again."""
    storage = open_storage(settings.storage, create=True, heartbeat=heartbeat)
    study = optuna.create_study(
        study_name=settings.study, storage=storage, direction="maximize", load_if_exists=True,
        sampler=make_sampler(settings.sampler, space, sampler_seed),
        pruner=make_pruner(settings.pruner, settings.epochs, settings.startup_trials, settings.warmup_epochs),
    )
    stored = study.user_attrs.get("search_config")
    if stored is not None:
        conflict = settings.conflict_with(stored)
        if conflict is None and study.user_attrs.get("space") != space.to_dict():
            conflict = (f"--space: study {settings.study!r} was created with another search space; resume it "
                        "with the same space, or start a new study with --study")
        if conflict is not None:
            raise ConfigError(conflict)
    if study.metric_names is None:  # the dashboard's label for the value (else "Objective 0")
        study.set_metric_names(["val_acc"])
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = make_sampler(settings.sampler, space, sampler_seed + 7919 * existing)
    if stored is None:
        study.set_user_attr("search_config", settings.replace(storage=redact(settings.storage)).to_dict())
        study.set_user_attr("space", space.to_dict())
        save_study_note(study, study_note(settings, space, device_label))
    return study


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

    def publish_best(trial: optuna.Trial, value: float, weights: dict[str, torch.Tensor],
                     curves: dict[str, list[float]]) -> None:
        try:  # a full disk must not fail a trial that trained well
            publish_if_best(study, trial, value, weights, curves, folder)
        except OSError as e:
            log(f"trial {trial.number}: could not save best-trial artifacts: {e}")

    objective = Objective(space, settings, data, device, log=log,
                          checkpoints=CheckpointStore(checkpoint_dir(folder, settings.study)),
                          on_complete=publish_best)
    try:
        run_trials(study, objective, settings.trials, space, lambda n: bar.update(n - bar.n),
                   make_strategy(settings, space), should_stop=stop_requested, log=log)
    except KeyboardInterrupt:  # a stop signal, raised by the trainer at a step boundary (or a second signal)
        _requeue(study, objective, settings.max_retry, place.prefix)  # before any output, which may have no reader
        bar.close()
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


def _child_main(settings: dict[str, Any], place: dict[str, Any]) -> None:
    from search.cli import USAGE_ERRORS, silence_optuna_warnings

    silence_optuna_warnings()
    try:
        code = run_worker(SearchConfig.from_dict(settings), WorkerPlace(**place))
    except KeyboardInterrupt:  # stopped before the trial loop began
        code = 130
    except USAGE_ERRORS as e:
        print(f"{place['prefix']}error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


def launch(settings: SearchConfig, workers: int, gpu_ids: list[str], threads: int | None) -> int:
    """Spawn `workers` processes on the study, show the study's progress, stop them all on SIGINT/SIGTERM."""
    survive_closed_pipes()  # the stop below must reach the workers even when our output has no reader
    # Create the study (and the database's tables) here, so the workers only ever open it.
    create_study(settings, load_space(settings.space, settings.task), settings.seed,
                 device_label=f"{workers} x {device_name(resolve_device(settings.device))}")
    ctx = mp.get_context("spawn")
    procs = []
    for i in range(workers):
        place = WorkerPlace(index=i, gpu=gpu_for(i, gpu_ids), threads=threads, prefix=f"[w{i}] ",
                            progress_bar=False, ignore_sigint=True)
        p = ctx.Process(target=_child_main, args=(settings.to_dict(), place.__dict__), name=f"alexsearch-w{i}")
        p.start()
        procs.append(p)
    stop = {"signum": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signum"] = stop["signum"] or signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    storage = None
    bar = tqdm(total=settings.trials, desc="trials", unit="trial", dynamic_ncols=True, file=sys.stderr)
    try:
        while any(p.is_alive() for p in procs) and not stop["signum"]:
            storage, done = _poll(settings, storage)
            if done is not None:
                bar.update(done - bar.n)
            time.sleep(POLL_S)
        if stop["signum"]:
            bar.write(f"stopping {sum(p.is_alive() for p in procs)} workers ({signal.Signals(stop['signum']).name})")
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        storage, done = _poll(settings, storage)
        if done is not None:
            bar.update(done - bar.n)
    finally:
        bar.close()
        for s, handler in old.items():
            signal.signal(s, handler)
    if stop["signum"]:
        return exit_code(stop["signum"])
    # A negative exitcode means killed by that signal: report it as the shell would (128 + signal).
    failed = [p.exitcode if p.exitcode > 0 else 128 - p.exitcode for p in procs if p.exitcode not in (0, None)]
    if storage is not None:
        print_best(load_study(storage, settings.study))
    return failed[0] if failed else 0


def _poll(settings: SearchConfig, storage: Any) -> tuple[Any, int | None]:
    try:
        storage = storage or open_storage(settings.storage, create=False)
        return storage, finished_count(load_study(storage, settings.study))
    except Exception:  # the study may not exist yet while workers start; progress is best effort
        return storage, None
