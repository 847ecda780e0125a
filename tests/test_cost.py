"""The cost estimate printed before a search: timed steps for a search they are small against, and none for a
search so small that timing it would be a large part of its time (bench/overhead.py measured ~10 s of AlexNet
steps on a 2-core CPU before a 40 s search)."""

from __future__ import annotations

import math

import torch

from model.tasks import DataConfig
from search.settings import SearchConfig
from search.space.space import load_space
from search.workers.cost import MAX_TIMING_SHARE, estimate_cost, timed_images

CPU = torch.device("cpu")


def _estimate(trials: int, epochs: int, always_time: bool = False):
    settings = SearchConfig(task="mlp-synth", trials=trials, epochs=epochs, device="cpu")
    space = load_space(None, "mlp-synth")
    data = space.task.load_search_data(DataConfig(train_size=300, val_size=100))
    return estimate_cost(settings, space, data, CPU, 1, 0, 1, always_time=always_time), space


def test_a_search_the_steps_are_small_against_is_timed():
    estimate, space = _estimate(trials=100, epochs=10)  # 300,000 training images
    assert timed_images(space, 300) <= MAX_TIMING_SHARE * 100 * 10 * 300
    assert estimate.speeds and estimate.epoch_s > 0
    assert "at most" in "\n".join(estimate.lines())


def test_a_small_search_is_not_timed_unless_asked():
    estimate, space = _estimate(trials=1, epochs=1)  # 300 training images: the steps alone train more
    assert timed_images(space, 300) > MAX_TIMING_SHARE * 300
    assert math.isnan(estimate.epoch_s) and not estimate.speeds
    (line,) = estimate.lines()
    assert line.startswith("cost: 1 trials x 1 epochs x 300 train + 100 val items; not timed:")
    assert "--estimate-only" in line
    asked, _ = _estimate(trials=1, epochs=1, always_time=True)  # what --estimate-only does
    assert asked.speeds and asked.epoch_s > 0
