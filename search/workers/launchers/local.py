"""N spawned worker processes on one study (`search --workers N`), which the parent watches and stops together."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any

from tqdm import tqdm

from model.device import device_name, resolve_device
from search.errors import USAGE_ERRORS, silence_optuna_warnings
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.create import create_study
from search.workers.loop import finished_count_in
from search.workers.placement import gpu_for
from search.workers.run import WorkerPlace, print_best, run_worker
from search.workers.signals import exit_code
from storage.study import load_study, open_storage

STOP_WAIT_S = 30.0  # how long the parent waits for stopped workers before killing them
POLL_S = 2.0  # how often the parent reads the study to update its progress bar


def _child_main(settings: dict[str, Any], place: dict[str, Any]) -> None:
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
            storage, done = poll_progress(settings.storage, settings.study, storage)
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
        storage, done = poll_progress(settings.storage, settings.study, storage)
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


def poll_progress(url: str, study: str, storage: Any) -> tuple[Any, int | None]:
    """(storage to pass to the next poll, finished trials of the study): one count query, not a study load."""
    try:
        storage = storage or open_storage(url, create=False)
        return storage, finished_count_in(storage, storage.get_study_id_from_name(study))
    except Exception:  # the study may not exist yet while workers start; progress is best effort
        return storage, None
