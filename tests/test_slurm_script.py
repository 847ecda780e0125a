"""The sbatch script of `search --launcher slurm` as text, and its settings: no Slurm needed.
(tests/test_slurm.py runs it on a real Slurm.)"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from model.config import ConfigError
from search.cli import build_parser, main
from search.cli.search import settings_from_args, slurm_from_args
from search.errors import UsageError
from search.settings import SearchConfig
from search.workers.launchers.sbatch import (
    STORAGE_ENV,
    ArrayJob,
    SlurmConfig,
    alexsearch_command,
    sbatch_script,
    time_limit_s,
    worker_args,
)
from search.workers.launchers.slurm import SlurmError, slurm_message, submit
from search.workers.placement import run_place

QUICK = SearchConfig(
    study="arr",
    storage="sqlite:///study.db",
    task="mlp-synth",
    trials=4,
    epochs=2,
    device="cpu",
    pruner="none",
    patience=0,
    heartbeat_interval=1,
    grace_period=3,
)


def script_of(settings: SearchConfig = QUICK, tasks: int = 2, workers_per_gpu: int = 1, **slurm) -> str:
    return sbatch_script(
        ArrayJob(settings, SlurmConfig(**slurm), tasks, workers_per_gpu, Path("/runs"), Path("/runs/art/slurm"))
    )


def sbatch_options(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


# --- SlurmConfig ----------------------------------------------------------------------------------------------


def test_slurm_config_round_trips_json_and_rejects_unknown_keys():
    cfg = SlurmConfig(
        partition="gpu",
        time="1-12:00:00",
        gpus_per_worker=1,
        cpus_per_worker=8,
        mem="32G",
        account="lab",
        sbatch_args=("--qos=high", "--constraint=a100"),
    )
    assert SlurmConfig.from_json(cfg.to_json()) == cfg
    assert SlurmConfig.from_dict({"sbatch_args": ["--qos=low"]}).sbatch_args == ("--qos=low",)
    with pytest.raises(ConfigError, match="unknown key 'gpus'"):
        SlurmConfig.from_dict({"gpus": 1})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"time": "soon"}, "--slurm-time: 'soon' is not a Slurm time limit"),
        ({"mem": "lots"}, "--slurm-mem: 'lots' is not an sbatch memory size"),
        ({"gpus_per_worker": -1}, "--slurm-gpus-per-worker: must be >= 0"),
        ({"cpus_per_worker": 0}, "--slurm-cpus-per-worker: must be >= 1"),
        ({"partition": "a b"}, "--slurm-partition: 'a b' is not a Slurm partition name"),
        ({"sbatch_args": ("qos=high",)}, "--slurm-arg: 'qos=high' is not one sbatch option"),
        ({"sbatch_args": ("--array=0-99",)}, "--slurm-arg: --array is set by alexsearch itself"),
        ({"sbatch_args": ("-o",)}, "--slurm-arg: -o is set by alexsearch itself"),
        ({"sbatch_args": "--qos=high"}, "--slurm-arg: expected a list of strings"),
    ],
)
def test_slurm_config_rejects_bad_values_in_one_line_naming_the_option(changes, message):
    with pytest.raises(ConfigError, match=message) as e:
        SlurmConfig(**changes)
    assert "\n" not in str(e.value)


def test_time_limits_in_every_sbatch_format():
    assert [time_limit_s(t) for t in ("30", "30:15", "2:00:00", "1-0", "1-2:30", "1-0:0:5", "UNLIMITED")] == [
        1800,
        1815,
        7200,
        86400,
        86400 + 2 * 3600 + 30 * 60,
        86405,
        0,
    ]
    for bad in ("0", "0:00", "1h", "-5", "1:2:3:4"):
        with pytest.raises(ConfigError, match=f"--slurm-time: '{bad}' is not a Slurm time limit"):
            time_limit_s(bad)


# --- the worker's argv ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        QUICK,
        QUICK.replace(
            space="search/spaces/mlp-synth.toml",
            precision="fp32",
            artifacts="/shared/art",
            strategy="optuna",
            sampler="random",
            pruner="hyperband",
            data=QUICK.data.replace(download=True, train_size=300, val_size=50),
        ),
    ],
)
def test_worker_args_give_the_worker_exactly_the_search_settings(settings):
    """The argv goes through the real `alexsearch worker` parser and back to the same SearchConfig."""
    settings = settings.replace(data=settings.data.replace(val_size=settings.data.val_size or 5000))
    args = build_parser().parse_args(["worker", *worker_args(settings), "--worker-index", "3"])
    assert args.worker_index == 3
    assert settings_from_args(args)[0] == settings


def test_the_scripts_worker_command_parses_back_to_the_search_settings():
    """Read the worker command out of the script text as bash would (continuation lines joined, words split)."""
    settings = QUICK.replace(
        space="search/spaces/mlp-synth.toml",
        artifacts="/shared/my art",
        data=QUICK.data.replace(val_size=100, train_size=400),
    )
    lines = script_of(settings).splitlines()
    start = next(i for i, line in enumerate(lines) if " worker \\" in line)
    command = ""
    for line in lines[start:]:
        command += line.rstrip("\\")
        if not line.endswith("\\"):
            break
    words = shlex.split(command.removesuffix(" &").replace("$SLURM_ARRAY_TASK_ID", "5"))
    assert Path(words[0]).name == "alexsearch" and words[1] == "worker"
    args = build_parser().parse_args(words[1:])
    assert args.worker_index == 5
    assert args.lines_only  # event lines only, into the task's log file that the watcher reads
    assert settings_from_args(args)[0] == settings


def test_worker_args_refuse_a_setting_the_cli_cannot_carry():
    with pytest.raises(UsageError, match="split seed 7 has no command-line option"):
        worker_args(QUICK.replace(data=QUICK.data.replace(split_seed=7)))


# --- the script as text ---------------------------------------------------------------------------------------


def test_cpu_script_asks_for_no_gpu_and_runs_one_worker_per_task_on_the_cpu():
    script = script_of(QUICK.replace(device="auto"), tasks=3, partition="debug", time="30:00", mem="2G")
    opts = sbatch_options(script)
    assert opts[:2] == ["--job-name=alexsearch-arr", "--array=0-2"]
    assert {
        "--partition=debug",
        "--time=30:00",
        "--mem=2G",
        "--cpus-per-task=1",
        "--requeue",
        "--signal=B:USR1@120",
        "--chdir=/runs",
        "--output=/runs/art/slurm/alexsearch-arr-%A_%a.out",
        "--open-mode=append",
    } <= set(opts)
    assert not any("gpu" in o for o in opts)
    assert " --device cpu " in script  # auto would take a GPU the task was not given
    assert script.count(" worker \\\n") == 1 and '--worker-index "$SLURM_ARRAY_TASK_ID" &' in script
    assert "exec " not in script  # the shell outlives its workers so it can requeue the task
    assert script_of(QUICK, workers_per_gpu=4) == script_of(QUICK)  # K is per GPU: a CPU task runs one worker


def test_gpu_script_has_gres_and_spreads_k_workers_per_gpu():
    script = script_of(QUICK.replace(device="cuda:1"), tasks=4, workers_per_gpu=2, gpus_per_worker=2, cpus_per_worker=8)
    opts = sbatch_options(script)
    assert "--gres=gpu:2" in opts and "--cpus-per-task=8" in opts and "--array=0-3" in opts
    assert "for k in $(seq 0 3); do" in script  # 2 workers per GPU x 2 GPUs
    assert 'CUDA_VISIBLE_DEVICES="${gpus[k % 2]}"' in script
    assert '--worker-index "$((SLURM_ARRAY_TASK_ID * 4 + k))"' in script  # distinct across all tasks
    assert " --device cuda " in script  # Slurm makes the task's GPUs the only visible ones: cuda:1 -> cuda
    assert "OMP_NUM_THREADS=$(( ${SLURM_CPUS_PER_TASK:-1} / 4" in script


def test_slurm_args_become_sbatch_lines_after_ours():
    opts = sbatch_options(script_of(account="lab", sbatch_args=("--qos=high", "--constraint=a100")))
    assert opts[-2:] == ["--qos=high", "--constraint=a100"]
    assert "--account=lab" in opts


def test_a_short_time_limit_signals_at_half_the_limit():
    assert "--signal=B:USR1@60" in sbatch_options(script_of(time="2"))
    assert "--signal=B:USR1@120" in sbatch_options(script_of(time="INFINITE"))


def test_a_password_never_lands_in_the_script():
    settings = QUICK.replace(storage="postgresql+psycopg://me:s3cret@db.example:5432/studies")
    job = ArrayJob(settings, SlurmConfig(), 2)
    script = sbatch_script(job)
    assert "s3cret" not in script
    assert f"--storage env:{STORAGE_ENV}" in script and job.submit_env() == {STORAGE_ENV: settings.storage}


@pytest.mark.parametrize(
    "device, gpus, message",
    [
        ("cuda", 0, "--device cuda: the array tasks get no GPU"),
        ("cpu", 1, "--slurm-gpus-per-worker 1: GPUs asked for, but --device cpu"),
    ],
)
def test_device_and_gpus_must_agree(device, gpus, message):
    with pytest.raises(UsageError, match=message):
        script_of(QUICK.replace(device=device), gpus_per_worker=gpus)


@pytest.mark.parametrize("kwargs", [{}, {"gpus_per_worker": 1, "workers_per_gpu": 3}])
def test_script_is_valid_bash(kwargs, tmp_path):
    workers_per_gpu = kwargs.pop("workers_per_gpu", 1)
    settings = QUICK.replace(device="auto") if kwargs else QUICK
    path = tmp_path / "job.sh"
    path.write_text(script_of(settings, workers_per_gpu=workers_per_gpu, **kwargs))
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_run_place_reads_slurm_variables():
    env = {
        "SLURM_JOB_ID": "41",
        "SLURM_ARRAY_JOB_ID": "40",
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURMD_NODENAME": "gpu7",
        "SLURM_RESTART_COUNT": "2",
    }
    assert run_place(env) == {
        "host": "gpu7",
        "slurm_job_id": "40_1",
        "slurm_array_task_id": "1",
        "slurm_restart_count": "2",
    }
    assert set(run_place({})) == {"host"}  # outside Slurm: only the host


def test_no_sbatch_on_path_is_a_slurm_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="sbatch not found on PATH; run this on a Slurm login node"):
        submit(tmp_path / "job.sh")


def test_slurm_message_is_one_line_of_slurms_own_words():
    stderr = (
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert slurm_message(stderr) == (
        "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--slurm-partition", "gpu"], "--slurm-partition: only with --launcher slurm"),
        (["--slurm-gpus-per-worker", "1"], "--slurm-gpus-per-worker: only with --launcher slurm"),
        (["--slurm-arg=--qos=high"], "--slurm-arg: only with --launcher slurm"),
        (["--detach"], "--detach: only with --launcher slurm"),
        (["--launcher", "slurm", "--slurm-time", "soon"], "--slurm-time: 'soon' is not a Slurm time limit"),
        (["--launcher", "slurm", "--device", "cuda"], "--device cuda: the array tasks get no GPU"),
    ],
)
def test_cli_slurm_options_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    db = tmp_path / "study.db"
    rc = main(["search", "--task", "mlp-synth", "--storage", f"sqlite:///{db}", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"alexsearch search: error: {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1 and not db.exists()


def test_no_sbatch_on_path_is_one_line_exit_2_and_no_study(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    db = tmp_path / "study.db"
    rc = main(["search", "--launcher", "slurm", "--task", "mlp-synth", "--storage", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("alexsearch search: error: --launcher slurm: sbatch not found on PATH")
    assert err.count("\n") == 1 and not db.exists()


def test_docs_show_the_script_the_command_writes():
    """docs/slurm.md shows the generated script in full: it must be what the code writes for its command."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "slurm.md").read_text()
    argv = (
        "search --launcher slurm --workers 8 --storage postgresql+psycopg://alexsearch@db-host:5432/alexsearch "
        "--study cifar --data /shared/cifar --artifacts /shared/alexsearch-artifacts --trials 200 --epochs 10 "
        "--slurm-partition gpu --slurm-time 4:00:00 --slurm-gpus-per-worker 1 --slurm-cpus-per-worker 8 "
        "--slurm-mem 32G --slurm-arg=--qos=normal"
    ).split()
    assert "--slurm-partition gpu --slurm-time 4:00:00 --slurm-gpus-per-worker 1" in doc  # the command it shows
    args = build_parser().parse_args(argv)
    settings, _ = settings_from_args(args, check_device=False)
    job = ArrayJob(
        settings, slurm_from_args(args), 8, 1, Path("/home/you/cifar"), Path("/shared/alexsearch-artifacts/slurm")
    )
    script = sbatch_script(job).replace(alexsearch_command()[0], "/home/you/venv/bin/alexsearch")
    assert f"```bash\n{script}```" in doc
