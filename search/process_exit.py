"""Ending a process without the interpreter's teardown.

With torch loaded (and torch._dynamo, which the optimizers import), the teardown that follows the last line of
a command takes 0.7-0.8 s on a quiet 2-core CPU and seconds on a busy one: clearing thousands of modules' dicts.
It does nothing a finished command needs, so `alexsearch` ends with os._exit once its own cleanup is done: the
output streams flushed, atexit handlers run (multiprocessing's finalizers, logging), and the database
connections closed (storage.rdb.close_all), so nothing is left behind that a plain exit would have removed.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a pipe whose reader is gone (Ctrl-C on `search | tee`), a closed stream
            pass


def exit_now(code: int) -> NoReturn:
    """os._exit(code) after flushing the output streams: for a process whose transactions are all committed."""
    flush_output()
    os._exit(code)


def exit_cleanly(code: int) -> None:
    """End the process with code: its cleanup, then os._exit. Returns (to exit the usual way) only while a
    thread that is not a daemon still runs, which a plain exit would wait for."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        return
    if "storage.rdb" in sys.modules:
        from storage.rdb import close_all

        close_all()
    flush_output()
    atexit._run_exitfuncs()  # what a plain exit runs before the teardown; then nothing is left to run twice
    exit_now(code)
