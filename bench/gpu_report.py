"""The files `make gpu-check` leaves: gpu-YYYYMMDD-<device>.json (every figure) and a short markdown table beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GPU_ONLY = (
    "pytest -m gpu on CUDA (its tests are skipped without a GPU)",
    "throughput on a GPU: img/s, s per 45,000-image epoch, TFLOP/s and % of the bf16 dense peak",
    "workers per GPU: the best K on a GPU (the --workers-per-gpu default was left unchanged)",
    "checkpoint and best-weights copy as a fraction of a GPU epoch",
    "the Table-1 grid's wall time: 36 configs x 10 epochs on full CIFAR-10 on a GPU",
    "bf16 same accuracy on CUDA",
)


def file_stem(date: str, device: str, toy: bool) -> str:
    """gpu-YYYYMMDD-<device>, e.g. gpu-20261201-nvidia-h200; a toy run ends in -toy."""
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") or "device"
    return f"gpu-{date.replace('-', '')}-{slug}" + ("-toy" if toy else "")


def not_measured(results: dict[str, Any]) -> list[str]:
    """The GPU figures this run could not give, and why."""
    if results["device_type"] != "cuda":
        return list(GPU_ONLY)
    missing = []
    if results["scale"] == "toy":
        missing.append("every GPU figure at full scale (--toy was given)")
    peak = results["steps"].get("throughput", {}).get("bf16_peak", "absent")
    if peak is None:
        missing.append(f"% of the bf16 dense peak: {results['device']} is not in bench/flops.py's BF16_PEAK_TFLOPS")
    if not results["real_cifar10"]:
        missing.append("accuracy on real CIFAR-10 (this run trained on synthetic images)")
    for name, record in results["steps"].items():
        if record.get("status") not in ("ok", "skipped"):
            missing.append(f"step {name}: {record.get('status')} (see its figures for what it measured)")
    return missing


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(results: dict[str, Any]) -> str:
    steps = results["steps"]
    lines = [
        f"# gpu-check: {results['device']}, {results['date']} ({results['scale']} scale)",
        "",
        f"- command: `{results['command']}`",
        f"- commit {results['commit']}; torch {results['torch']}, CUDA {results['cuda']}, "
        f"cuDNN {results['cudnn']}; device {results['device']}; {results['cpu_count']} CPU cores",
        f"- data: {results['data']}",
        f"- total {results['total_seconds']:.0f} s",
        "",
        "| step | status | seconds | time box s |",
        "|---|---|---|---|",
    ]
    for name, r in steps.items():
        lines.append(
            f"| {name} | {r.get('status')} | {_fmt(r.get('seconds'), '.0f')} | {_fmt(r.get('time_box_s'), '.0f')} |"
        )
    t = steps.get("throughput", {})
    if t.get("rows"):
        peak = t.get("bf16_peak")
        lines += [
            "",
            f"Throughput (median of {t['rounds']} interleaved round(s); epoch = {t['epoch_images']:,} "
            f"images; peak: {peak['entry']} {peak['tflops']:.0f} TFLOP/s bf16 dense)"
            if peak
            else f"Throughput (median of {t['rounds']} interleaved round(s); epoch = {t['epoch_images']:,} "
            "images; no bf16 peak known for this device)",
            "",
            "| batch | pipeline | img/s | s/epoch | TFLOP/s | % bf16 peak |",
            "|---|---|---|---|---|---|",
        ]
        for row in t["rows"]:
            lines.append(
                f"| {row['batch']} | {row['pipeline']} | {row['images_per_s']:.1f} | "
                f"{row['seconds_per_epoch']:.2f} | {row['tflops']:.3f} | "
                f"{_fmt(row['percent_of_bf16_peak'], '.1f')} |"
            )
        for batch, ratio in t.get("ratios", {}).items():
            lines.append(f"\nbatch {batch}: " + ", ".join(f"{k} = {v:.2f}" for k, v in ratio.items()))
    w = steps.get("workers", {})
    if w.get("rows"):
        lines += ["", "| batch | K | total img/s | vs K=1 | peak MiB/worker |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['batch']} | {r['k']} | {r['total_images_per_s']:.1f} | {r['vs_k1']:.2f} | "
            f"{r['peak_memory_mb']:.0f} |"
            for r in w["rows"]
        ]
        if "best_k" in w:
            written = w["default_written"] or "nothing (not a GPU run)"
            lines.append(f"\nbest K = {w['best_k']}; default written to: {written}")
    c = steps.get("checkpoint", {})
    if "checkpoint_seconds" in c:
        lines += [
            "",
            f"Checkpoint {c['checkpoint_bytes'] / 1e6:.1f} MB: {c['checkpoint_seconds']:.3f} s = "
            f"{100 * c['checkpoint_fraction_of_epoch']:.2f}% of a {c['epoch_seconds']:.2f} s epoch "
            f"({c['epoch_source']}); best-weights copy {1e3 * c['best_copy_device_seconds']:.1f} ms on the "
            f"device ({100 * c['best_copy_device_fraction_of_epoch']:.3f}%), "
            f"{1e3 * c['best_copy_host_seconds']:.1f} ms to the host "
            f"({100 * c['best_copy_host_fraction_of_epoch']:.3f}%)",
        ]
    g = steps.get("grid", {})
    if "wall_seconds" in g:
        how = "extrapolated" if g["extrapolated"] else "measured"
        lines += [
            "",
            f"Table-1 grid ({g['configs']} configs x {g['epochs']} epochs, K = {g['workers']}): "
            f"{g['wall_seconds']:.0f} s ({how}); {g['complete']} complete in the "
            f"{g.get('elapsed_seconds', g['wall_seconds']):.0f} s run",
        ]
        if g["extrapolated"]:
            lines.append(
                "epoch seconds by batch size: "
                + ", ".join(f"{b}: {v:.2f} ({g['epoch_seconds_source'][b]})" for b, v in g["epoch_seconds"].items())
            )
    a = steps.get("accuracy", {})
    if "within_tolerance" in a:
        lines += [
            "",
            f"Same accuracy, {a['trainer']} vs plain fp32 loop ({a['shortened']}): "
            f"{a['trainer_mean_val_acc']:.4f} vs {a['plain_mean_val_acc']:.4f}, "
            f"{'PASS' if a['within_tolerance'] else 'FAIL'} (tolerance {100 * a['tolerance']:.1f} points)",
        ]
    missing = results["gpu_only_not_measured"]
    if missing:
        lines += ["", "Not measured (GPU-only here):"] + [f"- {m}" for m in missing]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path, stem: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
