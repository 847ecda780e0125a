"""The sbatch script of a study's job array: what each task asks Slurm for (SlurmConfig), the worker command
line, and the script text.

One array task per `--workers`; each task runs K worker processes (`--workers-per-gpu K`, times its GPUs) on
the study, `alexsearch worker --lines-only --worker-index I` with the same settings `search` would hand a local
worker. Each task's output goes to its own file, LOG_DIR/JOBNAME-ARRAYJOB_TASK.out (appended to when the task is
requeued), where the watcher (search/workers/launchers/slurm.py) reads the workers' event lines.

How a stop reaches a worker, and how its trial survives (written into every script, too):
- scancel, preemption and `scontrol requeue` send SIGTERM to every process of the task. A worker that gets
  SIGTERM fails its running trial and queues a retry that resumes from the trial's last checkpoint (epoch + 1);
  Slurm requeues a preempted or requeued task itself (`--requeue`), and the next worker to start runs the retry.
- Before the time limit Slurm sends USR1 to the batch shell only (`--signal=B:USR1@S`). The shell passes SIGTERM
  on to its workers, waits for them, and requeues its own task: a time limit costs at most one epoch too.
  (Not TERM for this: scancel also sends TERM, and a cancelled task must not requeue itself.)
- The shell stays in front of its workers (no `exec`): when a batch shell exits, Slurm kills what is left of
  the task, so it must outlive the workers' last database write.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import ConfigError, JsonConfig
from search.errors import UsageError
from search.settings import SearchConfig
from storage.url import FROM_ENV, redact

SIGNAL_BEFORE_S = 120  # USR1 this long before the time limit: one training step + the retry's database writes
JOB_NAME_CHARS = 40  # of the study name in the job name (squeue shows the first few anyway)
STORAGE_ENV = "ALEXSEARCH_STORAGE"  # carries a URL holding a password into the job, so the script never holds it
# Options the script sets itself; from --slurm-arg they would break the array or its signals.
OWNED_OPTIONS = (
    "--array",
    "-a",
    "--signal",
    "--requeue",
    "--no-requeue",
    "--parsable",
    "--wrap",
    "--output",
    "-o",
    "--open-mode",
    "--chdir",
    "-D",
    "--job-name",
    "-J",
)
# sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes,
# days-hours:minutes:seconds.
_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
_SHELL_REF = re.compile(r"\$(\{?[A-Za-z_][A-Za-z0-9_]*\}?|\(\([A-Za-z0-9_ *+-]*\)\))")  # $VAR, ${VAR}, $((...))
_MEM = re.compile(r"^\d+[KMGT]?$")
_NAME = re.compile(r"^[A-Za-z0-9_.,+-]+$")  # a partition list or an account, as sbatch takes them


def time_limit_s(text: str) -> int:
    """Seconds in an sbatch --time value, 0 for UNLIMITED / INFINITE; raises ConfigError naming --slurm-time."""
    if text.strip().upper() in ("UNLIMITED", "INFINITE"):
        return 0
    m = _TIME.match(text.strip())
    if m is not None:
        d, dh, dm, ds, m_, ms, hs = (int(g) if g else 0 for g in m.groups())
        if m.group(1) is not None:  # days-hours[:minutes[:seconds]]
            seconds = ((d * 24 + dh) * 60 + dm) * 60 + ds
        elif m.group(7) is not None:  # hours:minutes:seconds
            seconds = (m_ * 60 + ms) * 60 + hs
        else:  # minutes[:seconds]
            seconds = m_ * 60 + ms
        if seconds > 0:
            return seconds
    raise ConfigError(
        f"--slurm-time: {text!r} is not a Slurm time limit (allowed: MINUTES, MINUTES:SECONDS, "
        "HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES, DAYS-HOURS:MINUTES:SECONDS, "
        "UNLIMITED)"
    )


@dataclass(frozen=True)
class SlurmConfig(JsonConfig):
    """What each array task asks Slurm for. None = the cluster's default."""

    partition: str | None = None
    time: str | None = None  # sbatch --time, e.g. 4:00:00; None = the partition's limit
    gpus_per_worker: int = 0  # GPUs per array task; 0 = CPU only
    cpus_per_worker: int = 1  # CPU cores per array task, shared by its workers
    mem: str | None = None  # memory per array task, sbatch --mem (e.g. 16G)
    account: str | None = None
    # Extra sbatch options, one `#SBATCH` line each (e.g. "--qos=high"). A tuple of strings; typed Any because
    # JsonConfig has no tuple type: checked in __post_init__.
    sbatch_args: Any = ()

    def __post_init__(self) -> None:
        self.check_types()
        args = self.sbatch_args
        if isinstance(args, str) or not isinstance(args, Sequence) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"--slurm-arg: expected a list of strings, got {args!r}")
        object.__setattr__(self, "sbatch_args", tuple(a.strip() for a in args))
        for a in self.sbatch_args:
            if not a.startswith("-") or "\n" in a or "\r" in a:
                raise ConfigError(f"--slurm-arg: {a!r} is not one sbatch option (e.g. --qos=high)")
            name = a.split("=", 1)[0].split()[0]
            if name in OWNED_OPTIONS or (len(name) > 2 and name[:2] in OWNED_OPTIONS and not name.startswith("--")):
                raise ConfigError(
                    f"--slurm-arg: {name} is set by alexsearch itself (array, signals, output, requeue); leave it out"
                )
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and not _NAME.match(value):
                raise ConfigError(f"--slurm-{name}: {value!r} is not a Slurm {name} name")
        if self.time is not None:
            time_limit_s(self.time)
        if self.mem is not None and not _MEM.match(self.mem):
            raise ConfigError(f"--slurm-mem: {self.mem!r} is not an sbatch memory size (e.g. 16G, 4000M, 4000)")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--slurm-gpus-per-worker: must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker < 1:
            raise ConfigError(f"--slurm-cpus-per-worker: must be >= 1, got {self.cpus_per_worker}")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["sbatch_args"] = list(self.sbatch_args)
        return d


# --- the worker's command line --------------------------------------------------------------------------------


def alexsearch_command() -> list[str]:
    """How a job starts alexsearch: this environment's `alexsearch` script, else this Python with -m."""
    script = Path(sys.executable).parent / "alexsearch"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "search.cli"]


def worker_args(settings: SearchConfig, storage: str | None = None) -> list[str]:
    """`alexsearch worker` options that give a worker exactly these settings (see tests: they round-trip
    through the worker's own parser). storage replaces the URL, e.g. with "env:ALEXSEARCH_STORAGE"."""
    data = settings.data
    if data.split_seed != type(data)().split_seed:
        raise UsageError(
            f"--launcher slurm: data split seed {data.split_seed} has no command-line option; "
            "a worker could not be given it"
        )
    args = ["--storage", storage or settings.storage, "--study", settings.study, "--task", settings.task]
    if settings.space is not None:
        args += ["--space", settings.space]
    args += [
        "--trials",
        str(settings.trials),
        "--epochs",
        str(settings.epochs),
        "--strategy",
        settings.strategy,
        "--sampler",
        settings.sampler,
        "--pruner",
        settings.pruner,
        "--patience",
        str(settings.patience),
        "--warmup-epochs",
        str(settings.warmup_epochs),
        "--startup-trials",
        str(settings.startup_trials),
        "--seed",
        str(settings.seed),
        "--device",
        settings.device,
    ]
    if settings.precision is not None:
        args += ["--precision", settings.precision]
    args += ["--data", data.root]
    if data.download:
        args.append("--download")
    if data.val_size is not None:
        args += ["--val-size", str(data.val_size)]
    if data.train_size is not None:
        args += ["--train-size", str(data.train_size)]
    args += [
        "--heartbeat-interval",
        str(settings.heartbeat_interval),
        "--grace-period",
        str(settings.grace_period),
        "--max-retry",
        str(settings.max_retry),
        "--checkpoint-every",
        repr(settings.checkpoint_every),
    ]
    if settings.artifacts is not None:
        args += ["--artifacts", settings.artifacts]
    return args


def device_for_task(device: str, gpus: int) -> str:
    """The --device each worker of a task gets: Slurm makes the task's GPUs the only visible ones, so cuda:N
    becomes cuda; a CPU-only task must not pick a GPU it was not given (auto would)."""
    if gpus == 0:
        if device.startswith("cuda"):
            raise UsageError(
                f"--device {device}: the array tasks get no GPU (--slurm-gpus-per-worker 0); "
                "give --slurm-gpus-per-worker 1 or --device cpu"
            )
        return "cpu" if device == "auto" else device
    if device in ("cpu", "mps"):
        raise UsageError(
            f"--slurm-gpus-per-worker {gpus}: GPUs asked for, but --device {device}; "
            "use --device cuda (or auto), or --slurm-gpus-per-worker 0"
        )
    return "cuda"


def workers_per_task(slurm: SlurmConfig, workers_per_gpu: int) -> int:
    """K workers per GPU of the task, one on a CPU-only task: as `search --workers-per-gpu K` locally, where a
    CPU-only machine runs one worker unless --workers says otherwise (here --workers counts tasks)."""
    return workers_per_gpu * slurm.gpus_per_worker if slurm.gpus_per_worker else 1


# --- the script -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayJob:
    """One submission: the study's settings, what each task asks for, and where files go."""

    settings: SearchConfig
    slurm: SlurmConfig
    tasks: int  # array tasks (`--workers N`)
    workers_per_gpu: int = 1
    workdir: Path = Path(".")  # the job's working folder: relative paths in the settings resolve here
    log_dir: Path = Path("slurm")  # where each task's output file goes

    @property
    def name(self) -> str:
        return "alexsearch-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", self.settings.study)[:JOB_NAME_CHARS]

    def storage_in_script(self) -> str:
        """The URL, or env:STORAGE_ENV when it holds a password: the worker reads it from its environment, so it
        shows neither in a readable file nor in the node's process list."""
        return f"{FROM_ENV}{STORAGE_ENV}" if self.hides_storage() else self.settings.storage

    def hides_storage(self) -> bool:
        return redact(self.settings.storage) != self.settings.storage

    def submit_env(self) -> dict[str, str]:
        """Environment additions for sbatch (copied into each task)."""
        return {STORAGE_ENV: self.settings.storage} if self.hides_storage() else {}


def wrap_command(argv: Sequence[str], width: int = 100) -> str:
    """One shell command over several lines: the program and subcommand first, then options with their
    values, continued with backslashes at about width characters."""
    words = [_q(a) for a in argv]
    head = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
    groups: list[str] = []
    for w in words[head:]:  # an option and its value stay together
        if w.startswith("--") or not groups:
            groups.append(w)
        else:
            groups[-1] += " " + w
    lines, line = [" ".join(words[:head])], "   "
    for g in groups:
        if len(line) + 1 + len(g) > width and line.strip():
            lines.append(line)
            line = "   "
        line += " " + g
    if line.strip():
        lines.append(line)
    return " \\\n".join(lines)


def _q(word: str) -> str:
    """Shell-quote a word, leaving $VAR references (and plain words) readable."""
    if _SHELL_REF.fullmatch(word):
        return f'"{word}"'
    return shlex.quote(word)


def sbatch_lines(job: ArrayJob) -> list[str]:
    s = job.slurm
    lines = [f"--job-name={job.name}", f"--array=0-{job.tasks - 1}"]
    if s.partition:
        lines.append(f"--partition={s.partition}")
    if s.account:
        lines.append(f"--account={s.account}")
    if s.time:
        lines.append(f"--time={s.time}")
    lines += ["--nodes=1", "--ntasks=1", f"--cpus-per-task={s.cpus_per_worker}"]
    if s.mem:
        lines.append(f"--mem={s.mem}")
    if s.gpus_per_worker > 0:
        lines.append(f"--gres=gpu:{s.gpus_per_worker}")
    lines += [
        f"--chdir={job.workdir}",
        f"--output={job.log_dir}/{job.name}-%A_%a.out",
        "--open-mode=append",
        "--requeue",
        f"--signal=B:USR1@{signal_before_s(s)}",
    ]
    lines += list(s.sbatch_args)
    return [f"#SBATCH {line}" for line in lines]


def signal_before_s(slurm: SlurmConfig) -> int:
    """Seconds before the time limit at which the workers are stopped: SIGNAL_BEFORE_S, or half a short limit."""
    limit = time_limit_s(slurm.time) if slurm.time is not None else 0
    if limit == 0:  # the partition's limit, or none
        return SIGNAL_BEFORE_S
    return max(1, min(SIGNAL_BEFORE_S, limit // 2))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def sbatch_script(job: ArrayJob) -> str:
    """The whole sbatch script: readable, and complete (`sbatch FILE` resubmits it as it is)."""
    s, settings = job.slurm, job.settings
    per_task = workers_per_task(s, job.workers_per_gpu)
    device = device_for_task(settings.device, s.gpus_per_worker)
    argv = alexsearch_command() + ["worker"] + worker_args(settings.replace(device=device), job.storage_in_script())
    index = "$SLURM_ARRAY_TASK_ID" if per_task == 1 else f"$((SLURM_ARRAY_TASK_ID * {per_task} + k))"
    command = wrap_command([*argv, "--lines-only", "--wait-for-database", "--worker-index", index])
    gpu_note = (
        f"{plural(s.gpus_per_worker, 'GPU')} each"
        + (f", worker k on GPU k mod {s.gpus_per_worker}" if s.gpus_per_worker > 1 and per_task > 1 else "")
        if s.gpus_per_worker
        else "CPU only"
    )
    out = [
        "#!/bin/bash",
        f"# alexsearch study {settings.study!r} in {redact(settings.storage)}: a job array of "
        f"{plural(job.tasks, 'task')}, {plural(per_task, 'worker')} each, {gpu_note}.",
        "# Written by `alexsearch search --launcher slurm`; `sbatch THIS_FILE` submits it again.",
        *sbatch_lines(job),
        "",
        "# scancel, preemption and `scontrol requeue` send SIGTERM to every process here: each worker",
        "# fails its running trial and queues a retry that resumes from the trial's last checkpoint",
        f"# (epoch + 1). {signal_before_s(s)} s before --time runs out, Slurm sends USR1 to this shell only: it stops",
        "# the workers the same way and requeues this task. The shell outlives its workers (no exec):",
        "# when it exits, Slurm kills what is left of the task.",
        "set -u",
    ]
    if job.hides_storage():
        out.append(
            f': "${{{STORAGE_ENV}:?set {STORAGE_ENV} to the study database URL (it holds a password, '
            'so it is not written here)}"'
        )
    out += [
        f"export OMP_NUM_THREADS=$(( ${{SLURM_CPUS_PER_TASK:-1}} / {per_task} > 0 ? "
        f"${{SLURM_CPUS_PER_TASK:-1}} / {per_task} : 1 ))"
        if per_task > 1
        else "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}",
        "export PYTHONUNBUFFERED=1",
        'echo "alexsearch: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (job $SLURM_JOB_ID) on '
        '$(hostname), restart ${SLURM_RESTART_COUNT:-0}, $(date)"',
        "pids=()",
        "requeue=0",
        "trap 'requeue=1; kill -TERM \"${pids[@]}\" 2>/dev/null' USR1",
        "trap : TERM  # Slurm signals the workers itself; this shell only waits for them",
        "",
    ]
    if per_task == 1:
        out += [command + " &", 'pids+=("$!")']
    else:
        if s.gpus_per_worker > 0:
            ids = ",".join(str(i) for i in range(s.gpus_per_worker))
            out += [
                f"visible=${{CUDA_VISIBLE_DEVICES:-{ids}}}  # the task's GPUs, as Slurm made them visible",
                "gpus=(${visible//,/ })",
            ]
        out += [f"for k in $(seq 0 {per_task - 1}); do"]
        if s.gpus_per_worker > 0:
            out += [f'  CUDA_VISIBLE_DEVICES="${{gpus[k % {s.gpus_per_worker}]}}" \\']
        out += ["  " + command.replace("\n", "\n  ") + " &", '  pids+=("$!")', "done"]
    out += [
        "",
        "# wait returns early when a trapped signal arrives: wait again until each worker has exited.",
        "status=0",
        'for pid in "${pids[@]}"; do',
        '  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done',
        '  wait "$pid"; rc=$?',
        '  if [ "$rc" -ne 0 ]; then status=$rc; fi',
        "done",
        'if [ "$requeue" = 1 ]; then',
        '  echo "alexsearch: time limit near: requeueing task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"',
        "",
    ]
    return "\n".join(out)


def write_script(job: ArrayJob, path: Path) -> Path:
    """Write the script, executable (it holds no password: see storage_in_script)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    job.log_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(sbatch_script(job))
    path.chmod(0o755)
    return path
