"""Standard output and error that outlive their reader.

`alexsearch search ... 2>&1 | tee run.log` is the usual way to keep a log, and Ctrl-C reaches tee too, so tee
often dies first. A stop must still queue its retries: a write to a pipe with no reader is dropped here, and the
stream's file descriptor is pointed at /dev/null, so later writes and the flush at exit are dropped as well.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class PipeSafe:
    """A text stream whose writes and flushes ignore a broken pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _to_devnull(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _to_devnull(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _to_devnull(stream: TextIO) -> None:
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not backed by a file descriptor (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def survive_closed_pipes() -> None:
    """Wrap sys.stdout and sys.stderr (once) so that a reader that went away cannot end this process."""
    if not isinstance(sys.stdout, PipeSafe):
        sys.stdout = PipeSafe(sys.stdout)
    if not isinstance(sys.stderr, PipeSafe):
        sys.stderr = PipeSafe(sys.stderr)
