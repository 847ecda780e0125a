"""The parent's display: whole event lines, a count that never passes the budget, this run's rate only, and
no Optuna log lines, on a real 2-worker search piped to a file."""

from __future__ import annotations

import io
import re
import subprocess

import pytest

from search.workers import events
from search.workers.display import Display
from tests.helpers import ALEXSEARCH, ENV


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_count_is_the_studys_capped_at_the_budget_and_the_rate_is_this_runs():
    clock, count = Clock(), {"n": 7}  # 7 trials finished before this run
    out = io.StringIO()
    d = Display(8, lambda: count["n"], workers=2, epochs=3, out=out, tty=False, clock=clock)
    d.tick(force=True)
    clock.t = 60.0
    d.line("[w0] " + events.epoch(7, 3, 1, 0.5, 0.8, 0.75, 10.0, 500.0))
    d.line("[w1] trial 9 skipped: duplicate of trial 2: this config was already trained")  # not counted
    count["n"] = 10  # this run's trial and two from another terminal's workers
    d.line("[w0] " + events.completed(7, 0.8, 3, 3))
    text = out.getvalue()
    assert "progress: 8/8 trials finished" in text  # capped: 10 finished, budget 8
    assert "10/8" not in text and "9/8" not in text
    assert d.finished_here == {7}  # the other process's trials are not this run's
    assert d.rate_per_min() == pytest.approx(1.0)  # 1 trial in 60 s, not the 7 from before this run
    assert "\r" not in text and "\x1b" not in text  # not a terminal: plain lines, no redraws


def test_eta_comes_from_measured_epoch_times_shared_by_the_workers():
    clock = Clock()
    d = Display(4, lambda: 1, workers=2, epochs=3, out=io.StringIO(), tty=False, clock=clock)
    assert d.eta_s() is None  # nothing measured yet
    d.tick(force=True)
    for s in (10.0, 20.0):
        d.line(events.epoch(0, 3, 1, 0.5, 0.8, 0.7, s, 100.0))
    assert d.eta_s() == pytest.approx(3 * 3 * 15.0 / 2)  # 3 trials left x 3 epochs x 15 s / 2 workers


def test_on_a_terminal_the_bar_is_cleared_before_each_line():
    out = io.StringIO()
    d = Display(3, lambda: 1, out=out, tty=True)
    d.tick(force=True)
    d.line("trial 1 started on w0: lr=0.1")
    d.close()
    text = out.getvalue()
    assert "\r\x1b[K[" in text and "\r\x1b[Ktrial 1 started on w0: lr=0.1\n" in text
    assert text.endswith("\n")


def test_event_lines_parse_back():
    assert events.parse("[w3] trial 12 completed: val_acc 0.9 at epoch 2 of 3").finished_trial == 12
    assert events.parse(events.pruned(4, "val_acc 0.1 at epoch 2 fell below")).finished_trial == 4
    assert events.parse(events.in_epoch(1, 3, 2, 10, 100, 50.0)).epoch_seconds is None  # not an epoch time
    assert events.parse(events.epoch(1, 3, 2, 0.1, 0.2, 0.3, 4.5, 60.0)).epoch_seconds == 4.5


KNOWN = [
    r"cost: .+",
    r"progress: \d+/5 trials finished, .+",
    r"best: .+",
    r"\[w[01]\] study 'disp' in .+",
    # a worker that starts after the other has finished the budget (trials of a fraction of a second)
    r"\[w[01]\] study 'disp' already has 5 finished trials \(budget 5\); nothing to do",
    r"\[w[01]\] trial \d+ started on w[01] \(\S+:\d+\): \S+=.+",
    r"\[w[01]\] trial \d+ epoch \d/2: loss .+ img/s",
    r"\[w[01]\] trial \d+ (pruned|skipped|stopped): .+",
    r"\[w[01]\] trial \d+ completed: val_acc [0-9.]+ at epoch \d of \d",
    r"\[w[01]\] new best: trial \d+, val_acc .+",
]


@pytest.mark.slow
def test_two_workers_piped_to_a_file_write_whole_lines(tmp_path):
    log = tmp_path / "search.log"
    with open(log, "w") as f:
        r = subprocess.run(
            [
                ALEXSEARCH,
                "search",
                "--task",
                "mlp-synth",
                "--storage",
                f"sqlite:///{tmp_path}/s.db",
                "--study",
                "disp",
                "--workers",
                "2",
                "--trials",
                "5",
                "--epochs",
                "2",
                "--train-size",
                "1000",
                "--val-size",
                "300",
                "--device",
                "cpu",
                "--pruner",
                "median",
                "--startup-trials",
                "1",
                "--warmup-epochs",
                "0",
            ],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
            env=ENV,
        )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = log.read_text().splitlines()
    unknown = [line for line in lines if not any(re.fullmatch(p, line) for p in KNOWN)]
    assert not unknown, unknown  # every line whole: no two lines run into one, no torn prefix
    assert not re.search(r"^\[[IWE] \d{4}-", log.read_text() + r.stderr, re.M)  # no Optuna log line
    counts = [int(m.group(1)) for line in lines if (m := re.match(r"progress: (\d+)/5", line))]
    assert counts and max(counts) == 5 and counts == sorted(counts)  # never past the budget, never back
    assert sum(bool(re.search(r"trial \d+ started", line)) for line in lines) >= 5
    assert any("new best" in line for line in lines) and lines[-1].startswith(("best:", "progress:"))
    assert "\r" not in log.read_text()  # not a terminal: no bar redraws


def test_lines_only_for_a_log_that_a_watcher_reads():
    out = io.StringIO()
    d = Display(3, lambda: 2, out=out, tty=True, progress=False)
    d.line("trial 1 completed: val_acc 0.5 at epoch 1 of 1")
    d.close()
    assert out.getvalue() == "trial 1 completed: val_acc 0.5 at epoch 1 of 1\n"


def test_a_trial_seen_finishing_counts_before_the_study_has_stored_it():
    out = io.StringIO()
    d = Display(4, lambda: 1, out=out, tty=False)  # the study had 1 finished trial when this run began
    d.tick(force=True)
    d.line("trial 5 completed: val_acc 0.5 at epoch 1 of 1")  # its worker has not told Optuna yet
    assert d.done() == 2 and "progress: 2/4 trials finished" in out.getvalue()
