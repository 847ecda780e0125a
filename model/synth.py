"""The synthetic two-feature, two-class data of the report's Question 9 study.

Each point has 2 features drawn independently from a standard normal distribution. Its label is 1 when the
quadratic form q(x) = x^T A x, with A = [[1.0, 0.5], [0.5, 2.0]] (positive definite, eigenvalues 0.79 and
2.21), exceeds THRESHOLD = 1.921, and 0 otherwise: class 0 is the inside of a tilted ellipse, class 1 the
outside. THRESHOLD is the median of q under the standard normal (measured on 2e7 draws), so the classes are
balanced to within sampling noise. The labels have no noise, so a good model can approach 100% accuracy.

Every draw is a function of its seed alone (a CPU torch.Generator), so the same seed gives the same points
on every machine.
"""

from __future__ import annotations

import torch

FEATURES = 2
QUADRATIC_FORM = ((1.0, 0.5), (0.5, 2.0))  # A in q(x) = x^T A x
THRESHOLD = 1.921  # median of q(x) for x ~ N(0, I): half the points fall on each side


def labels(x: torch.Tensor) -> torch.Tensor:
    """1 where x^T A x > THRESHOLD (outside the ellipse), else 0, as int64."""
    a = torch.tensor(QUADRATIC_FORM, dtype=x.dtype, device=x.device)
    q = ((x @ a) * x).sum(1)
    return (q > THRESHOLD).long()


def draw(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points: float32 features (n, 2) ~ N(0, I) and their int64 labels, from a generator seeded with seed."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=gen, dtype=torch.float32)
    return x, labels(x)
