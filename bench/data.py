"""The images every bench pipeline trains on: real CIFAR-10 from a data root, or synthetic uint8 of its shape."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from model import cifar10
from model.tasks import DataConfig, Split, TaskData, get_task

TASK = get_task("alexnet-cifar10")


def synthetic_split(n: int, seed: int) -> Split:
    """n uint8 images (n, 3, 32, 32) with balanced labels; each class is a colour tint over noise, so it is
    learnable (the accuracy check needs that), like the tests' tiny CIFAR-10."""
    gen = torch.Generator().manual_seed(seed)
    tints = torch.randint(0, 256, (10, 3), generator=torch.Generator().manual_seed(1234)).float()
    y = torch.arange(n) % 10
    y = y[torch.randperm(n, generator=gen)]
    noise = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8).float()
    x = (0.35 * noise + 0.65 * tints[y][:, :, None, None]).to(torch.uint8)
    return Split(x, y)


def write_synthetic_cifar(root: Path, train_size: int, test_size: int) -> Path:
    """Write `synthetic_split` images in the standard cifar-10-batches-py pickle layout under root, so code that
    reads a data folder (the CLI) runs without CIFAR-10. train_size is split over the five training batches."""
    folder = Path(root) / cifar10.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = -(-train_size // 5)
    files = [(f"data_batch_{i}", per_batch, i) for i in range(1, 6)] + [("test_batch", test_size, 99)]
    for name, n, seed in files:
        split = synthetic_split(n, seed)
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    b"batch_label": b"synthetic",
                    b"labels": split.y.tolist(),
                    b"data": split.x.reshape(n, -1).numpy(),
                    b"filenames": [b"%05d.png" % i for i in range(n)],
                },
                f,
            )
    return Path(root)


def has_cifar(root: str | Path | None) -> bool:
    """Whether root holds the standard cifar-10-batches-py folder (or is it)."""
    return root is not None and (cifar10.batches_dir(root) / "data_batch_1").is_file()


def load_bench_data(root: str | None, train_size: int, val_size: int, seed: int = 0) -> tuple[TaskData, str]:
    """(data, description). Real data: the task's own seeded hold-out of `val_size` and a stratified subset of
    `train_size` training images (the test batch is never read)."""
    if root:
        data = TASK.load_search_data(DataConfig(root=root, val_size=val_size, train_size=train_size, split_seed=seed))
        return data, f"CIFAR-10 from {root}"
    return TaskData(synthetic_split(train_size, seed), synthetic_split(val_size, seed + 1), "val"), "synthetic uint8"


def normalised(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 (x/255 - mean)/std, written the way a hand-written loop would."""
    mean = torch.tensor(cifar10.MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cifar10.STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock interval covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
