"""Matplotlib without pyplot: each figure has its own Agg canvas, so nothing global is set or leaked."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100  # 10 x 4 inch figures -> 1000 x 400 px PNGs of about 50-100 KB


class NeedsMoreTrials(ValueError):
    """A plot that the study cannot draw yet; the message says what it needs."""


def new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path
