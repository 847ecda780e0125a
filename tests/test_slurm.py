"""Workers as a Slurm job array: the sbatch script as text (no Slurm needed), then real jobs on a real
single-node Slurm (tests/slurm_cluster.py): a 2-task array filling a study, a requeue mid-trial, a bad partition."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.trial import TrialState

from model.config import ConfigError
from search.cli import build_parser
from search.commands.search_cmd import settings_from_args
from search.settings import SearchConfig
from search.workers.launchers.slurm import (
    STORAGE_ENV,
    ArrayJob,
    SlurmConfig,
    SlurmError,
    check_submission,
    is_active,
    run_place,
    sbatch_script,
    state_summary,
    submit,
    task_states,
    time_limit_s,
    worker_args,
    write_script,
)
from storage.study import open_storage

if TYPE_CHECKING:
    from tests.slurm_cluster import SlurmCluster

pytest_plugins = ["tests.slurm_cluster"]  # the slurm_cluster fixture (phase 2: move to conftest.py)

QUICK = SearchConfig(study="arr", storage="sqlite:///study.db", task="mlp-synth", trials=4, epochs=2,
                     device="cpu", pruner="none", patience=0, heartbeat_interval=1, grace_period=3)


def settings_for(storage: str, tmp_path: Path, **changes) -> SearchConfig:
    data = QUICK.data.replace(root=str(tmp_path / "data"), train_size=400, val_size=100)
    return QUICK.replace(storage=storage, artifacts=str(tmp_path / "art"), data=data, **changes)


def script_of(settings: SearchConfig = QUICK, tasks: int = 2, workers_per_gpu: int = 1, **slurm) -> str:
    return sbatch_script(ArrayJob(settings, SlurmConfig(**slurm), tasks, workers_per_gpu, Path("/runs"),
                                  Path("/runs/art/slurm")))


def sbatch_options(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


# --- SlurmConfig ----------------------------------------------------------------------------------------------

def test_slurm_config_round_trips_json_and_rejects_unknown_keys():
    cfg = SlurmConfig(partition="gpu", time="1-12:00:00", gpus_per_worker=1, cpus_per_worker=8, mem="32G",
                      account="lab", sbatch_args=("--qos=high", "--constraint=a100"))
    assert SlurmConfig.from_json(cfg.to_json()) == cfg
    assert SlurmConfig.from_dict({"sbatch_args": ["--qos=low"]}).sbatch_args == ("--qos=low",)
    with pytest.raises(ConfigError, match="unknown key 'gpus'"):
        SlurmConfig.from_dict({"gpus": 1})


@pytest.mark.parametrize("changes, message", [
    ({"time": "soon"}, "--slurm-time: 'soon' is not a Slurm time limit"),
    ({"mem": "lots"}, "--slurm-mem: 'lots' is not an sbatch memory size"),
    ({"gpus_per_worker": -1}, "--slurm-gpus-per-worker: must be >= 0"),
    ({"cpus_per_worker": 0}, "--slurm-cpus-per-worker: must be >= 1"),
    ({"partition": "a b"}, "--slurm-partition: 'a b' is not a Slurm partition name"),
    ({"sbatch_args": ("qos=high",)}, "--slurm-arg: 'qos=high' is not one sbatch option"),
    ({"sbatch_args": ("--array=0-99",)}, "--slurm-arg: --array is set by alexsearch itself"),
    ({"sbatch_args": ("-o", )}, "--slurm-arg: -o is set by alexsearch itself"),
    ({"sbatch_args": "--qos=high"}, "--slurm-arg: expected a list of strings"),
])
def test_slurm_config_rejects_bad_values_in_one_line_naming_the_option(changes, message):
    with pytest.raises(ConfigError, match=message) as e:
        SlurmConfig(**changes)
    assert "\n" not in str(e.value)


def test_time_limits_in_every_sbatch_format():
    assert [time_limit_s(t) for t in ("30", "30:15", "2:00:00", "1-0", "1-2:30", "1-0:0:5")] == [
        1800, 1815, 7200, 86400, 86400 + 2 * 3600 + 30 * 60, 86405]


# --- the worker's argv ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    QUICK,
    QUICK.replace(space="search/spaces/mlp-synth.toml", precision="fp32", artifacts="/shared/art", strategy="optuna",
                  sampler="random", pruner="hyperband", data=QUICK.data.replace(download=True, train_size=300,
                                                                                 val_size=50)),
])
def test_worker_args_give_the_worker_exactly_the_search_settings(settings):
    """The argv goes through the real `alexsearch worker` parser and back to the same SearchConfig."""
    settings = settings.replace(data=settings.data.replace(val_size=settings.data.val_size or 5000))
    args = build_parser().parse_args(["worker", *worker_args(settings), "--worker-index", "3"])
    assert args.worker_index == 3
    assert settings_from_args(args)[0] == settings


def test_worker_args_refuse_a_setting_the_cli_cannot_carry():
    with pytest.raises(ConfigError, match="split seed 7 has no command-line option"):
        worker_args(QUICK.replace(data=QUICK.data.replace(split_seed=7)))


# --- the script as text ---------------------------------------------------------------------------------------

def test_cpu_script_asks_for_no_gpu_and_runs_one_worker_per_task_on_the_cpu():
    script = script_of(QUICK.replace(device="auto"), tasks=3, partition="debug", time="30:00", mem="2G")
    opts = sbatch_options(script)
    assert opts[:2] == ["--job-name=alexsearch-arr", "--array=0-2"]
    assert {"--partition=debug", "--time=30:00", "--mem=2G", "--cpus-per-task=1", "--requeue",
            "--signal=B:USR1@120", "--chdir=/runs", "--output=/runs/art/slurm/alexsearch-arr-%A_%a.out",
            "--open-mode=append"} <= set(opts)
    assert not any("gpu" in o for o in opts)
    assert " --device cpu " in script  # auto would take a GPU the task was not given
    assert script.count(" worker \\\n") == 1 and '--worker-index "$SLURM_ARRAY_TASK_ID" &' in script
    assert "exec " not in script  # the shell outlives its workers so it can requeue the task


def test_gpu_script_has_gres_and_spreads_k_workers_per_gpu():
    script = script_of(QUICK.replace(device="cuda:1"), tasks=4, workers_per_gpu=2, gpus_per_worker=2,
                       cpus_per_worker=8)
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


def test_a_password_never_lands_in_the_script():
    settings = QUICK.replace(storage="postgresql+psycopg://me:s3cret@db.example:5432/studies")
    job = ArrayJob(settings, SlurmConfig(), 2)
    script = sbatch_script(job)
    assert "s3cret" not in script
    assert f'--storage "${STORAGE_ENV}"' in script and job.submit_env() == {STORAGE_ENV: settings.storage}


@pytest.mark.parametrize("device, gpus, message", [
    ("cuda", 0, "--device cuda: the array tasks get no GPU"),
    ("cpu", 1, "--slurm-gpus-per-worker 1: GPUs asked for, but --device cpu"),
])
def test_device_and_gpus_must_agree(device, gpus, message):
    with pytest.raises(ConfigError, match=message):
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
    env = {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "1", "SLURMD_NODENAME": "gpu7",
           "SLURM_RESTART_COUNT": "2"}
    assert run_place(env) == {"host": "gpu7", "slurm_job_id": "40_1", "slurm_array_task_id": "1",
                              "slurm_restart_count": "2"}
    assert set(run_place({})) == {"host"}  # outside Slurm: only the host


def test_no_sbatch_on_path_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="sbatch not found on PATH; run this on a Slurm login node"):
        submit(tmp_path / "job.sh")


# --- a real Slurm ---------------------------------------------------------------------------------------------

def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False))


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def make_job(settings: SearchConfig, tmp_path: Path, tasks: int = 2) -> tuple[ArrayJob, Path]:
    folder = Path(settings.artifacts)
    job = ArrayJob(settings, SlurmConfig(), tasks, workdir=tmp_path, log_dir=folder / "slurm")
    return job, write_script(job, folder / "slurm" / "job.sh")


def job_output(job: ArrayJob) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(job.log_dir.glob("*.out")))


def wait_array_ended(cluster: SlurmCluster, job_id: str, job: ArrayJob, timeout: float) -> None:
    try:
        cluster.wait_for(lambda: not is_active(task_states(job_id)), timeout, f"array {job_id} to end")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n--- job output\n{job_output(job)[-4000:]}") from None


@pytest.mark.slow
def test_bad_partition_is_one_line_quoting_slurm_and_queues_nothing(slurm_cluster, tmp_path):
    job = ArrayJob(settings_for(f"sqlite:///{tmp_path / 'study.db'}", tmp_path), SlurmConfig(partition="nope"), 2,
                   workdir=tmp_path, log_dir=tmp_path / "logs")
    script = write_script(job, tmp_path / "job.sh")
    with pytest.raises(SlurmError) as e:
        check_submission(script)  # sbatch --test-only: Slurm checks, queues nothing, keeps no record
    assert str(e.value) == ("--launcher slurm: sbatch rejected the job: invalid partition specified: nope; "
                            "allocation failure: Invalid partition name specified")
    with pytest.raises(SlurmError) as e:
        submit(script)
    assert str(e.value) == ("--launcher slurm: sbatch rejected the job: invalid partition specified: nope; "
                            "Batch job submission failed: Invalid partition name specified")
    assert slurm_cluster.jobs() == []
    assert not (tmp_path / "study.db").exists()


@pytest.mark.slow
def test_two_task_array_of_real_workers_fills_the_study(slurm_cluster, tmp_path, storage_url):
    settings = settings_for(storage_url, tmp_path)
    job, script = make_job(settings, tmp_path)
    started = time.monotonic()
    check_submission(script)
    job_id = submit(script)
    assert job_id.isdigit()
    wait_array_ended(slurm_cluster, job_id, job, 90)
    took = time.monotonic() - started
    states = task_states(job_id)
    assert states == {f"{job_id}_0": "COMPLETED", f"{job_id}_1": "COMPLETED"}, job_output(job)[-3000:]
    assert state_summary(job_id, states) == f"slurm job {job_id}: COMPLETED 2"
    study = load(storage_url, "arr")
    assert 4 <= len(finished(study)) <= 5  # the budget; one more at most from the other task's last trial
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    out = job_output(job)
    assert f"task {job_id}_0" in out and f"task {job_id}_1" in out
    print(f"2-task array on {storage_url.split(':')[0]}: {took:.1f} s from submission to both tasks COMPLETED")


@pytest.mark.slow
def test_requeue_mid_trial_resumes_the_trial_from_its_checkpoint(slurm_cluster, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    settings = settings_for(url, tmp_path, trials=1, epochs=6)  # about 1 s per epoch on 40,000 points
    settings = settings.replace(data=settings.data.replace(train_size=40_000))
    job, script = make_job(settings, tmp_path, tasks=1)
    ckpt = Path(settings.artifacts) / "checkpoints" / "arr" / "trial-0.pt"
    started = time.monotonic()
    job_id = submit(script)
    task = f"{job_id}_0"
    slurm_cluster.wait_for(ckpt.exists, 60, "the first checkpoint")
    slurm_cluster.run("scontrol", "requeue", task)
    wait_array_ended(slurm_cluster, job_id, job, 90)
    took = time.monotonic() - started
    trials = load(url, "arr").get_trials()
    first, *retries = trials
    assert first.state == TrialState.FAIL, job_output(job)[-3000:]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    resumed = retries[0].user_attrs["resumed_from"]
    saved_epoch = resumed["epoch"]
    assert resumed["trial"] == 0 and 1 <= saved_epoch < 6
    assert sorted(retries[0].intermediate_values) == [1, 2, 3, 4, 5, 6]
    out = job_output(job)
    assert "stopped: trial 0 failed and queued for retry" in out
    assert "restart 1" in out and f"resuming trial 0 after epoch {saved_epoch}" in out
    assert task_states(job_id) == {task: "COMPLETED"}
    assert not ckpt.exists()
    print(f"requeue: trial 0 resumed as trial {retries[0].number} from epoch {saved_epoch + 1}; "
          f"{took:.1f} s from submission to COMPLETED")


