"""LogTail: the Slurm watcher's reader of the array tasks' log files (only whole lines, offsets kept, a requeued
task's appended lines, a re-attaching watcher skipping what was already there)."""

from __future__ import annotations

from search.workers.log_tail import LogTail, array_task_label


def test_only_whole_lines_each_once_and_a_requeued_task_appends(tmp_path):
    tail = LogTail(tmp_path, "alexsearch-arr-12_*.out", array_task_label)
    assert tail.lines() == []  # no files yet
    t0, t1 = tmp_path / "alexsearch-arr-12_0.out", tmp_path / "alexsearch-arr-12_1.out"
    (tmp_path / "alexsearch-arr-99_0.out").write_text("another job's line\n")
    t0.write_text("trial 0 started on w0 (h:1): lr=0.1\ntrial 0 epo")
    assert tail.lines() == ["[task 0] trial 0 started on w0 (h:1): lr=0.1"]
    assert tail.lines() == []  # the half line waits for its end
    with t0.open("a") as f:
        f.write("ch 1/2: loss 1.0000 train_acc 0.5000 val_acc 0.5000 0.1s 4000 img/s\n")
    t1.write_text("trial 1 started on w1 (h:2): lr=0.2\n")
    assert tail.lines() == [
        "[task 0] trial 0 epoch 1/2: loss 1.0000 train_acc 0.5000 val_acc 0.5000 0.1s 4000 img/s",
        "[task 1] trial 1 started on w1 (h:2): lr=0.2",
    ]
    with t0.open("a") as f:  # the task was requeued: its new run appends to the same file
        f.write("alexsearch: task 12_0 (job 13) on h, restart 1\ntrial 0 completed: val_acc 0.5000 at epoch 1 of 2\n")
    assert tail.lines() == [
        "[task 0] alexsearch: task 12_0 (job 13) on h, restart 1",
        "[task 0] trial 0 completed: val_acc 0.5000 at epoch 1 of 2",
    ]


def test_a_reattaching_watcher_skips_the_lines_already_written_but_not_a_half_line(tmp_path):
    log = tmp_path / "alexsearch-arr-12_10.out"
    log.write_text("old line\ntrial 3 comp")
    tail = LogTail(tmp_path, "alexsearch-arr-12_*.out", array_task_label, from_end=True)
    with log.open("a") as f:
        f.write("leted: val_acc 0.5000 at epoch 1 of 2\n")
    assert tail.lines() == ["[task 10] trial 3 completed: val_acc 0.5000 at epoch 1 of 2"]
    log.write_text("rewritten\n")  # shorter than what was read: read again from its start
    assert tail.lines() == ["[task 10] rewritten"]
