"""`make gpu-check` in toy mode end to end (so it cannot rot), and its parts: time box, best K, extrapolation,
the measured --workers-per-gpu default."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.gpu_check import StepTimedOut, time_box
from bench.gpu_report import GPU_ONLY
from bench.gpu_steps import TOY, best_k
from bench.grid_extrapolate import TrialEpochs, extrapolate
from search.workers.placement import MEASURED_WORKERS_FILE, MeasuredWorkers, measured_workers, write_measured_workers

REPO = Path(__file__).resolve().parents[1]
STEPS = ("pytest", "throughput", "workers", "checkpoint", "grid", "accuracy")


@pytest.mark.slow
@pytest.mark.bench  # runs every benchmark step at toy scale: the largest CPU cost in the suite (about 45 s)
def test_toy_run_writes_every_step_and_lists_gpu_figures_as_not_measured(tmp_path):
    default_before = MEASURED_WORKERS_FILE.read_bytes()
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gpu_check",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--data",
            str(tmp_path / "no-cifar"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "synthetic images in the CIFAR-10 layout" in proc.stdout
    assert "GPU-only figures NOT measured here" in proc.stdout
    [json_path] = out.glob("gpu-*-cpu-toy.json")
    assert json_path.with_suffix(".md").is_file()
    r = json.loads(json_path.read_text())
    for key in ("command", "commit", "date", "device", "torch", "cuda", "python", "data", "total_seconds"):
        assert key in r
    assert r["device"] == "cpu" and r["scale"] == "toy" and r["real_cifar10"] is False
    assert r["gpu_only_not_measured"] == list(GPU_ONLY)
    assert list(r["steps"]) == list(STEPS)
    steps = r["steps"]
    for name, step in steps.items():  # a loaded machine may run a step out of its box; nothing may break
        assert step["status"] in ("ok", "timed out"), (name, step)
        assert step["seconds"] <= step["time_box_s"] + 20
    if steps["pytest"]["status"] == "ok":
        assert steps["pytest"]["counts"].get("skipped", 0) >= 1  # the gpu tests skip without CUDA
    if steps["throughput"]["status"] == "ok":
        rows = steps["throughput"]["rows"]
        assert {(row["batch"], row["key"]) for row in rows} == {(b, k) for b in TOY.batches for k in "abc"}
        assert all(row["images_per_s"] > 0 and row["percent_of_bf16_peak"] is None for row in rows)
        assert steps["throughput"]["bf16_peak"] is None
        assert all(set(ratio) == {"a/b", "a/c"} for ratio in steps["throughput"]["ratios"].values())
    if steps["workers"]["status"] == "ok":
        assert {(row["batch"], row["k"]) for row in steps["workers"]["rows"]} == {
            (b, k) for b in TOY.worker_batches for k in (1, 2)
        }
        assert steps["workers"]["best_k"] in (1, 2) and steps["workers"]["default_written"] is None
    if steps["checkpoint"]["status"] == "ok":
        assert steps["checkpoint"]["checkpoint_bytes"] > 100e6  # AlexNet's weights and Adam's two moments
        assert 0 < steps["checkpoint"]["checkpoint_fraction_of_epoch"] < 1
    if steps["grid"]["status"] == "ok":
        grid = steps["grid"]
        assert grid["configs"] == 36 and grid["wall_seconds"] > 0
        assert grid["extrapolated"] == grid["stopped_at_budget"]
        if grid["extrapolated"]:
            assert "extrapolated" in json_path.with_suffix(".md").read_text()
    if steps["accuracy"]["status"] == "ok":
        assert steps["accuracy"]["precision"] == "fp32" and "within_tolerance" in steps["accuracy"]
    assert MEASURED_WORKERS_FILE.read_bytes() == default_before  # a CPU run never changes the CUDA default


def test_time_box_stops_a_step_and_restores_the_alarm():
    start = time.perf_counter()
    with pytest.raises(StepTimedOut), time_box(0.2):
        time.sleep(5)
    assert time.perf_counter() - start < 2
    with time_box(5):  # a step that ends in time raises nothing later
        pass
    time.sleep(0.1)


def test_best_k_prefers_fewer_workers_within_three_percent():
    totals = {
        (1, 10): 100.0,
        (2, 10): 190.0,
        (4, 10): 300.0,
        (1, 100): 1000.0,
        (2, 100): 1500.0,
        (4, 100): 1540.0,
        (8, 10): 305.0,
    }  # K=8 missing at batch 100: it does not compete
    k, score = best_k(totals, [1, 2, 4, 8], [10, 100])
    assert k == 4 and set(score) == {1, 2, 4}
    totals[(4, 10)] = 190.0 * 1.02  # now K=4 is within 3% of K=2's score
    totals[(4, 100)] = 1500.0
    assert best_k(totals, [1, 2, 4, 8], [10, 100])[0] == 2


def test_extrapolation_counts_remaining_epochs_per_batch_size():
    trials = [
        TrialEpochs(("a",), 10, [4.0, 6.0]),  # config a, 2 of 3 epochs
        TrialEpochs(("a",), 10, [5.0]),  # a retry of a: its epochs are counted once, from the furthest
        TrialEpochs(("b",), 100, [1.0, 1.0, 1.0]),
    ]
    est = extrapolate(
        trials, {10: 2, 100: 2, 500: 1}, epochs=3, elapsed=30.0, workers=2, fallback_epoch_seconds={500: 0.5, 10: 99.0}
    )
    assert est.finished_epochs == {10: 2, 100: 3, 500: 0} and est.remaining_epochs == {10: 4, 100: 3, 500: 3}
    assert est.epoch_seconds == {10: 5.0, 100: 1.0, 500: 0.5}
    assert est.source == {10: "grid", 100: "grid", 500: "step 2 throughput"}
    assert est.total_seconds == pytest.approx(30 + 4 * 5.0 / 2 + 3 * 1.0 / 2 + 3 * 0.5)
    with pytest.raises(ValueError, match="batch size 500"):
        extrapolate(trials, {10: 2, 500: 1}, 3, 30.0, 2, {})


def test_workers_per_gpu_default_reads_the_measured_file(tmp_path):
    path = tmp_path / "workers_per_gpu.json"
    written = MeasuredWorkers(4, "NVIDIA H200", "2026-12-01", "bench/results/gpu-20261201-nvidia-h200.json", "abc")
    write_measured_workers(written, path)
    assert measured_workers(path) == written and "measured on NVIDIA H200" in written.describe()
    with pytest.warns(UserWarning, match="defaults to 1"):
        assert measured_workers(tmp_path / "missing.json").workers_per_gpu == 1
    path.write_text('{"workers_per_gpu": 0}')
    with pytest.warns(UserWarning, match="workers_per_gpu"):
        assert measured_workers(path).workers_per_gpu == 1


def test_search_cli_default_is_the_shipped_measured_value():
    from search.cli import build_parser

    args = build_parser().parse_args(["search"])
    assert args.workers_per_gpu == measured_workers().workers_per_gpu
