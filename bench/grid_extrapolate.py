"""The Table-1 grid's wall time, extrapolated from the epochs a time-boxed run finished.

Method (docs/gpu-check.md): an epoch's cost depends mostly on the batch size (the number of steps), so
  1. t[b] = the mean wall seconds of one epoch over every epoch that trials of batch size b finished; these
     were measured while K workers shared the device, so one epoch of wall clock costs t[b] / K;
  2. a batch size with no finished epoch takes t[b] from the single-process Trainer throughput of step 2 instead
     (train images / img/s): one process alone on the device, so its epoch costs t[b] of wall clock;
  3. remaining[b] = epochs x (configs of batch size b) - epochs finished by trials of batch size b
     (a config's epochs are counted once, from its furthest trial);
  4. total = elapsed + sum over b of remaining[b] x (t[b] / K, or t[b] from step 2).
Optimizer, learning rate and batch norm change an epoch's time little against the batch size; the tail, where
fewer than K trials are left, is ignored.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class TrialEpochs:
    config: tuple  # the trial's params, as a hashable key
    batch_size: int
    epoch_seconds: list[float]  # wall seconds of each finished epoch


@dataclass(frozen=True)
class Extrapolation:
    total_seconds: float
    elapsed_seconds: float
    epoch_seconds: dict[int, float]  # batch size -> t[b]
    source: dict[int, str]  # batch size -> "grid" or "step 2 throughput"
    remaining_epochs: dict[int, int]
    finished_epochs: dict[int, int]


def extrapolate(
    trials: list[TrialEpochs],
    configs_per_batch: dict[int, int],
    epochs: int,
    elapsed: float,
    workers: int,
    fallback_epoch_seconds: dict[int, float],
) -> Extrapolation:
    """The grid's total wall seconds by the method above. fallback_epoch_seconds: batch -> single-process epoch
    seconds (step 2); a batch size in neither the grid nor the fallback raises ValueError."""
    furthest: dict[tuple, TrialEpochs] = {}
    times: dict[int, list[float]] = defaultdict(list)
    for t in trials:
        times[t.batch_size].extend(t.epoch_seconds)
        if t.config not in furthest or len(t.epoch_seconds) > len(furthest[t.config].epoch_seconds):
            furthest[t.config] = t
    finished = {b: 0 for b in configs_per_batch}
    for t in furthest.values():
        finished[t.batch_size] = finished.get(t.batch_size, 0) + min(len(t.epoch_seconds), epochs)
    epoch_seconds, source, remaining = {}, {}, {}
    total = elapsed
    for b, n_configs in sorted(configs_per_batch.items()):
        remaining[b] = max(0, epochs * n_configs - finished[b])
        if times[b]:
            epoch_seconds[b], source[b] = statistics.mean(times[b]), "grid"
            total += remaining[b] * epoch_seconds[b] / workers
        elif b in fallback_epoch_seconds:
            epoch_seconds[b], source[b] = fallback_epoch_seconds[b], "step 2 throughput"
            total += remaining[b] * epoch_seconds[b]
        elif remaining[b]:
            raise ValueError(f"batch size {b}: no finished epoch in the grid and no step 2 throughput")
    return Extrapolation(total, elapsed, epoch_seconds, source, remaining, finished)
