"""Strategies that plan trials themselves. `optuna` (the default) leaves it to the sampler.

The report's stepwise protocol (Table 1) is not implemented yet: see the open issue.
"""

from __future__ import annotations

from search.settings import SearchConfig
from search.space import Space
from search.worker import Strategy

STRATEGIES = ("optuna", "stepwise")


def make_strategy(settings: SearchConfig, space: Space) -> Strategy | None:
    if settings.strategy == "optuna":
        return None
    raise ValueError(f"--strategy: {settings.strategy!r} is not implemented yet (allowed: optuna)")
