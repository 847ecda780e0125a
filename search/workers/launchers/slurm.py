"""`search --launcher slurm`: the study's workers as a Slurm job array, submitted and watched from here.

It writes the sbatch script (search/workers/launchers/sbatch.py) into the study's artifacts folder, lets Slurm
check it (`sbatch --test-only`: nothing queued), creates the study, submits the array and records the job on
the study (user attr `slurm_job`), then shows the study's progress until the budget is reached or the array
ends. Ctrl-C stops the watching only; the jobs run on. Running the same command again re-attaches to the
study's array while any of its tasks is queued or running, and never submits a second one.

Errors (no sbatch, a partition or account Slurm does not know, a rejected submission) are SlurmError: one line
that quotes Slurm's own message, raised before the study is created or changed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from search.errors import UsageError
from search.settings import SearchConfig
from search.trials import record
from search.trials.record import best_line, finished_count
from search.workers.display import Display
from search.workers.launchers.sbatch import (
    ArrayJob,
    SlurmConfig,
    plural,
    sbatch_script,
    workers_per_task,
    write_script,
)
from search.workers.log_tail import LogTail, array_task_label
from search.workers.study_count import StudyCount
from storage.artifacts import artifact_dir, safe_name
from storage.study import load_study, open_storage, study_names

if TYPE_CHECKING:  # torch: `alexsearch status` reads job_status_line from here and must start without it
    from search.space.space import Space
from storage.url import parse_url, redact, sqlite_path

SLURM_TIMEOUT_S = 60  # for one sbatch / squeue / sacct call
POLL_S = 5.0  # how often the watcher reads the study and asks squeue (kind to a busy slurmctld)
TAIL_S = 0.5  # how often it reads new lines from the tasks' log files
JOB_ATTR = record.SLURM_JOB
# Job states in which a task may still run trials (squeue's long names).
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "CONFIGURING",
        "COMPLETING",
        "SUSPENDED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)


class SlurmError(UsageError):
    """Slurm refused or cannot be reached. The message quotes Slurm and says what to change."""


def _exe(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SlurmError(
            f"--launcher slurm: {name} not found on PATH; run this on a Slurm login node (or use --launcher local)"
        )
    return found


def slurm_message(stderr: str) -> str:
    """Slurm's own words in one line: its message lines without the 'sbatch: error: ' prefixes, joined by '; '
    (e.g. 'invalid partition specified: nope; Batch job submission failed: Invalid partition name specified')."""
    lines = [re.sub(r"^\S+: error: ", "", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    return "; ".join(dict.fromkeys(lines)) or "(no message)"


def _run(cmd: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=SLURM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"--launcher slurm: {Path(cmd[0]).name} did not answer within {SLURM_TIMEOUT_S} s (is slurmctld up?)"
        ) from None


def check_submission(script: Path, env: Mapping[str, str] | None = None) -> None:
    """`sbatch --test-only`: Slurm checks partition, account and resources without queueing anything."""
    r = _run([_exe("sbatch"), "--test-only", str(script)], env)
    if r.returncode != 0:
        raise SlurmError(f"--launcher slurm: sbatch rejected the job: {slurm_message(r.stderr)}")


def submit(script: Path, env: Mapping[str, str] | None = None) -> str:
    """Submit with `sbatch --parsable`; returns the job id (the array's id)."""
    r = _run([_exe("sbatch"), "--parsable", str(script)], env)
    if r.returncode != 0:
        raise SlurmError(f"--launcher slurm: sbatch rejected the job: {slurm_message(r.stderr)}")
    job_id = r.stdout.strip().splitlines()[-1].split(";")[0] if r.stdout.strip() else ""
    if not job_id.isdigit():
        raise SlurmError(f"--launcher slurm: sbatch gave no job id (stdout {r.stdout.strip()!r})")
    return job_id


def task_states(job_id: str) -> dict[str, str]:
    """State of each task of the array, {'12_0': 'RUNNING', ...}: from squeue (which also lists recently ended
    jobs), else from sacct (accounting); {} when Slurm knows the job no more."""
    squeue = shutil.which("squeue")
    if squeue:
        r = _run([squeue, "-h", "-r", "-t", "all", "-j", job_id, "-o", "%i %T"])
        states = dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2)
        if r.returncode == 0 and states:
            return states
    sacct = shutil.which("sacct")
    if sacct:
        r = _run([sacct, "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"])
        if r.returncode == 0:
            # sacct writes "CANCELLED by 0"; keep the state word
            return {
                jid: state.split()[0]
                for jid, state in (line.split("|", 1) for line in r.stdout.splitlines() if "|" in line)
                if state.strip()
            }
    return {}


def is_active(states: Mapping[str, str]) -> bool:
    """True while some task is queued or running (a pending array shows as one line: '12_[0-3]')."""
    return any(state in ACTIVE_STATES for state in states.values())


def state_summary(job_id: str, states: Mapping[str, str]) -> str:
    """'slurm job 12: RUNNING 2, PENDING 1' for `status` and the watcher."""
    if not states:
        return f"slurm job {job_id}: not known to squeue or sacct any more (ended)"
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return f"slurm job {job_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


# --- the launcher ---------------------------------------------------------------------------------------------


def sqlite_warning(settings: SearchConfig) -> str | None:
    """One line for a SQLite study: every task must run on the host holding the file (never on shared NFS)."""
    path = sqlite_path(parse_url(settings.storage))
    if path is None:
        return None
    return (
        f"warning: --launcher slurm with SQLite: every array task must run on this host, which holds "
        f"{path}; SQLite's locks are not safe on a network filesystem, so for a cluster use a PostgreSQL "
        "--storage URL (docs/slurm.md)"
    )


def existing_study(settings: SearchConfig) -> optuna.Study | None:
    """The study if it exists, read without creating or changing anything."""
    try:
        storage = open_storage(settings.storage, create=False)
        return load_study(storage, settings.study) if settings.study in study_names(storage) else None
    except ValueError:  # StorageError: no database file, or no tables in it yet
        return None


def recorded_job(study: optuna.Study | None) -> dict[str, Any] | None:
    job = study.user_attrs.get(JOB_ATTR) if study is not None else None
    return job if isinstance(job, dict) and job.get("job_id") else None


def launch_slurm(
    settings: SearchConfig, space: Space, slurm: SlurmConfig, tasks: int, workers_per_gpu: int = 1, detach: bool = False
) -> int:
    """Submit the study's array (or re-attach to the one running), then watch it unless detach. Exit code."""
    folder = artifact_dir(settings.storage, settings.artifacts).expanduser().absolute()
    job = ArrayJob(settings, slurm, tasks, workers_per_gpu, workdir=Path.cwd(), log_dir=folder / "slurm")
    sbatch_script(job)  # device, GPUs and settings are checked here, before anything is written
    study = existing_study(settings)
    if study is not None:
        stored = study.user_attrs.get(record.SEARCH_CONFIG)
        conflict = settings.conflict_with(stored) if stored is not None else None
        if conflict is not None:
            raise UsageError(conflict)
        done = finished_count(study)
        if done >= settings.trials:
            print(
                f"study {settings.study!r} already has {done} finished trials (budget {settings.trials}); "
                "nothing to submit"
            )
            return 0
    running = recorded_job(study)
    if running is not None:
        states = task_states(running["job_id"])
        if is_active(states):
            print(
                f"study {settings.study!r} already has Slurm job {running['job_id']} queued or running "
                f"({state_summary(running['job_id'], states).split(': ', 1)[1]}); not submitting another"
            )
            return _follow(settings, running, detach, reattach=True)
    _exe("sbatch")
    script = write_script(job, job.log_dir / f"{safe_name(settings.study)}-array.sh")
    check_submission(script, job.submit_env())  # Slurm's verdict before the study is created or changed
    warning = sqlite_warning(settings)
    if warning:
        print(warning, file=sys.stderr)
    per_task = workers_per_task(slurm, workers_per_gpu)
    from search.study.create import create_study

    study = create_study(
        settings,
        space,
        settings.seed,
        device_label=f"Slurm array: {plural(tasks, 'task')} x {plural(per_task, 'worker')}, "
        f"{plural(slurm.gpus_per_worker, 'GPU')} per task",
    )
    job_id = submit(script, job.submit_env())
    submitted = {
        "job_id": job_id,
        "tasks": tasks,
        "workers_per_task": per_task,
        "script": str(script),
        "log_dir": str(job.log_dir),
        "submitted": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    study.set_user_attr(JOB_ATTR, submitted)
    print(
        f"submitted Slurm job {job_id}: {plural(tasks, 'array task')} x {plural(per_task, 'worker')} on study "
        f"{settings.study!r} in {redact(settings.storage)}"
    )
    print(f"script: {script}")
    print(f"logs:   {job.log_dir}/{job.name}-{job_id}_<task>.out")
    return _follow(settings, submitted, detach)


@dataclass(frozen=True)
class SlurmLauncher:
    """A Slurm job array of `workers` tasks (search/workers/launchers/base.py's Launcher)."""

    space: Space
    slurm: SlurmConfig = SlurmConfig()
    workers_per_gpu: int = 1  # workers in each task per GPU it asks for
    detach: bool = False  # return once submitted

    def launch(self, settings: SearchConfig, workers: int) -> int:
        return launch_slurm(settings, self.space, self.slurm, workers, self.workers_per_gpu, self.detach)


def _follow(settings: SearchConfig, job: Mapping[str, Any], detach: bool, reattach: bool = False) -> int:
    job_id = job["job_id"]
    if detach:
        print(
            f"detached: run the same command again to watch it, `alexsearch status` to see it; "
            f"cancel with: scancel {job_id}"
        )
        return 0
    workers = int(job.get("tasks") or 1) * int(job.get("workers_per_task") or 1)
    return watch(
        settings, job_id, Path(job["log_dir"]) if job.get("log_dir") else None, workers=workers, reattach=reattach
    )


def watch(
    settings: SearchConfig,
    job_id: str,
    log_dir: Path | None = None,
    poll_s: float = POLL_S,
    workers: int = 1,
    reattach: bool = False,
) -> int:
    """The study's progress (search/workers/display.py, as `--workers N` shows it locally) and the workers'
    event lines, tailed from the array tasks' log files in log_dir, until the study reaches its budget (0) or
    the array ends short of it (1). Ctrl-C stops watching and leaves the jobs running (130).
    reattach: the logs' earlier lines are not shown again, only what the workers write from now on."""
    count = StudyCount(settings)
    display = Display(settings.trials, count, workers=workers, epochs=settings.epochs)
    name = ArrayJob(settings, SlurmConfig(), 1).name
    tail = (
        LogTail(log_dir, f"{glob.escape(name)}-{job_id}_*.out", array_task_label, from_end=reattach)
        if log_dir is not None
        else None
    )
    summary = ""
    last_squeue = float("-inf")
    try:
        while True:
            for line in tail.lines() if tail else ():
                display.line(line)
            if time.monotonic() - last_squeue >= poll_s:
                last_squeue = time.monotonic()
                display.tick(force=True)
                states = task_states(job_id)
                if state_summary(job_id, states) != summary:
                    summary = state_summary(job_id, states)
                    display.line(summary)
                if (display.count is not None and display.count >= settings.trials) or not is_active(states):
                    break
            else:
                display.tick()
            time.sleep(min(TAIL_S, poll_s))
        for line in tail.lines() if tail else ():  # what the workers wrote up to the end
            display.line(line)
    except KeyboardInterrupt:
        display.close(final_count=False)
        print(
            f"stopped watching; Slurm job {job_id} keeps running. Watch again: the same command; "
            f"cancel: scancel {job_id}",
            file=sys.stderr,
        )
        return 130
    done = count()
    done = done if done is not None else display.count or 0
    if done >= settings.trials and count.study is not None:
        display.line(best_line(count.study))
        display.close(final_count=False)
        return 0
    display.close(final_count=False)
    print(
        f"{summary}: the array ended with {done}/{settings.trials} trials finished; see its logs, then run "
        "the same command to submit a new array (stopped trials resume from their checkpoints)",
        file=sys.stderr,
    )
    return 1


def job_status_line(study: optuna.Study) -> str | None:
    """For `alexsearch status`: the study's Slurm array and its tasks' states, or None if it has none."""
    job = recorded_job(study)
    if job is None:
        return None
    job_id = job["job_id"]
    try:
        summary = state_summary(job_id, task_states(job_id)).split(": ", 1)[1]
    except SlurmError as e:
        summary = f"state unknown ({e})"
    return f"slurm: job {job_id}, {job.get('tasks', '?')} array tasks: {summary}; script {job.get('script')}"
