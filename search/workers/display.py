"""The parent's view of a running search: one line per worker event, and one progress bar for the study.

Whoever watches the workers drives it: the local launcher (lines from its workers' queue), a single worker
in this process (its own lines), or a Slurm watcher (lines read from the jobs' log files). It is the only
writer to the terminal, so lines never interleave with the bar or with each other.

- The count is the study's finished trials (every worker's, on any host), never shown past the budget.
- The rate is this run's only: trials finished by the workers whose lines come here, since this run began.
- The ETA is the trials left x epochs x the mean epoch time measured in this run, shared by the workers.
  Pruning and patience end trials early, so it is an upper bound.
- On a terminal the bar is redrawn below the lines; elsewhere (a pipe, `| tee`, a log file) there is no bar,
  only a plain progress line each time the count changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from search.workers import events

BAR_WIDTH = 24  # characters
POLL_S = 2.0  # how often the study's count is read, at most


def duration(seconds: float) -> str:
    """90 -> '1m30s', 7300 -> '2h01m'."""
    s = int(round(seconds))
    if s < 1:
        return "under 1s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Display:
    def __init__(
        self,
        budget: int,
        count_finished: Callable[[], int | None],
        *,
        workers: int = 1,
        epochs: int = 1,
        out: TextIO | None = None,
        tty: bool | None = None,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
        progress: bool = True,
    ) -> None:
        """progress=False: event lines only, no bar and no progress lines (a worker whose log a watcher reads)."""
        self.budget, self.count_finished, self.workers, self.epochs = budget, count_finished, workers, epochs
        self.out = out or sys.stdout
        self.tty = progress and (self.out.isatty() if tty is None else tty)
        self.progress = progress
        self.poll_s, self.clock = poll_s, clock
        self.started = clock()
        self.finished_here: set[int] = set()  # trial numbers this run's workers finished
        self.epoch_seconds: list[float] = []  # measured in this run
        self.count: int | None = None  # the study's finished trials, as last read
        self.base: int | None = None  # the count at the first read, before this run's trials finished
        self.shown: int | None = None  # done() as last printed in a plain line
        self._last_poll = float("-inf")
        self._bar_drawn = False

    # --- input ---------------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        """One event line from a worker (or the watcher itself), printed whole."""
        finished = False
        for part in text.rstrip("\n").split("\n"):
            parsed = events.parse(part)
            if parsed.finished_trial is not None:
                self.finished_here.add(parsed.finished_trial)
                finished = True
            if parsed.epoch_seconds is not None:
                self.epoch_seconds.append(parsed.epoch_seconds)
            self._write_line(part)
        if finished:  # the study's count has moved: show it now
            self.tick(force=True)
        elif self.tty:
            self._draw_bar()

    def tick(self, force: bool = False) -> None:
        """Read the study's count if due, and show it."""
        now = self.clock()
        if force or now - self._last_poll >= self.poll_s:
            self._last_poll = now
            count = self.count_finished()
            if count is not None:
                self.count = count
                if self.base is None:
                    self.base = max(0, count - len(self.finished_here))
        if self.tty:
            self._draw_bar()
        elif self.progress and self.count is not None and self.done() != self.shown:
            self.shown = self.done()
            self._write_line(self.status())

    def close(self, final_count: bool = True) -> None:
        """final_count=False: no last read of the study (a user who pressed Ctrl-C wants out now)."""
        if final_count:
            self.tick(force=True)
        if self.tty and self._bar_drawn:
            self.out.write("\n")
            self._bar_drawn = False
        self.out.flush()

    # --- what is shown ---------------------------------------------------------------------------------

    def done(self) -> int:
        """The study's count; a trial this run saw finish counts at once, before its worker has stored it."""
        seen = (self.base or 0) + len(self.finished_here) if self.base is not None else 0
        return min(self.budget, max(self.count or 0, seen))

    def rate_per_min(self) -> float | None:
        elapsed = self.clock() - self.started
        if not self.finished_here or elapsed <= 0:
            return None
        return len(self.finished_here) / elapsed * 60

    def eta_s(self) -> float | None:
        if not self.epoch_seconds:
            return None
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        left = self.budget - self.done()
        return left * self.epochs * mean / self.workers

    def status(self) -> str:
        rate = self.rate_per_min()
        eta = self.eta_s()
        parts = [
            f"progress: {self.done()}/{self.budget} trials finished",
            f"this run {len(self.finished_here)} in {duration(self.clock() - self.started)}"
            + (f" ({rate:.2g} trials/min)" if rate else ""),
        ]
        if eta is not None and self.done() < self.budget:
            parts.append(f"ETA at most {duration(eta)}")
        return ", ".join(parts)

    def bar(self) -> str:
        filled = BAR_WIDTH * self.done() // self.budget
        return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.status().removeprefix('progress: ')}"

    # --- output ------------------------------------------------------------------------------------------

    def _write_line(self, text: str) -> None:
        if self.tty and self._bar_drawn:
            self.out.write("\r\x1b[K")  # clear the bar; it is drawn again below the line
            self._bar_drawn = False
        self.out.write(text + "\n")
        self.out.flush()

    def _draw_bar(self) -> None:
        self.out.write("\r\x1b[K" + self.bar())
        self.out.flush()
        self._bar_drawn = True
