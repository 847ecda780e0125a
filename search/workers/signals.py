"""SIGTERM and Ctrl-C in a worker: stop the running trial within one training step, as failed and retryable.

The first signal only sets a flag. The trainer checks it before each batch and raises Interrupted (a
KeyboardInterrupt) from that known point, never from inside a database call or a torch kernel; Optuna
marks the trial FAIL and re-raises it, and the worker queues the retry and exits. The worker loop also
checks the flag between trials. A second signal raises at once, for a user who wants out now.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

_requested = 0  # the first stop signal received, 0 while none


class StopRequested(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_requested() -> bool:
    return _requested != 0


def requested_signal() -> int:
    return _requested or signal.SIGINT


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    global _requested
    if _requested:
        raise StopRequested(signum)
    _requested = signum


class _HideStopTracebacks(logging.Filter):
    """Optuna logs every failed trial with its traceback; a requested stop is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt))


def _unraisable(hook: sys.UnraisableHookArgs) -> None:
    """The second signal's exception can land in code whose exceptions Python only prints (a weakref
    callback, a __del__): not an error to show. The flag is set, so the trainer stops at its next step."""
    if not isinstance(hook.exc_value, StopRequested):
        _default_unraisable(hook)


_default_unraisable = sys.unraisablehook


def install_stop_handlers() -> None:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sys.unraisablehook = _unraisable
    for handler in logging.getLogger("optuna").handlers:  # logger filters don't reach child loggers; handlers do
        if not any(isinstance(f, _HideStopTracebacks) for f in handler.filters):
            handler.addFilter(_HideStopTracebacks())


def exit_code(signum: int) -> int:
    return 128 + signum  # the shell's convention for "ended by signal"
