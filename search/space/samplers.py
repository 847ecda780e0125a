"""Samplers: seeded TPE (default), grid over a categorical space, random."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from search.errors import UsageError

if TYPE_CHECKING:
    from search.space.space import Space

SAMPLERS = ("tpe", "grid", "random")


def make_sampler(kind: str, space: Space, seed: int, startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    seed %= 2**32  # derived seeds (worker index, trials so far) may pass numpy's limit
    if kind == "tpe":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=startup_trials)
    if kind == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UsageError(f"--sampler: unknown sampler {kind!r} (allowed: {', '.join(SAMPLERS)})")
