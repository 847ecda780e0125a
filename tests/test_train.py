import pytest
import torch

from model.errors import DivergedError
from model.tasks import DataConfig, get_task
from model.train import TrainConfig, Trainer

TASK = get_task("alexnet-cifar10")


@pytest.fixture(scope="module")
def data(tiny_data):
    return TASK.load_search_data(DataConfig(root=str(tiny_data), val_size=100, train_size=200))


@pytest.fixture(scope="module")
def few(tiny_data):
    """Enough for three steps of batch 20 an epoch: for the tests whose assertions do not depend on the size."""
    return TASK.load_search_data(DataConfig(root=str(tiny_data), val_size=20, train_size=60))


def trainer(data, **kw):
    return Trainer(TASK, TASK.model_config(), TrainConfig(**kw), data, torch.device("cpu"))


def test_reports_every_epoch_and_learns(data):
    stats = list(trainer(data, epochs=3, batch_size=10).epochs())
    assert [s.epoch for s in stats] == [1, 2, 3]
    for s in stats:
        assert 0 <= s.train_acc <= 1 and 0 <= s.val_acc <= 1 and s.seconds > 0 and s.images_per_s > 0
    assert stats[-1].val_acc > 0.2  # tinted classes are easy; chance is 0.1


def test_same_seed_same_run(few):
    a = [s.train_loss for s in trainer(few, epochs=2, seed=5, batch_size=20).epochs()]
    b = [s.train_loss for s in trainer(few, epochs=2, seed=5, batch_size=20).epochs()]
    assert a == b


def test_resume_from_state_repeats_the_uninterrupted_run(few):
    full = [(s.train_loss, s.val_acc) for s in trainer(few, epochs=3, seed=1, batch_size=20, augment=True).epochs()]
    first = trainer(few, epochs=3, seed=1, batch_size=20, augment=True)
    next(first.epochs())
    state = first.state_dict()
    resumed = trainer(few, epochs=3, seed=1, batch_size=20, augment=True)
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


def test_augment_is_a_padded_crop_with_optional_flip_per_image(data):
    import torch.nn.functional as F

    x = data.train.x[:16]
    out = TASK.augment(x, torch.Generator().manual_seed(3))
    padded = F.pad(x, (4, 4, 4, 4))
    found = []
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(out[i], (lambda c: c.flip(2) if flip else c)(padded[i, :, dy : dy + 32, dx : dx + 32]))
        ]
        assert matches, f"image {i} is not a crop of the 4-px padded image"
        found.append(matches[0])
    assert len({(dy, dx) for dy, dx, _ in found}) > 1  # offsets differ per image
    assert 0 < sum(flip for _, _, flip in found) < len(found)  # some flipped, some not


def test_optimizer_is_fused_on_cpu(data):
    assert trainer(data).optimizer.defaults["fused"] is True
    assert trainer(data, optimizer="sgd").optimizer.defaults["fused"] is True


def test_bf16_on_cpu_trains(few):
    t = trainer(few, epochs=1, batch_size=50, precision="bf16")
    stats = next(t.epochs())
    assert t.bf16 and stats.train_loss == stats.train_loss and 0 <= stats.val_acc <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_steps_never_sync_with_the_host(data):
    import warnings

    cuda = torch.device("cuda")
    t = Trainer(TASK, TASK.model_config(), TrainConfig(epochs=2, batch_size=20, augment=True), data, cuda)
    assert t.bf16 and t.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    next(t.epochs())  # warm-up: cuDNN benchmark plans
    torch.cuda.set_sync_debug_mode("warn")  # every synchronising call warns
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss, correct = t._train_epoch(torch.Generator(device=cuda).manual_seed(1))  # 10 steps
            t.evaluate()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]  # at most one per epoch (a per-step one makes >= 10)
    assert torch.isfinite(loss).item() and 0 <= correct.item() <= len(t.train)
