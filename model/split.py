"""Seeded, stratified hold-out splits of labelled data."""

from __future__ import annotations

import torch

from model.config import ConfigError


def stratified_split(labels: torch.Tensor, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (keep, holdout) with `holdout` items drawn so each class keeps its share.

    Class quotas use largest remainders, so the hold-out has exactly `holdout` items.
    """
    n = len(labels)
    if not 0 < holdout < n:
        raise ConfigError(f"holdout must be in 1..{n - 1}, got {holdout}")
    gen = torch.Generator().manual_seed(seed)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * holdout / n
    quota = exact.floor().long()
    short = holdout - int(quota.sum())
    if short:
        order = torch.argsort(exact - quota, descending=True, stable=True)
        quota[order[:short]] += 1
    keep, held = [], []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[:q])
        keep.append(idx[q:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(held)).values


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of a stratified random subset of `size` items (all of them if size >= len)."""
    if size >= len(labels):
        return torch.arange(len(labels))
    return stratified_split(labels, size, seed)[1]
