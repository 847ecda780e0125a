"""What a per-epoch checkpoint costs a training epoch: AlexNet with Adam, epochs with and without it, side by side.

    python -m bench.checkpoint_cost [--device cpu] [--images 200] [--epochs-per-block 3] [--rounds 3]

One Trainer (AlexNet, batch norm, Adam, batch 100, synthetic uint8 images of CIFAR-10's shape) trains on; its
epochs are cut into blocks of --epochs-per-block, and each block runs under one checkpoint mode, the modes taking
turns round after round so load that drifts during the run falls on all of them:
- none: no checkpoint (the reference);
- sync: storage.checkpoints.CheckpointStore.save after every epoch, on the training thread (serialise, fsync,
  rename, fsync the folder), as alexsearch did before the background writer;
- background: storage.checkpoints.CheckpointWriter with every_s=0, i.e. a checkpoint after every epoch (what
  alexsearch does when epochs are longer than --checkpoint-every): the state is copied off the device on the
  training thread and a background thread writes it (with fsync) while the next epoch trains;
- background-nofsync (with --nofsync): the same without the two fsyncs, to show what fsync costs once it is off the
  training path.
A background block ends by waiting for its last write, and that wait is counted: an overstatement, as in a search
the next epoch would train meanwhile.
The default --checkpoint-every 60 checkpoints a 1-3 s epoch once a minute, not every epoch: the last line scales
the background cost by that.
An epoch's time is from the start of one epoch to the start of the next, so whatever the checkpoint holds up,
there or in the next epoch, is counted. The cost of a mode is its mean epoch time over none's, minus 1: the
fraction of an epoch that checkpointing every epoch adds. The bench also prints the parts of one synchronous
save (serialise+write, fsync) so the fsync choice rests on a figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.data import TASK, load_bench_data, sync
from model.alexnet import AlexNetConfig
from model.train import TrainConfig, Trainer
from storage.checkpoints import CheckpointStore, CheckpointWriter

Mode = Callable[[Trainer], None]
DEFAULT_EVERY_S = 60.0  # search.settings.CHECKPOINT_EVERY_S


def make_modes(store: CheckpointStore) -> dict[str, Mode]:
    def sync_save(trainer: Trainer) -> None:
        store.save(0, trainer.state_dict())

    def background(writer: CheckpointWriter) -> Mode:
        def save(trainer: Trainer) -> None:
            writer.after_epoch(1, trainer.state_dict)

        save.finish = writer.flush  # type: ignore[attr-defined]
        save.writer = writer  # type: ignore[attr-defined]
        return save

    nofsync = CheckpointStore(store.folder, fsync=False)
    return {
        "none": lambda trainer: None,
        "sync": sync_save,
        "background": background(CheckpointWriter(store, every_s=0)),
        "background-nofsync": background(CheckpointWriter(nofsync, every_s=0)),
    }


def chosen_modes(store: CheckpointStore, nofsync: bool) -> dict[str, Mode]:
    modes = make_modes(store)
    if not nofsync:
        del modes["background-nofsync"]
    return modes


def save_parts(state: dict, folder: Path) -> tuple[float, float, int]:
    """(seconds to serialise and write, seconds to fsync, bytes) of one save of state."""
    path = folder / "parts.pt"
    start = time.perf_counter()
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        written = time.perf_counter()
        os.fsync(f.fileno())
    synced = time.perf_counter()
    size = path.stat().st_size
    path.unlink()
    return written - start, synced - written, size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.checkpoint_cost", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=200, help="training images per epoch (default: 200)")
    p.add_argument("--epochs-per-block", type=int, default=4)
    p.add_argument("--nofsync", action="store_true", help="also measure background writes without fsync")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--folder", default=None, help="where checkpoints are written (default: a temporary folder)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data, _ = load_bench_data(None, args.images, 100)
    total = args.rounds * args.epochs_per_block * 8 + 1
    trainer = Trainer(
        TASK, AlexNetConfig(batch_norm=True), TrainConfig(optimizer="adam", batch_size=100, epochs=total), data, device
    )
    epochs = trainer.epochs()
    next(epochs)  # warm-up epoch: allocations, Adam state
    with tempfile.TemporaryDirectory(prefix="ckpt-cost-", dir=args.folder) as tmp:
        store = CheckpointStore(Path(tmp))
        modes = chosen_modes(store, args.nofsync)
        times: dict[str, list[float]] = {m: [] for m in modes}
        names = list(modes)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                for _ in range(args.epochs_per_block):
                    sync(device)
                    start = time.perf_counter()
                    next(epochs)
                    modes[name](trainer)
                    times[name].append(time.perf_counter() - start)
                # what a mode left running (a background write) finishes inside its own block's last epoch
                finish = getattr(modes[name], "finish", None)
                if finish is not None:
                    start = time.perf_counter()
                    finish()
                    times[name][-1] += time.perf_counter() - start
        parts = [save_parts(trainer.state_dict(), Path(tmp)) for _ in range(2)]
    base = statistics.mean(times["none"])
    print(
        f"AlexNet (batch norm) + Adam on {device}, {args.images} images/epoch, {args.threads} thread(s); "
        f"{args.rounds} rounds x {args.epochs_per_block} epochs per mode"
    )
    print(
        f"checkpoint {parts[-1][2] / 1e6:.1f} MB; one synchronous save: serialise+write "
        f"{min(p[0] for p in parts):.3f} s, fsync {min(p[1] for p in parts):.3f} s"
    )
    print(f"{'mode':<20} {'s/epoch':>8} {'cost (fraction of an epoch)':>28}")
    for name in names:
        mean = statistics.mean(times[name])
        writer = getattr(modes[name], "writer", None)
        skipped = (
            f"  ({writer.skipped} of {writer.skipped + writer.written} due skipped: write still running)"
            if writer is not None and writer.skipped
            else ""
        )
        print(f"{name:<20} {mean:>8.3f} {mean / base - 1:>28.3f}{skipped}")
    if "background" in times:
        cost = statistics.mean(times["background"]) - base  # seconds one checkpoint adds
        print(
            f"at the default --checkpoint-every {DEFAULT_EVERY_S:g}: one checkpoint per {DEFAULT_EVERY_S:g} s, "
            f"{cost / DEFAULT_EVERY_S:.4f} of training time ({max(cost, 0) / DEFAULT_EVERY_S * 100:.2f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
