"""Tiny CIFAR-10 in the real pickle layout, written by the tests themselves.

Each class has its own colour tint over noise, so a few epochs learn it and a bad config stands out.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TINTS = np.random.default_rng(1234).integers(0, 256, size=(10, 3))


def make_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    noise = rng.integers(0, 256, size=(n, 3, 32, 32))
    tint = TINTS[labels][:, :, None, None]
    images = (0.35 * noise + 0.65 * tint).astype(np.uint8)
    return images.reshape(n, -1), labels.tolist()


def write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump(
            {
                b"batch_label": b"tiny",
                b"labels": labels,
                b"data": images,
                b"filenames": [b"%05d.png" % i for i in range(len(labels))],
            },
            f,
        )


def write_tiny_cifar(root: Path, per_batch: int = 80, test_size: int = 100) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_batch(folder / f"data_batch_{i}", *make_images(per_batch, seed=i))
    write_batch(folder / "test_batch", *make_images(test_size, seed=99))
    return root
