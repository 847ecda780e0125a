"""SIGTERM and Ctrl-C in a worker: stop the running trial now, as failed and retryable.

The handler raises StopRequested, a KeyboardInterrupt, in the main thread. Optuna marks the
running trial FAIL and re-raises it; the worker then queues the trial's retry and exits. Database
writes are transactions, so an interrupted one rolls back, and the last checkpoint stays on disk.
"""

from __future__ import annotations

import signal
from types import FrameType


class StopRequested(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    # One stop is enough: ignore repeats while the worker cleans up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise StopRequested(signum)


def install_stop_handlers() -> None:
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)


def exit_code(signum: int) -> int:
    return 128 + signum  # the shell's convention for "ended by signal"
