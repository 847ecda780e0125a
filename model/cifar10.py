"""CIFAR-10 from the standard `cifar-10-batches-py` pickle layout into uint8 tensors.

torchvision is used only to download; the batch files are read here, so a locally made copy
(which torchvision's MD5 check would reject) loads as well as the official one.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from model.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and std of the 50,000 training images, in [0, 1] units.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_BYTES = 3 * 32 * 32


def batches_dir(root: str | Path) -> Path:
    """`root/cifar-10-batches-py`, or root itself if it already is that folder."""
    root = Path(root).expanduser()
    return root if root.name == FOLDER else root / FOLDER


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch file -> images uint8 (N, 3, 32, 32), labels int64 (N,)."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 file missing: {path}") from None
    except Exception as e:  # a truncated or foreign file fails in many ways; all mean "corrupt"
        raise DataError(f"CIFAR-10 file {path} is corrupt or not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(labels) != len(data):
        raise DataError(f"CIFAR-10 file {path} has data of shape {data.shape} and {len(labels)} labels; "
                        f"expected (N, {IMAGE_BYTES}) and N labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10 file {path} has labels outside 0..9")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.copy())


def download(root: str | Path) -> None:
    """Fetch and unpack the official archive into root through torchvision's downloader."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except Exception as e:
        raise DataError(f"could not download CIFAR-10 into {root} ({type(e).__name__}: {e}); without internet, "
                        f"put {FOLDER}/ there yourself and pass --data") from None


def _ensure(root: str | Path, files: list[str], allow_download: bool) -> Path:
    folder = batches_dir(root)
    missing = [name for name in files if not (folder / name).is_file()]
    if missing and allow_download:
        download(folder.parent)
        missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 not found: {folder / missing[0]} does not exist. "
            f"Pass --data DIR holding {FOLDER}/, or add --download to fetch it"
        )
    return folder


def load_train(root: str | Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The 50,000 training images (data_batch_1..5). Never touches the test batch."""
    folder = _ensure(root, TRAIN_FILES, download)
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def load_test(root: str | Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 test images. Only the final run may call this (see tests/test_test_set_lock.py)."""
    folder = _ensure(root, [TEST_FILE], download)
    return read_batch(folder / TEST_FILE)
