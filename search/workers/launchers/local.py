"""N worker processes on one study (`search --workers N`), which the parent watches and stops together.

The workers are forked by multiprocessing's forkserver, which imports search/workers/preload.py (torch and the
worker's code) once: a worker then starts in milliseconds instead of importing for 3.4 CPU-s. The forkserver is a
fresh interpreter, never the parent, which has asked CUDA for its devices: PyTorch supports CUDA in children of a
forkserver, not in children forked from a process where CUDA has started.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from multiprocessing import forkserver, resource_tracker
from typing import Any

from model.device import device_name, resolve_device
from search.errors import USAGE_ERRORS, one_line, silence_optuna_warnings, user_paths
from search.process_exit import exit_cleanly, exit_now
from search.settings import SearchConfig
from search.space.space import load_space
from search.study.create import create_study
from search.trials.record import best_line
from search.workers.display import Display
from search.workers.placement import gpu_for
from search.workers.run import WorkerPlace, run_worker
from search.workers.safe_output import survive_closed_pipes
from search.workers.signals import exit_code, install_stop_handlers
from search.workers.study_count import StudyCount

PRELOAD = ["search.workers.preload"]
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
STOP_WAIT_S = 30.0  # how long the parent waits for stopped workers before killing them
HURRY_WAIT_S = 2.0  # after a second stop signal: how long workers get to requeue their trials


def _child_main(settings: dict[str, Any], place: dict[str, Any], lines: Any) -> None:
    # The stop signals are blocked from the fork on (see launch): a SIGTERM the parent forwarded meanwhile is
    # pending, and arrives as a stop request once the handler is in place. Ctrl-C reaches the whole process
    # group; the parent forwards it, so a worker ignores its own copy.
    install_stop_handlers()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    silence_optuna_warnings()
    try:
        with user_paths():
            code = run_worker(SearchConfig.from_dict(settings), WorkerPlace(**place), emit=lines.put)
    except KeyboardInterrupt:  # stopped before the trial loop began
        code = 130
    except USAGE_ERRORS as e:
        lines.put(f"{place['prefix']}error: {one_line(e, settings.get('storage'))}")
        code = 2
    lines.close()  # the queue's feeder thread must hand over the last lines before os._exit cuts it off
    lines.join_thread()
    exit_now(code)


@dataclass(frozen=True)
class LocalLauncher:
    """Worker processes on this machine; with GPUs, worker i sees only GPU gpu_ids[i % len(gpu_ids)]."""

    gpu_ids: list[str] = field(default_factory=list)  # CUDA device ids; empty: CPU workers
    threads: int | None = None  # torch CPU threads per worker (None: torch's default)
    deadline: float | None = None  # time.time() after which no new trial starts (search --timeout)
    debug: bool = False  # let Optuna's own log lines through

    def launch(self, settings: SearchConfig, workers: int) -> int:
        """Start `workers` processes on the study and show their lines and the study's progress; stop them all
        on SIGINT/SIGTERM."""
        gpu_ids, threads, deadline, debug = self.gpu_ids, self.threads, self.deadline, self.debug
        survive_closed_pipes()  # the stop below must reach the workers even when our output has no reader
        # Create the study (and the database's tables) here, so the workers only ever open it.
        create_study(
            settings,
            load_space(settings.space, settings.task),
            settings.seed,
            device_label=f"{workers} x {device_name(resolve_device(settings.device))}",
        )
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        lines = ctx.Queue()  # every worker line, whole: one put per line, so lines never interleave
        procs: list[Any] = []
        stop = {"signum": 0, "signals": 0}
        # One token per stop signal not yet forwarded. Each is popped once (list.pop is one step for a signal
        # handler, which runs between two of the main thread's steps) and sent to every worker then: no stop is
        # sent twice, and none is lost while the workers start (procs not yet complete).
        unsent: list[int] = []
        starting = [True]

        def forward_unsent() -> None:
            while True:
                try:
                    unsent.pop()
                except IndexError:
                    return
                for p in procs:
                    if p.pid is not None and p.exitcode is None:
                        os.kill(p.pid, signal.SIGTERM)

        def on_signal(signum: int, _frame: Any) -> None:
            # The first signal asks each worker to stop its trial at the next training step; a second one (a
            # user who wants out now) is forwarded too, and a worker that gets a second stop raises at once.
            stop["signum"] = stop["signum"] or signum
            stop["signals"] += 1
            unsent.append(signum)
            if not starting[0]:
                forward_unsent()

        old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
        # The forkserver, started by the first start(), must keep the stop signals blocked for good, so that a
        # Ctrl-C or a SIGTERM to the whole process group (`timeout`, a Slurm job's end, `kill -- -PGID`) cannot end
        # it and leave this process blind to its workers' exits. It inherits the mask of the thread that starts it,
        # blocked here; its children, the workers, inherit it too and unblock once their handlers are set
        # (_child_main). This process's other threads (OpenBLAS's, CUDA's) still take signals, so on_signal may
        # run during the starts: it only queues its stop until all have started. The resource tracker is
        # started first because its start unblocks both signals in the calling thread.
        resource_tracker.ensure_running()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for i in range(workers):
                place = WorkerPlace(
                    index=i,
                    gpu=gpu_for(i, gpu_ids),
                    threads=threads,
                    prefix=f"[w{i}] ",
                    progress_bar=False,
                    ignore_sigint=True,
                    deadline=deadline,
                    debug=debug,
                    study_exists=True,
                )
                p = ctx.Process(
                    target=_child_main, args=(settings.to_dict(), place.__dict__, lines), name=f"alexsearch-w{i}"
                )
                p.start()
                procs.append(p)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            starting[0] = False
            forward_unsent()  # the stops that came while the workers started reach every worker now
        poller = StudyCount(settings)
        display = Display(settings.trials, poller, workers=workers, epochs=settings.epochs)
        try:
            while any(p.is_alive() for p in procs) and not stop["signum"]:
                _show(lines, display, wait_s=0.5)
                display.tick()
            if stop["signum"]:
                display.line(
                    f"stopping {sum(p.is_alive() for p in procs)} workers ({signal.Signals(stop['signum']).name})"
                )
            deadline_join = time.monotonic() + STOP_WAIT_S
            while any(p.is_alive() for p in procs) and time.monotonic() < deadline_join:
                if stop["signals"] > 1:  # the user wants out now: workers got a second stop, give them a moment
                    deadline_join = min(deadline_join, time.monotonic() + HURRY_WAIT_S)
                _show(lines, display, wait_s=0.05)  # a worker exits only once its queued lines are taken
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join()
            _show(lines, display, wait_s=0.0)
            if poller.study is not None and not stop["signum"]:
                display.line(best_line(poller.study))
        finally:
            display.close(final_count=not stop["signum"])
            if not any(p.is_alive() for p in procs):  # else it ends with this process, after its workers
                _stop_forkserver()
            for s, previous in old.items():
                signal.signal(s, previous)
        if stop["signum"]:  # stopped: out now, not after seconds of teardown a second Ctrl-C would land in
            # exit_cleanly runs the atexit handlers, where multiprocessing removes the forkserver's socket folder
            exit_cleanly(exit_code(stop["signum"]))
            exit_now(exit_code(stop["signum"]))
        # A negative exitcode means killed by that signal: report it as the shell would (128 + signal).
        failed = [p.exitcode if p.exitcode > 0 else 128 - p.exitcode for p in procs if p.exitcode not in (0, None)]
        return failed[0] if failed else 0


def _stop_forkserver() -> None:
    """End the forkserver, now that its workers are gone, and reap it: no process outlives the search, and the
    forkserver's CPU time and its workers' count in this process's children (getrusage), as spawned workers' did.
    ForkServer._stop is CPython's (3.8 to 3.14 at least; its own tests use it); without it the forkserver still
    ends with this process."""
    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _show(lines: Any, display: Display, wait_s: float) -> None:
    """Print every line waiting in the queue; wait up to wait_s for the first."""
    try:
        display.line(lines.get(timeout=wait_s) if wait_s > 0 else lines.get_nowait())
        while True:
            display.line(lines.get_nowait())
    except queue.Empty:
        pass
