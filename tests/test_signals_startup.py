"""Signals at awkward moments (issue 14, class 11): Ctrl-C during start-up, a second Ctrl-C, a paused worker.

- Ctrl-C while `alexsearch` is still importing torch, or while its workers start, prints one line, no
  traceback; a SIGTERM while the workers' forkserver imports torch reaches every worker once started.
- A second Ctrl-C stops `search --workers 2` at once, even while the workers are in a long evaluation that
  the first stop waits for (14.9 s was measured before).
- A worker paused (SIGSTOP) past the grace period is declared dead and its trial retried by the other worker;
  once continued, it says so in one line and goes on, and `search` exits 0 when the study is finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage.study import open_storage
from tests.helpers import ALEXSEARCH, ENV, child_pids, worker_pids


class Run:
    """`alexsearch ARGS` in its own process group (as in a terminal), its output collected as it comes."""

    def __init__(self, *args: str, env: dict[str, str] = ENV) -> None:
        self.proc = subprocess.Popen(
            [ALEXSEARCH, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None  # PIPE
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def ctrl_c(self) -> None:
        """A terminal's Ctrl-C: SIGINT to every process of the group, workers included."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"exited before {what}: {self.output[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.output[-3000:]}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self._reader.join(10)

    def workers(self) -> list[int]:
        return worker_pids(self.proc.pid)


def search_args(url: str, art: Path, *extra: str) -> list[str]:
    return [
        "search",
        "--task",
        "mlp-synth",
        "--storage",
        url,
        "--study",
        "sig",
        "--device",
        "cpu",
        "--artifacts",
        str(art),
        *extra,
    ]


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name="sig", storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def test_ctrl_c_while_importing_is_one_line(db_url, tmp_path):
    run = Run(*search_args(db_url, tmp_path / "art", "--trials", "1", "--epochs", "1"))
    time.sleep(0.4)  # torch and optuna take seconds to import
    run.ctrl_c()
    rc = run.finish(60)
    assert "Traceback" not in run.output and "KeyboardInterrupt" not in run.output, run.output[-3000:]
    assert rc == 130 and run.output.strip().splitlines()[-1].endswith("interrupted"), run.output[-3000:]


@pytest.mark.slow
def test_ctrl_c_while_spawned_workers_import_is_quiet(db_url, tmp_path):
    run = Run(
        *search_args(
            db_url,
            tmp_path / "art",
            "--workers",
            "2",
            "--trials",
            "4",
            "--epochs",
            "1",
            "--train-size",
            "300",
            "--val-size",
            "200",
        )
    )
    run.wait_for(lambda: len(run.workers()) == 2, 150, "the workers to start")  # after the study is created
    time.sleep(0.5)  # they are starting: opening the study (torch came imported with the fork)
    run.ctrl_c()
    rc = run.finish(60)
    assert "Traceback" not in run.output and "KeyboardInterrupt" not in run.output, run.output[-3000:]
    assert rc == 128 + signal.SIGINT, run.output[-3000:]
    assert not [t for t in trials(db_url) if t.state == TrialState.RUNNING]


@pytest.mark.slow
def test_sigterm_while_the_forkserver_imports_reaches_every_worker(db_url, tmp_path):
    """search blocks the stop signals in the thread that starts the workers, not in its other threads (OpenBLAS's,
    which OMP_NUM_THREADS unset leaves running), so a SIGTERM can be taken while the forkserver still imports and
    no worker exists: it must reach each worker once started. A lost stop would let them train for minutes."""
    env = {k: v for k, v in ENV.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    long_trials = ("--trials", "4", "--epochs", "200", "--pruner", "none", "--patience", "0")
    run = Run(*search_args(db_url, tmp_path / "art", "--workers", "2", *long_trials, "--train-size", "20000"), env=env)
    run.wait_for(lambda: child_pids(run.proc.pid, b"forkserver") and not run.workers(), 150, "the forkserver to start")
    os.kill(run.proc.pid, signal.SIGTERM)
    rc = run.finish(45)
    assert rc == 128 + signal.SIGTERM, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    after = trials(db_url)
    assert not [t for t in after if t.state == TrialState.RUNNING]
    failed = {t.number for t in after if t.state == TrialState.FAIL}
    assert {t.system_attrs.get("failed_trial") for t in after if t.state == TrialState.WAITING} == failed


@pytest.mark.slow
def test_second_ctrl_c_stops_two_workers_at_once(db_url, tmp_path):
    """Each epoch evaluates 6 million points (seconds on a CPU): a first Ctrl-C during that evaluation waits
    for its end; a second one must not."""
    art = tmp_path / "art"
    run = Run(
        *search_args(
            db_url,
            art,
            "--workers",
            "2",
            "--trials",
            "4",
            "--epochs",
            "50",
            "--pruner",
            "none",
            "--patience",
            "0",
            "--train-size",
            "300",
            "--val-size",
            "6000000",
            "--checkpoint-every",  # every epoch: the test waits for a checkpoint
            "0",
        )
    )
    folder = art / "checkpoints"
    run.wait_for(lambda: len(list(folder.glob("*/trial-*.pt"))) == 2, 240, "both workers' first checkpoint")
    run.ctrl_c()  # both workers are evaluating epoch 2 now (its 300 training points take milliseconds)
    time.sleep(0.5)
    sent = time.monotonic()
    run.ctrl_c()
    rc = run.finish(60)
    took = time.monotonic() - sent
    print(f"second Ctrl-C: search --workers 2 ended {took:.1f} s after it")
    assert took < 4, f"a second Ctrl-C took {took:.1f} s to stop the workers"
    assert "Traceback" not in run.output, run.output[-3000:]
    assert rc in (128 + signal.SIGINT, -signal.SIGINT)  # a shell reports either as 130
    after = trials(db_url)
    assert not [t for t in after if t.state == TrialState.RUNNING]
    failed = {t.number for t in after if t.state == TrialState.FAIL}
    assert (
        len(failed) == 2
        and {t.system_attrs.get("failed_trial") for t in after if t.state == TrialState.WAITING} == failed
    )  # each stopped trial is queued


@pytest.mark.slow
def test_worker_paused_past_the_grace_period_goes_on_when_continued(db_url, tmp_path):
    art = tmp_path / "art"
    run = Run(
        *search_args(
            db_url,
            art,
            "--workers",
            "2",
            # enough trials that w1 is still starting new ones (each start checks heartbeats) when w0's
            # 6 s grace period runs out: on a quiet machine 6 trials were done before that
            "--trials",
            "16",
            "--epochs",
            "3",
            "--pruner",
            "none",
            "--patience",
            "0",
            "--train-size",
            "60000",
            "--val-size",
            "300",
            "--heartbeat-interval",
            "1",
            "--grace-period",
            "6",
            "--checkpoint-every",  # every epoch: the test needs a checkpoint to kill or resume from
            "0",
        )
    )
    # Pause w0 just after it reported an epoch: it is training then (seconds of 60,000 points), not inside a
    # database transaction, whose lock would stop the other worker too (SQLite has one writer at a time).
    run.wait_for(
        lambda: any(line.startswith("[w0] trial") and " epoch " in line for line in run.lines),
        240,
        "w0 to train an epoch",
    )
    paused = min(run.workers())  # w0 was spawned first
    os.kill(paused, signal.SIGSTOP)
    try:
        run.wait_for(
            lambda: any(t.state == TrialState.FAIL for t in trials(db_url)),
            90,
            "the other worker to fail the paused worker's trial as dead",
        )
    finally:
        os.kill(paused, signal.SIGCONT)
    rc = run.finish(240)
    assert rc == 0, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "by another process while it ran here; stopped it, going on" in run.output, run.output[-3000:]
    after = trials(db_url)
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state == TrialState.COMPLETE for t in after) >= 6
