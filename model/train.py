"""The training loop: one config, E epochs, one device, data resident as tensors.

Each epoch draws a seeded permutation on the device, trains, evaluates in large batches under
inference_mode and then syncs with the host once to read all its numbers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from model.config import MAX_SEED, ConfigError, JsonConfig
from model.errors import DivergedError, Interrupted
from model.tasks import Preprocess, Task, TaskData

Precision = Literal["auto", "fp32", "bf16"]  # auto: bf16 autocast on CUDA, fp32 elsewhere


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    batch_size: int = 100
    epochs: int = 10
    seed: int = 0  # seeds the initial weights, each epoch's permutation, dropout and augmentation
    augment: bool = False  # random crop (4 px padding) + horizontal flip, on the device
    precision: Precision = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere

    def __post_init__(self) -> None:
        self.check_types()
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")


@dataclass
class EpochStats:
    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy over the epoch's batches, nats
    train_acc: float  # fraction of training images classified right during the epoch (dropout on)
    val_acc: float  # fraction right on the eval split ("val" in search, "test" in final)
    seconds: float  # wall time of the epoch, training and evaluation
    images_per_s: float  # training images / seconds

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class StepProgress:
    """Where a long epoch is, for a progress line: passed to the Trainer's on_progress."""

    epoch: int  # 1-based, the epoch under way
    steps: int  # training steps done in this epoch
    total_steps: int
    images: int  # training images seen in this epoch
    seconds: float  # since the epoch began

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


FUSED_OPTIMIZER_DEVICES = ("cuda", "cpu")  # where torch (>= 2.4) has fused Adam and SGD


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # Fused kernels: on CUDA one launch per step instead of one per parameter tensor; on CPU one pass over
    # memory instead of ~10 per tensor. torch's default on CPU is the per-tensor loop, which took 370 ms per Adam
    # step of AlexNet's 23M parameters here against 31 ms fused (1 thread): at batch 10 that was 60% of a step.
    extra: dict[str, Any] = {"fused": True} if device.type in FUSED_OPTIMIZER_DEVICES else {}
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **extra)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, **extra
    )


def epoch_seed(seed: int, epoch: int) -> int:
    # Each epoch's randomness depends only on (seed, epoch), so a resumed run repeats it exactly.
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


class Trainer:
    """Trains `model` on `data` with `config`. Iterate `epochs()` to run; `state_dict()` to checkpoint."""

    def __init__(
        self,
        task: Task,
        model_config: JsonConfig,
        config: TrainConfig,
        data: TaskData,
        device: torch.device,
        eval_batch_size: int | None = None,
        evaluate_each_epoch: bool = True,
        compile: bool = False,
        should_stop: Callable[[], bool] | None = None,
        on_progress: Callable[[StepProgress], None] | None = None,
        progress_every_s: float = 30.0,
    ) -> None:
        # evaluate_each_epoch=False: epochs() skips the eval split and reports val_acc as NaN (the final run
        # touches the test set once, through predict(), after the last epoch).
        self.evaluate_each_epoch = evaluate_each_epoch
        self.task, self.config, self.device = task, config, device
        self.should_stop = should_stop  # checked before each step; True -> raise Interrupted
        # Called inside an epoch once progress_every_s seconds have passed since the epoch began or the last call.
        self.on_progress, self.progress_every_s = on_progress, progress_every_s
        torch.manual_seed(config.seed)  # initial weights
        model = task.build_model(model_config)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs
        self.model = model.to(device)
        # compile=True: the training forward (and so its backward) runs through torch.compile with static shapes.
        # Off by default: on CPU it cost ~80 s of compiling for no speedup (bench/throughput.py --compile measures
        # it on any device). Evaluation stays eager, which spares the recompiles for eval mode and eval batch size.
        self.train_forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.optimizer = make_optimizer(self.model, config, device)
        self.train, self.eval = data.train.to(device), data.eval.to(device)
        self.preprocess: Preprocess = task.make_preprocess(device)
        self.bf16 = use_bf16(config, device)
        self.eval_batch_size = eval_batch_size or (4096 if device.type == "cuda" else 1000)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, float]] = []

    def _autocast(self) -> contextlib.AbstractContextManager:
        # nullcontext when off: entering a disabled torch.autocast still cost ~30 us a step on CPU (7% of a
        # mlp-synth epoch, bench/overhead.py).
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def _train_epoch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.train()
        n = len(self.train)
        # Each step keeps its loss and predictions as device tensors, summed once after the epoch: one kernel a step
        # (argmax) instead of five accumulating ones, which cost 17% of a small CPU epoch; still no sync per step.
        losses: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        perm = torch.randperm(n, device=self.device, generator=generator)
        batches = perm.split(self.config.batch_size)
        start = last_report = time.perf_counter()
        for step, idx in enumerate(batches):
            if self.should_stop is not None and self.should_stop():  # a Python call per step: negligible
                raise Interrupted(f"stopped in epoch {self.epoch + 1}")
            if self.on_progress is not None and step and time.perf_counter() - last_report >= self.progress_every_s:
                # Asynchronous devices may lag the host by a few queued steps: img/s is close, not exact.
                last_report = time.perf_counter()
                self.on_progress(
                    StepProgress(
                        self.epoch + 1, step, len(batches), min(n, step * self.config.batch_size), last_report - start
                    )
                )
            x = self.train.x[idx]
            if self.config.augment:
                x = self.task.augment(x, generator)
            x, y = self.preprocess(x), self.train.y[idx]
            with self._autocast():
                logits = self.train_forward(x)
                loss = F.cross_entropy(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
            preds.append(logits.detach().argmax(1))
        # Batch sizes as a device tensor made on the device: a tensor copied from the host would be a second sync.
        sizes = torch.full((len(batches),), float(self.config.batch_size), device=self.device)
        sizes[-1] = len(batches[-1])
        loss_sum = (torch.stack(losses) * sizes).sum()
        correct = (torch.cat(preds) == self.train.y[perm]).sum()
        return loss_sum / n, correct

    @torch.inference_mode()
    def evaluate(self) -> torch.Tensor:
        """Number of eval items classified right, as a device tensor (no sync)."""
        self.model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for start in range(0, len(self.eval), self.eval_batch_size):
            if self.should_stop is not None and self.should_stop():  # an evaluation can take seconds, too
                raise Interrupted(f"stopped in the evaluation of epoch {self.epoch + 1}")
            x = self.preprocess(self.eval.x[start : start + self.eval_batch_size])
            with self._autocast():
                pred = self.model(x).argmax(1)
            correct += (pred == self.eval.y[start : start + self.eval_batch_size]).sum()
        return correct

    @torch.inference_mode()
    def predict(self) -> torch.Tensor:
        """Predicted class of every eval item, on the host."""
        self.model.eval()
        preds = []
        for start in range(0, len(self.eval), self.eval_batch_size):
            with self._autocast():
                preds.append(self.model(self.preprocess(self.eval.x[start : start + self.eval_batch_size])).argmax(1))
        return torch.cat(preds).cpu()

    def epochs(self) -> Iterator[EpochStats]:
        """Run the remaining epochs, yielding each one's stats. Raises DivergedError on a NaN/inf loss."""
        while self.epoch < self.config.epochs:
            epoch = self.epoch + 1
            seed = epoch_seed(self.config.seed, epoch)
            torch.manual_seed(seed)  # dropout
            generator = torch.Generator(device=self.device).manual_seed(seed)
            start = time.perf_counter()
            mean_loss, train_correct = self._train_epoch(generator)
            eval_correct = self.evaluate() if self.evaluate_each_epoch else torch.zeros((), device=self.device)
            # The one host sync of the epoch.
            loss, tc, ec = torch.stack([mean_loss.double(), train_correct.double(), eval_correct.double()]).tolist()
            seconds = time.perf_counter() - start
            if not math.isfinite(loss):
                raise DivergedError(epoch, loss)
            stats = EpochStats(
                epoch,
                loss,
                tc / len(self.train),
                ec / len(self.eval) if self.evaluate_each_epoch else math.nan,
                seconds,
                len(self.train) / seconds,
            )
            self.epoch = epoch
            self.history.append(stats.as_dict())
            yield stats

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "history": list(self.history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng"])


def train(
    task: Task, model_config: JsonConfig, config: TrainConfig, data: TaskData, device: torch.device
) -> Iterator[EpochStats]:
    """Train one config for config.epochs epochs on one device; yield each epoch's stats."""
    return Trainer(task, model_config, config, data, device).epochs()
