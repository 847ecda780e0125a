import pytest
import torch

from model.errors import DivergedError
from model.tasks import DataConfig, get_task
from model.train import TrainConfig, Trainer

TASK = get_task("alexnet-cifar10")


@pytest.fixture(scope="module")
def data(tiny_data):
    return TASK.load_search_data(DataConfig(root=str(tiny_data), val_size=100, train_size=200))


def trainer(data, **kw):
    return Trainer(TASK, TASK.model_config(), TrainConfig(**kw), data, torch.device("cpu"))


def test_reports_every_epoch_and_learns(data):
    stats = list(trainer(data, epochs=3, batch_size=10).epochs())
    assert [s.epoch for s in stats] == [1, 2, 3]
    for s in stats:
        assert 0 <= s.train_acc <= 1 and 0 <= s.val_acc <= 1 and s.seconds > 0 and s.images_per_s > 0
    assert stats[-1].val_acc > 0.2  # tinted classes are easy; chance is 0.1


def test_same_seed_same_run(data):
    a = [s.train_loss for s in trainer(data, epochs=2, seed=5).epochs()]
    b = [s.train_loss for s in trainer(data, epochs=2, seed=5).epochs()]
    assert a == b


def test_resume_from_state_repeats_the_uninterrupted_run(data):
    full = [(s.train_loss, s.val_acc) for s in trainer(data, epochs=3, seed=1, augment=True).epochs()]
    first = trainer(data, epochs=3, seed=1, augment=True)
    next(first.epochs())
    state = first.state_dict()
    resumed = trainer(data, epochs=3, seed=1, augment=True)
    resumed.load_state_dict(state)
    rest = [(s.train_loss, s.val_acc) for s in resumed.epochs()]
    assert rest == full[1:]


def test_nan_loss_raises_diverged(data):
    with pytest.raises(DivergedError, match="loss became nan in epoch"):
        list(trainer(data, epochs=2, lr=1e6, optimizer="sgd").epochs())


def test_augment_keeps_shape_and_dtype(data):
    gen = torch.Generator().manual_seed(0)
    out = TASK.augment(data.train.x[:8], gen)
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.uint8
