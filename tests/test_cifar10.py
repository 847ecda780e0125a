import pickle

import pytest
import torch

from model import cifar10
from model.errors import DataError
from model.split import stratified_split
from model.tasks import DataConfig, get_task


def test_load_train_reads_all_five_batches(tiny_data):
    x, y = cifar10.load_train(tiny_data)
    assert x.shape == (400, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (400,) and y.dtype == torch.int64
    assert set(y.tolist()) == set(range(10))


def test_batch_layout_matches_pickle_rows(tiny_data):
    with open(tiny_data / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    x, y = cifar10.read_batch(tiny_data / "cifar-10-batches-py" / "data_batch_1")
    assert x[3].flatten().tolist() == list(raw[b"data"][3])  # row = R plane, G plane, B plane
    assert y.tolist() == raw[b"labels"]


def test_missing_folder_names_path_and_fix(tmp_path):
    with pytest.raises(DataError) as e:
        cifar10.load_train(tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg and "--download" in msg


def test_corrupt_batch_is_reported(tiny_data, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in cifar10.TRAIN_FILES:
        (folder / name).write_bytes((tiny_data / "cifar-10-batches-py" / name).read_bytes())
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is corrupt"):
        cifar10.load_train(tmp_path)


def test_stratified_split_is_exact_seeded_and_balanced():
    y = torch.arange(1000) % 10
    keep, val = stratified_split(y, 100, seed=3)
    assert len(val) == 100 and len(keep) == 900
    assert set(keep.tolist()).isdisjoint(val.tolist())
    assert torch.bincount(y[val]).tolist() == [10] * 10
    assert torch.equal(val, stratified_split(y, 100, seed=3)[1])
    assert not torch.equal(val, stratified_split(y, 100, seed=4)[1])


def test_search_data_holds_out_validation_and_never_reads_test(tiny_data, monkeypatch):
    opened = []
    real = cifar10.read_batch
    monkeypatch.setattr(cifar10, "read_batch", lambda p: opened.append(p.name) or real(p))
    data = get_task("alexnet-cifar10").load_search_data(DataConfig(root=str(tiny_data), val_size=50, train_size=120))
    assert len(data.eval) == 50 and len(data.train) == 120
    assert "test_batch" not in opened
