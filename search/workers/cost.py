"""What a search will cost, printed before it starts: trials x epochs x items, times a measured speed.

The speed comes from the study's own finished trials when it has some (their recorded epoch times, on the
study's data), else from a few timed training steps per batch size of the space, on this device with the
threads each worker will get; unless those steps would cost more than MAX_TIMING_SHARE of the training they
estimate (a small search, where they would be a large part of its time: `--estimate-only` times them anyway).
Evaluation is counted as a forward pass over the validation items at three
times the training speed (a forward pass is about a third of a training step's work). Pruning and patience
end trials early, so the figure is an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from model.tasks import Split, TaskData
from model.train import StepProgress, Trainer
from search.settings import SearchConfig
from search.space.space import Choice, Range, Space
from search.workers.display import duration

WARMUP_STEPS = 2  # untimed: the first steps pay for allocation and kernel selection
TIMED_STEPS = 2  # at least; more for small batches, until MIN_TIMED_IMAGES
MIN_TIMED_IMAGES = 100  # 2 steps of batch 10 (20 images) read 2x too slow on a loaded CPU: per-step noise
EVAL_SPEEDUP = 3.0  # evaluation images per second / training images per second
CPU_HINT_S = 3600.0  # a CPU search over this long gets a quick-run hint
MAX_TIMING_SHARE = 0.05  # timed steps may train at most this share of the images the search will train
QUICK = {"train_size": 5000, "val_size": 1000, "epochs": 3}  # the hint's quick run


@dataclass(frozen=True)
class Estimate:
    trials: int  # still to run
    epochs: int
    train_items: int
    val_items: int
    parallel: int  # trials run at once
    epoch_s: float  # mean wall seconds of one epoch of one trial, evaluation included
    source: str  # where the speed came from
    speeds: dict[int, float] = field(default_factory=dict)  # batch size -> training images/s (timed steps)
    device: str = "cpu"

    @property
    def total_s(self) -> float:
        return math.ceil(self.trials / self.parallel) * self.epochs * self.epoch_s

    def quick_s(self) -> float:
        """The same search with QUICK's sizes (the hint's run)."""
        per_item = self.epoch_s / max(1, self.train_items + self.val_items / EVAL_SPEEDUP)
        items = min(QUICK["train_size"], self.train_items) + min(QUICK["val_size"], self.val_items) / EVAL_SPEEDUP
        return math.ceil(self.trials / self.parallel) * QUICK["epochs"] * per_item * items

    def lines(self) -> list[str]:
        if self.trials <= 0:
            return []
        if math.isnan(self.epoch_s):
            return [
                f"cost: {self.trials} trials x {self.epochs} epochs x {self.train_items:,} train + "
                f"{self.val_items:,} val items; {self.source}"
            ]
        speeds = ", ".join(f"batch {b}: {s:,.0f} img/s" for b, s in sorted(self.speeds.items()))
        out = [
            f"cost: {self.trials} trials x {self.epochs} epochs x {self.train_items:,} train + {self.val_items:,} "
            f"val items, {self.epoch_s:.1f} s per epoch ({self.source}{'; ' + speeds if speeds else ''})",
            f"cost: at most {duration(self.total_s)} of wall time on {self.device} with {self.parallel} trial(s) "
            "at a time (pruning and patience end trials early)",
        ]
        if self.device == "cpu" and self.total_s > CPU_HINT_S:
            out.append(
                f"cost: hint: for a quick first run add --train-size {QUICK['train_size']} --val-size "
                f"{QUICK['val_size']} --epochs {QUICK['epochs']} (about {duration(self.quick_s())}), or "
                "use a GPU"
            )
        return out


def estimate_cost(
    settings: SearchConfig,
    space: Space,
    data: TaskData,
    device: torch.device,
    workers: int,
    gpus: int,
    threads: int | None,
    study: optuna.Study | None = None,
    always_time: bool = False,
) -> Estimate:
    """The cost of the trials the study still needs. study: the existing study, if any (read for its
    finished trials' speed and count). always_time: time training steps even for a small search."""
    finished = _finished(study)
    left = max(0, settings.trials - sum(1 for t in finished if "duplicate_of" not in t.user_attrs))
    parallel = min(workers, gpus) if gpus else workers
    common: dict[str, Any] = dict(
        trials=left,
        epochs=settings.epochs,
        train_items=len(data.train),
        val_items=len(data.eval),
        parallel=max(1, parallel),
        device=device.type,
    )
    seconds = [s for t in finished for s in t.user_attrs.get("epoch_seconds", [])]
    if seconds:
        return Estimate(
            epoch_s=sum(seconds) / len(seconds),
            source=f"measured: {len(seconds)} epochs of the study's {len(finished)} finished trials",
            **common,
        )
    if left == 0:
        return Estimate(epoch_s=0.0, source="nothing left to run", **common)
    timing, training = timed_images(space, len(data.train)), left * settings.epochs * len(data.train)
    if not always_time and timing > MAX_TIMING_SHARE * training:
        return Estimate(
            epoch_s=math.nan,
            source=f"not timed: its steps would train {timing:,} images, over {MAX_TIMING_SHARE:.0%} of the "
            f"search's {training:,} (--estimate-only times them)",
            **common,
        )
    speeds = time_batch_sizes(settings, space, data, device, threads)
    epoch_s = sum(len(data.train) / s + len(data.eval) / (EVAL_SPEEDUP * s) for s in speeds.values()) / len(speeds)
    return Estimate(
        epoch_s=epoch_s,
        speeds=speeds,
        source=f"timed training steps (at least {MIN_TIMED_IMAGES} "
        f"images per batch size, after {WARMUP_STEPS} warm-up steps) on {device.type}"
        + (f", {threads} thread(s) per worker" if threads else ""),
        **common,
    )


def _finished(study: optuna.Study | None) -> list[optuna.trial.FrozenTrial]:
    if study is None:
        return []
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def batch_sizes(space: Space) -> list[int]:
    """The batch sizes trials will use: the choices, a range's ends, or the one fixed size."""
    for p in space.params:
        if p.name == "batch_size":
            if isinstance(p, Choice):
                return sorted({int(v) for v in p.choices})
            if isinstance(p, Range):
                return sorted({int(p.low), int(p.high)})
    _, train = space.build(_typical(space))
    return [train.batch_size]


def _typical(space: Space) -> dict:
    """One value per parameter: the first choice, the (geometric) middle of a range."""
    values = {}
    for p in space.params:
        if isinstance(p, Choice):
            values[p.name] = p.choices[0]
        else:
            mid = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
            values[p.name] = int(round(mid)) if p.integer else mid
    return values


def _steps(batch_size: int) -> int:
    return WARMUP_STEPS + max(TIMED_STEPS, math.ceil(MIN_TIMED_IMAGES / batch_size))


def timed_images(space: Space, train_items: int) -> int:
    """Images time_batch_sizes trains, all batch sizes together."""
    return sum(min(train_items, b * _steps(b)) for b in batch_sizes(space))


def time_batch_sizes(
    settings: SearchConfig, space: Space, data: TaskData, device: torch.device, threads: int | None
) -> dict[int, float]:
    """Training images per second for each batch size, from a few timed steps on a slice of the data."""
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        speeds = {}
        for b in batch_sizes(space):
            values = {**_typical(space), **({"batch_size": b} if "batch_size" in space.names else {})}
            model_config, train = space.build(
                values,
                epochs=1,
                seed=settings.seed,
                **({"precision": settings.precision} if settings.precision else {}),
            )
            n = min(len(data.train), b * _steps(b))
            # One epoch over n items, timed from the end of the warm-up steps. One eval item: no eval cost.
            sliced = TaskData(
                Split(data.train.x[:n], data.train.y[:n]), Split(data.eval.x[:1], data.eval.y[:1]), data.eval_name
            )
            warm: list[StepProgress] = []

            def keep_warm(p: StepProgress, w: list[StepProgress] = warm) -> None:
                if p.steps == WARMUP_STEPS:
                    w.append(p)

            trainer = Trainer(
                space.task,
                model_config,
                train.replace(batch_size=min(b, n)),
                sliced,
                device,
                on_progress=keep_warm,
                progress_every_s=0.0,
            )
            (stats,) = trainer.epochs()
            if warm and stats.seconds > warm[0].seconds:
                speeds[b] = (n - warm[0].images) / (stats.seconds - warm[0].seconds)
            else:  # the slice held no more than the warm-up
                speeds[b] = stats.images_per_s
        return speeds
    finally:
        torch.set_num_threads(old_threads)
