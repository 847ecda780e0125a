"""The six steps of `make gpu-check` (bench/gpu_check.py runs them in order, each in its time box).

Each step fills a `record` dict as it goes, so a step stopped by its time box still reports what it measured.
Sizes come from a Scale: GPU (the real measurement) or TOY (the same code at a few hundred images on CPU).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import accuracy, throughput
from bench.data import TASK, load_bench_data, sync
from bench.flops import bf16_peak, flops_per_image
from bench.grid_extrapolate import TrialEpochs, extrapolate
from bench.pipelines import SEED
from bench.workers_per_gpu import measure_plan
from model.alexnet import AlexNetConfig
from model.device import device_name
from model.train import TrainConfig, Trainer
from search.workers.placement import MeasuredWorkers, write_measured_workers
from storage.checkpoints import CheckpointStore

EPOCH_IMAGES = 45_000  # one search epoch: CIFAR-10's 50,000 training images less the 5,000 held out for val
TABLE1 = "search/spaces/alexnet-cifar10-table1.toml"
GRID_STOP_GRACE_S = 15  # after the grid's budget: SIGINT, this long to stop, then SIGKILL
K_TIE = 0.97  # a K within 3% of the best score counts as a tie; the smaller K wins (less memory, fewer processes)


@dataclass(frozen=True)
class Scale:
    name: str  # "gpu" or "toy"
    batches: tuple[int, ...]  # throughput batch sizes
    steps: dict[int, int]  # throughput steps per measurement, by batch size
    rounds: int
    warmup_steps: int
    ks: tuple[int, ...]  # worker counts
    worker_batches: tuple[int, ...]
    worker_steps: dict[int, int]  # steps per worker, by batch size
    checkpoint_repeats: int
    grid_epochs: int
    grid_sizes: tuple[str, ...]  # extra CLI options: ("--train-size", "100", ...); () = full data
    acc_seeds: int
    acc_epochs: int
    acc_train: int
    acc_val: int
    boxes: dict[str, float]  # step -> time box, seconds (the grid's is its budget plus GRID_STOP_GRACE_S)
    total_s: float  # the whole run's time box; later steps get what is left
    synthetic_train: int  # training images of the synthetic data written when --data has no CIFAR-10
    grid_budget: float = 240.0  # default --grid-budget, seconds
    grid_min_budget: float = 120.0  # the whole run's box never cuts the grid's budget below this (--grid-budget can)


GPU = Scale(
    "gpu",
    (10, 100, 500),
    {10: 300, 100: 100, 500: 30},
    2,
    1,
    (1, 2, 4, 8),
    (10, 100),
    {10: 150, 100: 50},
    3,
    10,
    (),
    3,
    3,
    45_000,
    5000,
    {"pytest": 45, "throughput": 60, "workers": 75, "checkpoint": 20, "accuracy": 60},
    480,
    50_000,
)
# Toy: one step per measurement; batch 50 rather than 100 and 500, whose forward passes cost seconds per step on
# a loaded 2-core machine. The boxes keep the whole run under 3 minutes there (a step that runs out is marked).
TOY = Scale(
    "toy",
    (10, 50),
    {10: 1, 50: 1},
    1,
    0,
    (1, 2),
    (10, 50),
    {10: 1, 50: 1},
    1,
    1,
    ("--train-size", "100", "--val-size", "50"),
    1,
    1,
    100,
    100,
    {"pytest": 40, "throughput": 40, "workers": 50, "checkpoint": 20, "accuracy": 25},
    150,
    300,
    grid_budget=10.0,
    grid_min_budget=8.0,
)


@dataclass
class Context:
    device: torch.device
    device_arg: str
    scale: Scale
    data_root: str  # a folder holding cifar-10-batches-py/, real or synthetic
    data_described: str
    work: Path  # scratch: databases, checkpoints, logs
    repo: Path
    results_relpath: str  # where the results file belongs in the repo, for search/workers/workers_per_gpu.json
    commit: str
    date: str
    grid_budget: float = 240.0
    log: Callable[[str], None] = print
    trainer_rates: dict[int, float] = field(default_factory=dict)  # step 2: batch -> median Trainer img/s
    workers: int = 1  # step 3's K, used by the grid on CUDA

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def toy(self) -> bool:
        return self.scale.name == "toy"


def run_process(
    cmd: list[str], log_path: Path, timeout: float, cwd: Path, stop_signal: int | None = None
) -> tuple[int, float, bool]:
    """Run cmd in its own process group, output to log_path. After timeout: stop_signal (if given) and
    GRID_STOP_GRACE_S to exit, then SIGKILL. Returns (exit code, seconds until the exit or the timeout,
    whether it was stopped)."""
    start = time.perf_counter()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout), time.perf_counter() - start, False
        except subprocess.TimeoutExpired:
            ran = time.perf_counter() - start
            if stop_signal is not None:
                os.killpg(proc.pid, stop_signal)
                try:
                    return proc.wait(timeout=GRID_STOP_GRACE_S), ran, True
                except subprocess.TimeoutExpired:
                    pass
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(), ran, True
        finally:  # our own time box (an exception) or any error: leave no process behind
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def tail(path: Path, lines: int = 15) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:]


def step_pytest(ctx: Context, record: dict) -> None:
    """1. `pytest -m gpu`: the tests that need CUDA (on CPU they are skipped)."""
    log = ctx.work / "pytest-gpu.log"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    record["command"] = "pytest -m gpu -q tests"
    code, _, stopped = run_process(cmd, log, ctx.scale.boxes["pytest"] - 2, ctx.repo)
    out = tail(log)
    record["exit_code"] = code
    record["counts"] = {
        word: int(n)
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", out[-1] if out else "")
    }
    record["output_tail"] = out[-5:]
    if code != 0:
        record["status"] = "timed out" if stopped else "failed"
    ctx.log(f"pytest -m gpu: exit {code}, {record['counts']}")


def step_throughput(ctx: Context, record: dict) -> None:
    """2. (a) Trainer, (b) DataLoader pipeline, (c) plain loop at each batch size, interleaved (bench.throughput)."""
    s = ctx.scale
    args = argparse.Namespace(data=ctx.data_root, loader_workers=0, bf16=False, compile=False)
    found, described = throughput.make_pipelines(args, ctx.device, max(b * s.steps[b] for b in s.batches))
    train_flops = flops_per_image()[1]
    peak = bf16_peak(ctx.device)
    record.update(
        data=described,
        steps=s.steps,
        rounds=s.rounds,
        flops_per_image_train=train_flops,
        epoch_images=EPOCH_IMAGES,
        bf16_peak=({"entry": peak[0], "tflops": peak[1]} if peak else None),
        rows=[],
    )
    try:
        throughput.measure(found, list(s.batches), s.steps, s.rounds, s.warmup_steps, ctx.log)
    finally:  # a time-boxed run keeps the rounds it finished
        for batch in s.batches:
            done = [p for p in found if p.rates.get(batch)]
            for p in done:
                rate = p.median(batch)
                tflops = rate * train_flops / 1e12
                record["rows"].append(
                    {
                        "batch": batch,
                        "pipeline": p.name,
                        "key": p.key,
                        "rounds": len(p.rates[batch]),
                        "images_per_s": rate,
                        "seconds_per_epoch": EPOCH_IMAGES / rate,
                        "tflops": tflops,
                        "percent_of_bf16_peak": 100 * tflops / peak[1] if peak else None,
                    }
                )
            by_key = {p.key: p.median(batch) for p in done}
            if "a" in by_key:
                ctx.trainer_rates[batch] = by_key["a"]
            record.setdefault("ratios", {})[str(batch)] = {
                f"a/{k}": by_key["a"] / by_key[k] for k in "bc" if "a" in by_key and k in by_key
            }
    for row in record["rows"]:
        ctx.log(
            f"batch {row['batch']:>3} {row['pipeline']:<22} {row['images_per_s']:>9.1f} img/s "
            f"{row['seconds_per_epoch']:>9.1f} s/epoch {row['tflops']:>7.3f} TFLOP/s"
        )
    for batch, ratio in record["ratios"].items():
        ctx.log(f"batch {batch}: " + "  ".join(f"{k} {v:.2f}" for k, v in ratio.items()))


def best_k(totals: dict[tuple[int, int], float], ks: list[int], batches: list[int]) -> tuple[int, dict[int, float]]:
    """The K whose total img/s, relative to K=1 and averaged over the batch sizes, is best; a K within K_TIE
    of the best loses to a smaller one. Only K measured at every batch size compete."""
    complete = [k for k in ks if all((k, b) in totals for b in batches)]
    score = {k: statistics.mean(totals[(k, b)] / totals[(ks[0], b)] for b in batches) for k in complete}
    top = max(score.values())
    return min(k for k in complete if score[k] >= K_TIE * top), score


def step_workers(ctx: Context, record: dict) -> None:
    """3. Total img/s with K worker processes sharing the device; the best K becomes --workers-per-gpu's default."""
    s = ctx.scale
    plan = [(k, b) for b in s.worker_batches for k in s.ks]
    record.update(steps=s.worker_steps, rows=[])
    totals: dict[tuple[int, int], float] = {}
    cores = os.cpu_count() or 1
    measurements = measure_plan(ctx.device_arg, ctx.data_root, plan, s.worker_steps, cores, warmup=s.warmup_steps > 0)
    try:
        for m in measurements:
            totals[(m.k, m.batch)] = m.total_images_per_s
            row = {
                "batch": m.batch,
                "k": m.k,
                "total_images_per_s": m.total_images_per_s,
                "per_worker_images_per_s": m.per_worker_images_per_s,
                "vs_k1": m.total_images_per_s / totals[(s.ks[0], m.batch)],
                "peak_memory_mb": m.peak_memory_mb,
            }
            record["rows"].append(row)
            ctx.log(
                f"batch {m.batch:>3} K={m.k}: {row['total_images_per_s']:.1f} img/s total, "
                f"{row['vs_k1']:.2f}x K=1, {row['peak_memory_mb']:.0f} MiB peak per worker"
            )
    finally:
        measurements.close()  # stops the worker processes, also when the time box ends the step
    k, score = best_k(totals, list(s.ks), list(s.worker_batches))
    record.update(best_k=k, score={str(key): v for key, v in score.items()})
    if ctx.cuda and not ctx.toy:
        measured = MeasuredWorkers(k, device_name(ctx.device), ctx.date, ctx.results_relpath, ctx.commit)
        record["default_written"] = str(write_measured_workers(measured).relative_to(ctx.repo))
        ctx.workers = k
        ctx.log(f"best K = {k}: written to {record['default_written']} as the CUDA default of --workers-per-gpu")
    else:
        record["default_written"] = None
        ctx.log(
            f"best K here = {k}; --workers-per-gpu's default left unchanged ({ctx.scale.name} scale on "
            f"{ctx.device.type}; only a GPU run writes it)"
        )


def step_checkpoint(ctx: Context, record: dict) -> None:
    """4. One checkpoint (CheckpointStore.save of what the objective saves each epoch) and one copy of the best
    weights (a state_dict clone on the device, and into pinned host memory on CUDA), as fractions of an epoch."""
    batch = 10  # one step, so the checkpoint holds Adam's moments as a real one does; its size is the same
    data, _ = load_bench_data(ctx.data_root, batch, 10)
    config = TrainConfig(optimizer="adam", lr=1e-3, batch_size=batch, epochs=1, seed=SEED)
    trainer = Trainer(TASK, AlexNetConfig(), config, data, ctx.device)
    start = time.perf_counter()
    next(trainer.epochs())
    # The epoch: 45,000 images at step 2's Trainer rate at the report's batch 100 (else its largest batch).
    ref = 100 if 100 in ctx.trainer_rates else max(ctx.trainer_rates, default=None)
    if ref is not None:
        epoch_s, source = EPOCH_IMAGES / ctx.trainer_rates[ref], f"step 2 Trainer img/s at batch {ref}"
    else:
        epoch_s, source = EPOCH_IMAGES * (time.perf_counter() - start) / batch, f"one timed step at batch {batch}"
    record.update(epoch_seconds=epoch_s, epoch_images=EPOCH_IMAGES, epoch_source=source)
    store = CheckpointStore(ctx.work / "checkpoints")
    saves = []
    for _ in range(ctx.scale.checkpoint_repeats):
        start = time.perf_counter()
        store.save(0, {**trainer.state_dict(), "config": {"train": config.to_dict()}})  # as search.objective does
        saves.append(time.perf_counter() - start)
    record.update(checkpoint_bytes=store.path(0).stat().st_size, checkpoint_seconds=statistics.median(saves))
    store.delete(0)
    model = trainer.model

    def timed(copy: Callable[[], object]) -> float:
        runs = []
        for _ in range(5):
            sync(ctx.device)
            start = time.perf_counter()
            copy()
            sync(ctx.device)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    record["best_copy_device_seconds"] = timed(lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})
    if ctx.cuda:
        pinned = {k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True) for k, v in model.state_dict().items()}
        record["best_copy_host_seconds"] = timed(
            lambda: [pinned[k].copy_(v.detach(), non_blocking=True) for k, v in model.state_dict().items()]
        )
    else:
        record["best_copy_host_seconds"] = record["best_copy_device_seconds"]  # the device is the host
    for key in ("checkpoint", "best_copy_device", "best_copy_host"):
        record[f"{key}_fraction_of_epoch"] = record[f"{key}_seconds"] / epoch_s
    ctx.log(
        f"checkpoint {record['checkpoint_bytes'] / 1e6:.1f} MB: {record['checkpoint_seconds']:.3f} s = "
        f"{100 * record['checkpoint_fraction_of_epoch']:.2f}% of a {epoch_s:.1f} s epoch ({source}); "
        f"best-weights copy {record['best_copy_device_seconds'] * 1e3:.1f} ms on the device, "
        f"{record['best_copy_host_seconds'] * 1e3:.1f} ms to the host"
    )


def grid_trials(storage: str, study_name: str) -> tuple[list[TrialEpochs], dict[str, int]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials: list[TrialEpochs] = []
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
        if "batch_size" in t.params:
            trials.append(
                TrialEpochs(
                    tuple(sorted(t.params.items())),
                    int(t.params["batch_size"]),
                    list(t.user_attrs.get("epoch_seconds") or []),
                )
            )
    return trials, states


def step_grid(ctx: Context, record: dict) -> None:
    """5. The report's 36-config Table 1 through the real CLI, stopped at its budget and extrapolated."""
    import tomllib

    s = ctx.scale
    db = ctx.work / "grid.db"
    storage, study = f"sqlite:///{db}", "table1-grid"
    cmd = [
        sys.executable,
        "-m",
        "search.cli",
        "search",
        "--storage",
        storage,
        "--study",
        study,
        "--space",
        TABLE1,
        "--sampler",
        "grid",
        "--epochs",
        str(s.grid_epochs),
        "--pruner",
        "none",
        "--patience",
        "0",
        "--data",
        ctx.data_root,
        "--device",
        ctx.device_arg,
        "--artifacts",
        str(ctx.work / "grid-artifacts"),
        *s.grid_sizes,
    ]
    if ctx.cuda:
        cmd += ["--workers-per-gpu", str(ctx.workers)]
    record.update(
        command="alexsearch " + " ".join(cmd[3:]),
        budget_s=ctx.grid_budget,
        epochs=s.grid_epochs,
        workers=ctx.workers if ctx.cuda else 1,
    )
    ctx.log(f"grid: {record['command']}  (budget {ctx.grid_budget:.0f} s)")
    log = ctx.work / "grid.log"
    code, seconds, stopped = run_process(cmd, log, ctx.grid_budget, ctx.repo, stop_signal=signal.SIGINT)
    record.update(exit_code=code, stopped_at_budget=stopped, output_tail=tail(log, 5))
    try:
        trials, states = grid_trials(storage, study)
    except KeyError:  # optuna: no such study
        if not stopped:
            raise RuntimeError(f"the grid search made no study (exit {code}): {' | '.join(tail(log, 3))}") from None
        record.update(status="timed out", note=f"the {ctx.grid_budget:.0f} s budget ended before the study existed")
        ctx.log(f"grid: {record['note']}")
        return
    grid = tomllib.loads((ctx.repo / TABLE1).read_text())["params"]
    per_batch = math.prod(len(p["choices"]) for name, p in grid.items() if name != "batch_size")
    configs = {int(b): per_batch for b in grid["batch_size"]["choices"]}
    complete = states.get("COMPLETE", 0)
    record.update(configs=sum(configs.values()), trial_states=states, complete=complete)
    if not stopped and code == 0 and complete == sum(configs.values()):
        record.update(wall_seconds=seconds, extrapolated=False)
        ctx.log(f"grid: all {complete} configs x {s.grid_epochs} epochs in {seconds:.1f} s (measured)")
        return
    train_images = EPOCH_IMAGES if not s.grid_sizes else int(s.grid_sizes[s.grid_sizes.index("--train-size") + 1])
    # Step 2's rate at the same batch size (GPU scale measures 10, 100, 500), else at the nearest one it measured.
    nearest = {b: min(ctx.trainer_rates, key=lambda m: abs(m - b)) for b in configs if ctx.trainer_rates}
    fallback = {b: train_images / ctx.trainer_rates[m] for b, m in nearest.items()}
    record["fallback_rate_batch"] = {str(b): m for b, m in nearest.items()}
    try:
        est = extrapolate(trials, configs, s.grid_epochs, seconds, record["workers"], fallback)
    except ValueError as e:  # a batch size neither the grid nor step 2 measured
        record.update(status="timed out", note=f"too little measured to extrapolate: {e}")
        ctx.log(f"grid: {record['note']}")
        return
    record.update(
        wall_seconds=est.total_seconds,
        extrapolated=True,
        elapsed_seconds=est.elapsed_seconds,
        epoch_seconds={str(b): v for b, v in est.epoch_seconds.items()},
        epoch_seconds_source={str(b): v for b, v in est.source.items()},
        finished_epochs={str(b): v for b, v in est.finished_epochs.items()},
        remaining_epochs={str(b): v for b, v in est.remaining_epochs.items()},
    )
    ctx.log(
        f"grid: stopped at {seconds:.0f} s with {complete} of {record['configs']} configs complete; "
        f"whole grid {est.total_seconds:.0f} s (extrapolated); epoch seconds by batch size "
        + ", ".join(f"{b}: {t:.2f} ({est.source[b]})" for b, t in est.epoch_seconds.items())
    )


def step_accuracy(ctx: Context, record: dict) -> None:
    """6. Same accuracy: the Trainer (bf16 autocast on CUDA, its default) against a plain fp32 loop, shortened."""
    s = ctx.scale
    data, described = load_bench_data(ctx.data_root, s.acc_train, s.acc_val)
    record.update(
        data=described,
        seeds=s.acc_seeds,
        epochs=s.acc_epochs,
        train_images=len(data.train),
        val_images=len(data.eval),
        shortened=f"{s.acc_seeds} seeds x {s.acc_epochs} epochs, "
        f"against the full check's 3 seeds x 10 epochs (python -m bench.throughput --accuracy)",
        runs=[],
    )
    runs: list[accuracy.AccuracyRun] = []
    for seed in range(s.acc_seeds):  # one seed at a time, so a time-boxed step keeps the seeds it finished
        new = accuracy.compare(data, s.acc_epochs, [seed], ctx.device, False, ctx.log)
        runs += new
        record["runs"] += [
            {"name": r.name, "seed": r.seed, "val_acc": r.val_acc, "images_per_s": r.images_per_s} for r in new
        ]
    table, ok = accuracy.format_runs(runs)
    plain = statistics.mean(r.val_acc for r in runs if r.name == accuracy.PLAIN)
    fast = [r for r in runs if r.name != accuracy.PLAIN]
    record.update(
        trainer=fast[0].name,
        precision="bf16" if ctx.cuda else "fp32",
        plain_mean_val_acc=plain,
        trainer_mean_val_acc=statistics.mean(r.val_acc for r in fast),
        tolerance=accuracy.TOLERANCE,
        within_tolerance=ok,
    )
    ctx.log(table)
    ctx.log(f"{'PASS' if ok else 'FAIL'} ({record['shortened']})")
