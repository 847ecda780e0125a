"""CIFAR-10 from the standard `cifar-10-batches-py` pickle layout into uint8 tensors.

torchvision is used only to download; the batch files are read here, so a locally made copy
(which torchvision's MD5 check would reject) loads as well as the official one. They are read with a
restricted unpickler: a batch file is data from outside, and a plain pickle.load runs any code it names.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy 2 names its core numpy._core; numpy 1 numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

from model.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and std of the 50,000 training images, in [0, 1] units.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_BYTES = 3 * 32 * 32


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a function or class outside ALLOWED_GLOBALS."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Python 3's protocol-2 pickles store bytes as _codecs.encode(str, "latin1"); no other codec is needed.
    if encoding not in ("latin1", "latin-1"):
        raise ForbiddenGlobal(f"it encodes with codec {encoding!r}, which a CIFAR-10 batch never does")
    return text.encode("latin1")


# Every global a CIFAR-10 batch pickle refers to: numpy arrays (under numpy 1's and numpy 2's module names,
# pickled by protocols 2 to 5), numpy scalars, and bytes in protocol 2. Dicts, lists, bytes, str and ints
# need no global. Anything else (os.system, builtins.eval, ...) is refused before it can be called.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    **{(f"{core}.multiarray", "_reconstruct"): _multiarray._reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _multiarray.scalar for core in ("numpy.core", "numpy._core")},
    **{
        (f"{core}.numeric", "_frombuffer"): _numeric._frombuffer  # type: ignore[attr-defined]  # private, no stub
        for core in ("numpy.core", "numpy._core")
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"it refers to {module}.{name}, which a CIFAR-10 batch never holds") from None


def load_pickle(data: bytes) -> Any:
    """Unpickle a CIFAR-10 batch; bytes-typed Python 2 strings stay bytes, as in the official files."""
    return BatchUnpickler(io.BytesIO(data), encoding="bytes").load()


def _pixels(raw: Any, path: Path) -> np.ndarray:
    """The data array as uint8, refusing values a cast would silently change (1020 -> 252, 3.7 -> 3)."""
    data = np.asarray(raw)
    if data.dtype == np.uint8:
        return data
    if data.dtype.kind not in "biuf":
        raise DataError(f"CIFAR-10 file {path}: data holds {data.dtype} values; pixels must be integers 0..255")
    if data.size:
        low, high = data.min(), data.max()
        if not (0 <= low and high <= 255) or (data.dtype.kind == "f" and not np.array_equal(data, np.floor(data))):
            raise DataError(
                f"CIFAR-10 file {path}: data holds {data.dtype} values from {low} to {high}; "
                "pixels must be integers 0..255"
            )
    return data.astype(np.uint8)


def batches_dir(root: str | Path) -> Path:
    """`root/cifar-10-batches-py`, or root itself if it already is that folder."""
    root = Path(root).expanduser()
    return root if root.name == FOLDER else root / FOLDER


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One pickled batch file -> images uint8 (N, 3, 32, 32), labels int64 (N,)."""
    try:
        batch = load_pickle(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 file missing: {path}") from None
    except ForbiddenGlobal as e:
        raise DataError(f"CIFAR-10 file {path} refused: {e}; nothing in it was run") from None
    except Exception as e:  # a truncated or foreign file fails in many ways; all mean "corrupt"
        raise DataError(f"CIFAR-10 file {path} is corrupt or not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    try:
        data = _pixels(batch[b"data"], path)
        labels = np.asarray(batch[b"labels"])
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise TypeError(f"labels are {labels.dtype} of shape {labels.shape}, not a list of integers")
        labels = labels.astype(np.int64)
    except DataError:
        raise
    except Exception as e:  # a truncated or foreign file fails in many ways; all mean "corrupt"
        raise DataError(f"CIFAR-10 file {path} is corrupt or not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(labels) != len(data):
        raise DataError(
            f"CIFAR-10 file {path} has data of shape {data.shape} and {len(labels)} labels; "
            f"expected (N, {IMAGE_BYTES}) and N labels"
        )
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
        raise DataError(
            f"could not download CIFAR-10 into {root} ({type(e).__name__}: {e}); without internet, "
            f"put {FOLDER}/ there yourself and pass --data"
        ) from None


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
