"""`alexsearch search --launcher slurm` on a real single-node Slurm (tests/slurm_cluster.py): a 2-task array fills
a study on SQLite and PostgreSQL; `scontrol requeue` mid-trial resumes the trial from its checkpoint; `scancel`
of the array queues the stopped trials, and the next submission finishes them; --detach and Ctrl-C, then
re-attach; a bad partition is one line, exit 2, nothing queued, the study unchanged."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.workers.launchers.slurm import JOB_ATTR, is_active, task_states
from storage.artifacts import checkpoint_dir, safe_name
from storage.study import open_storage
from tests.helpers import ALEXSEARCH, CHECKPOINT_EVERY_EPOCH, FAST_HEARTBEAT, NO_EARLY_STOP, digest, run_cli

pytestmark = pytest.mark.slow

# mlp-synth on the CPU: 400 points train an epoch in milliseconds; 40,000 take about a second, long enough to
# stop a trial in its middle.
QUICK = [
    "--task",
    "mlp-synth",
    "--device",
    "cpu",
    "--epochs",
    "2",
    "--train-size",
    "400",
    "--val-size",
    "100",
    *NO_EARLY_STOP,
    *FAST_HEARTBEAT,
    *CHECKPOINT_EVERY_EPOCH,  # the tests need a checkpoint to kill or resume from
]
SLOW_EPOCHS = ["--epochs", "6", "--train-size", "40000"]
# Two tasks of one array start up to seconds apart, and a 6-epoch trial can be over by then: trials that must be
# training at the same time get 20 epochs.
OVERLAPPING_EPOCHS = ["--epochs", "20", "--train-size", "40000"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}  # now: the slurm_cluster fixture sets SLURM_CONF


def search(tmp_path: Path, storage: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`alexsearch search --launcher slurm` run from tmp_path (the jobs' working folder), as a user would."""
    return subprocess.run(
        [
            ALEXSEARCH,
            "search",
            "--launcher",
            "slurm",
            "--storage",
            storage,
            "--study",
            "arr",
            *QUICK,
            "--artifacts",
            str(tmp_path / "art"),
            *extra,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


def search_here(tmp_path: Path, storage: str, *extra: str) -> subprocess.CompletedProcess:
    """search(...) run in this process, for the commands that return at once (a refused or a --detach
    submission): what they print and do, without a second interpreter importing torch. The Slurm tasks they
    submit are real processes all the same."""
    out, err = io.StringIO(), io.StringIO()
    args = ["search", "--launcher", "slurm", "--storage", storage, "--study", "arr", *QUICK]
    args += ["--artifacts", str(tmp_path / "art"), *extra]
    with contextlib.chdir(tmp_path), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(args)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="arr", storage=open_storage(url, create=False))


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def job_of(url: str) -> str:
    return load(url).user_attrs[JOB_ATTR]["job_id"]


def submitted(url: str) -> bool:
    """The study exists and holds its array's job id (False while the search is still creating it)."""
    try:
        return JOB_ATTR in load(url).user_attrs
    except (ValueError, KeyError):  # no database or no study yet
        return False


def logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((tmp_path / "art" / "slurm").glob("*.out")))


def wait_ended(cluster, job_id: str, tmp_path: Path, timeout: float = 90) -> None:
    try:
        cluster.wait_for(lambda: not is_active(task_states(job_id)), timeout, f"array {job_id} to end")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n--- job output\n{logs(tmp_path)[-4000:]}") from None


def arrays(cluster) -> set[str]:
    """Every array job id the controller has seen (finished ones too)."""
    return {job.split("_")[0] for job, _ in cluster.jobs()}


def test_bad_partition_is_one_line_exit_2_nothing_queued_study_unchanged(slurm_cluster, tmp_path):
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    r = search_here(tmp_path, url, "--slurm-partition", "nope")
    assert r.returncode == 2 and r.stderr == (
        "alexsearch search: error: --launcher slurm: sbatch rejected the job: invalid partition specified: nope; "
        "allocation failure: Invalid partition name specified\n"
    )
    assert not db.exists()  # nothing created
    optuna.create_study(study_name="arr", storage=open_storage(url, create=True))
    before = digest(db)
    r = search_here(tmp_path, url, "--slurm-partition", "nope", "--detach")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Invalid partition name" in r.stderr
    assert digest(db) == before  # an existing study is left as it was
    assert slurm_cluster.jobs() == []  # sbatch --test-only queues nothing and keeps no record


def assert_workers_lines_shown(out: str, tmp_path: Path, budget: int) -> None:
    """The watcher shows the workers' event lines (read from the tasks' logs) whole, marked with their task, a
    progress count never past the budget, and no Optuna log line."""
    shown = [line for line in out.splitlines() if line.startswith("[task ")]
    by_task = {
        p.name.rsplit("_", 1)[1].removesuffix(".out"): set(p.read_text().splitlines())
        for p in (tmp_path / "art" / "slurm").glob("*.out")
    }
    for line in shown:  # each one whole, as its task wrote it
        task, text = line.removeprefix("[task ").split("] ", 1)
        assert text in by_task[task], line
    started = re.findall(r"^\[task [01]\] trial (\d+) started on w[01] \(", out, re.M)
    completed = re.findall(r"^\[task [01]\] trial (\d+) completed: val_acc [0-9.]+ at epoch \d of \d$", out, re.M)
    epochs = re.findall(r"^\[task [01]\] trial \d+ epoch \d/2: loss .* img/s$", out, re.M)
    assert len(set(completed)) >= budget and set(completed) <= set(started) and epochs, out
    assert re.search(r"^\[task [01]\] new best: trial \d+, val_acc ", out, re.M), out
    counts = [int(n) for n in re.findall(r"^progress: (\d+)/(?:\d+) trials finished", out, re.M)]
    assert counts and max(counts) <= budget and f"progress: {budget}/{budget} trials finished" in out, out
    assert not re.search(r"^(\[task \d+\] )?\[[IWE] \d{4}-", out, re.M), out  # Optuna's log format


def test_two_task_array_fills_the_study_and_each_trial_names_its_job(slurm_cluster, tmp_path, storage_url, capsys):
    started = time.monotonic()
    r = search(tmp_path, storage_url, "--workers", "2", "--trials", "4")
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr + logs(tmp_path)[-3000:]
    job_id = job_of(storage_url)
    script = tmp_path / "art" / "slurm" / f"{safe_name('arr')}-array.sh"
    assert f"submitted Slurm job {job_id}: 2 array tasks x 1 worker on study" in r.stdout
    assert f"script: {script}" in r.stdout and "best: trial" in r.stdout
    assert ("warning: --launcher slurm with SQLite" in r.stderr) == storage_url.startswith("sqlite")
    assert "#SBATCH --array=0-1" in script.read_text()
    assert_workers_lines_shown(r.stdout, tmp_path, budget=4)
    study = load(storage_url)
    done = finished(study)
    assert 4 <= len(done) <= 5  # the budget; one more at most from the other task's last trial
    assert {t.user_attrs["slurm_job_id"] for t in done} <= {f"{job_id}_0", f"{job_id}_1"}
    assert all(t.user_attrs["host"] == slurm_cluster.node for t in done)
    assert {t.user_attrs["slurm_array_task_id"] for t in done} <= {"0", "1"}
    wait_ended(slurm_cluster, job_id, tmp_path)
    assert not [t for t in load(storage_url).get_trials() if t.state == TrialState.RUNNING]
    assert set(task_states(job_id).values()) == {"COMPLETED"}
    capsys.readouterr()
    assert run_cli(["status", "--storage", storage_url, "--study", "arr"]) == 0
    assert f"slurm: job {job_id}, 2 array tasks: COMPLETED 2; script {script}" in capsys.readouterr().out
    print(
        f"2-task array on {storage_url.split(':')[0]}: `search --launcher slurm --workers 2 --trials 4` "
        f"took {took:.1f} s"
    )


def test_a_password_url_reaches_the_workers_only_through_their_environment(slurm_cluster, tmp_path, pg_url):
    """A URL with a password is in neither the script nor a worker's command line (`ps` shows every user's): the
    workers get --storage env:ALEXSEARCH_STORAGE, which sbatch carries into the job. The test server trusts
    localhost, so it ignores the password; the study is reached only if the URL got through."""
    url = pg_url.replace("://postgres@", "://postgres:s3cretPW@", 1)
    assert url != pg_url
    r = search(tmp_path, url, "--workers", "1", "--trials", "1")
    assert r.returncode == 0, r.stdout + r.stderr + logs(tmp_path)[-3000:]
    script = (tmp_path / "art" / "slurm" / f"{safe_name('arr')}-array.sh").read_text()
    assert "s3cretPW" not in script and "--storage env:ALEXSEARCH_STORAGE" in script
    assert "s3cretPW" not in r.stdout + r.stderr + logs(tmp_path)
    assert len(finished(load(url))) == 1
    wait_ended(slurm_cluster, job_of(url), tmp_path)


def test_requeue_mid_trial_resumes_from_the_checkpoint(slurm_cluster, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    started = time.monotonic()
    r = search_here(tmp_path, url, "--workers", "1", "--trials", "1", *SLOW_EPOCHS, "--detach")
    assert r.returncode == 0, r.stderr
    job_id = job_of(url)
    assert "detached: run the same command again to watch it" in r.stdout
    ckpt = checkpoint_dir(tmp_path / "art", "arr") / "trial-0.pt"
    slurm_cluster.wait_for(ckpt.exists, 60, "the first checkpoint")
    slurm_cluster.run("scontrol", "requeue", f"{job_id}_0")  # as a preemption would: SIGTERM, then requeued
    r = search(tmp_path, url, "--workers", "1", "--trials", "1", *SLOW_EPOCHS)  # re-attach and watch
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr + logs(tmp_path)[-3000:]
    assert f"already has Slurm job {job_id} queued or running" in r.stdout
    wait_ended(slurm_cluster, job_id, tmp_path)
    first, *retries = load(url).get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["slurm_restart_count"] == "0"
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    retry = retries[0]
    assert retry.user_attrs["slurm_job_id"] == f"{job_id}_0" and retry.user_attrs["slurm_restart_count"] == "1"
    resumed_epoch = retry.user_attrs["resumed_from"]["epoch"]
    assert retry.user_attrs["resumed_from"]["trial"] == 0 and 1 <= resumed_epoch < 6
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5, 6]
    out = logs(tmp_path)
    assert "stopped: trial 0 failed and queued for retry" in out
    assert f"resuming trial 0 after epoch {resumed_epoch}" in out
    assert f"trial {retry.number} epoch {resumed_epoch + 1}/6" in out  # only the epoch in flight was redone
    assert task_states(job_id) == {f"{job_id}_0": "COMPLETED"}
    assert not ckpt.exists()
    print(
        f"requeue: trial 0 resumed as trial {retry.number} from its epoch-{resumed_epoch} checkpoint "
        f"(training on at epoch {resumed_epoch + 1}); {took:.1f} s from submission to the study complete"
    )


def test_scancel_of_the_array_queues_the_stopped_trials_and_the_next_submission_finishes_them(slurm_cluster, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["--workers", "2", "--trials", "2", *OVERLAPPING_EPOCHS, "--max-retry", "3"]
    r = search_here(tmp_path, url, *args, "--detach")
    assert r.returncode == 0, r.stderr
    first_job = job_of(url)
    folder = checkpoint_dir(tmp_path / "art", "arr")
    slurm_cluster.wait_for(lambda: len(list(folder.glob("trial-*.pt"))) == 2, 60, "both trials to checkpoint")
    running = {t.number for t in load(url).get_trials() if t.state == TrialState.RUNNING}
    slurm_cluster.run("scancel", first_job)
    wait_ended(slurm_cluster, first_job, tmp_path)
    trials = load(url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = {t.number for t in trials if t.state == TrialState.FAIL}
    finished = {t.number for t in trials if t.state == TrialState.COMPLETE}
    # Both were training when both had a checkpoint; on a slow machine one may finish its last epoch before the
    # scancel lands. Every other trial is stopped, and failed for retry, not lost.
    assert stopped and stopped <= running and stopped | finished == {0, 1}, (running, stopped, finished)
    assert {t.system_attrs.get("failed_trial") for t in trials if t.state == TrialState.WAITING} == stopped
    assert set(task_states(first_job).values()) == {"CANCELLED"}

    r = search(tmp_path, url, *args)  # the array is over: a new one is submitted and finishes the retries
    assert r.returncode == 0, r.stdout + r.stderr + logs(tmp_path)[-3000:]
    second_job = job_of(url)
    assert second_job != first_job and f"submitted Slurm job {second_job}" in r.stdout
    trials = load(url).get_trials()
    resumed = [t for t in trials if t.state == TrialState.COMPLETE and "resumed_from" in t.user_attrs]
    assert {t.user_attrs["resumed_from"]["trial"] for t in resumed} == stopped
    assert all(t.user_attrs["slurm_job_id"].startswith(f"{second_job}_") for t in resumed)
    wait_ended(slurm_cluster, second_job, tmp_path)
    assert not [t for t in load(url).get_trials() if t.state == TrialState.RUNNING]


def test_ctrl_c_leaves_the_array_running_and_the_same_command_reattaches(slurm_cluster, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["--workers", "1", "--trials", "2", *SLOW_EPOCHS]
    cmd = [
        ALEXSEARCH,
        "search",
        "--launcher",
        "slurm",
        "--storage",
        url,
        "--study",
        "arr",
        *QUICK,
        "--artifacts",
        str(tmp_path / "art"),
        *args,
    ]
    before = arrays(slurm_cluster)
    watcher = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        slurm_cluster.wait_for(lambda: submitted(url), 60, "the submission")
        time.sleep(1)  # into the watching loop
        watcher.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    job_id = job_of(url)
    task = f"{job_id}_0"
    assert watcher.returncode == 130, err
    assert f"stopped watching; Slurm job {job_id} keeps running" in err and f"scancel {job_id}" in err
    assert is_active(task_states(job_id))
    # Hold the task still (SIGSTOP to its processes) so that it is surely running when the commands below start,
    # however slowly this machine starts them.
    slurm_cluster.wait_for(lambda: task_states(job_id).get(task) == "RUNNING", 60, "the task to run")
    slurm_cluster.run("scontrol", "suspend", task)

    r = search_here(tmp_path, url, *args, "--detach")  # a second submission while the first runs? never
    assert r.returncode == 0, r.stderr
    assert f"already has Slurm job {job_id} queued or running (SUSPENDED 1); not submitting another" in r.stdout
    assert "submitted" not in r.stdout
    watcher = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )  # the same command again: re-attach, watch to the end
    try:
        first = watcher.stdout.readline()
        assert f"already has Slurm job {job_id} queued or running" in first, first
        slurm_cluster.run("scontrol", "resume", task)
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, out + err + logs(tmp_path)[-3000:]
    assert "best: trial" in out and len(finished(load(url))) == 2
    assert job_of(url) == job_id and arrays(slurm_cluster) - before == {job_id}  # one array, ever
    wait_ended(slurm_cluster, job_id, tmp_path)
