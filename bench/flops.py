"""Arithmetic per image and the device's bf16 peak, for TFLOP/s figures on CUDA."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from model.alexnet import AlexNet, AlexNetConfig

# Dense bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets (the "with sparsity" figures halved).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}


@functools.cache
def flops_per_image() -> tuple[float, float]:
    """(forward, one training step) FLOPs per image of the report's AlexNet, counted by torch on a batch of 2
    (a multiply-add counts 2). The training step is forward + backward; the optimizer's elementwise work is
    not counted."""
    model = AlexNet(AlexNetConfig())
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(x), y).backward()
    return fwd.get_total_flops() / 2, step.get_total_flops() / 2


def bf16_peak(device: torch.device) -> tuple[str, float] | None:
    """(table entry, dense bf16 peak TFLOP/s) of a CUDA device whose name holds an entry of BF16_PEAK_TFLOPS
    (the longest matching entry wins), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [key for key in BF16_PEAK_TFLOPS if key in name]
    if not matches:
        return None
    key = max(matches, key=len)
    return key, BF16_PEAK_TFLOPS[key]


def bf16_peak_tflops(device: torch.device) -> float | None:
    """The dense bf16 peak of a CUDA device, if its name is in the table (longest matching name wins)."""
    found = bf16_peak(device)
    return found[1] if found else None
