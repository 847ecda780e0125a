"""Matplotlib without pyplot: each figure has its own Agg canvas, so nothing global is set or leaked.

Where figures go (formats, dpi) is set once per report with `figure_output`, not threaded through every
drawing function.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from search.errors import UsageError

DPI = 100  # 10 x 4 inch figures -> 1000 x 400 px PNGs of about 50-100 KB
FORMATS = ("png", "svg", "pdf")


@dataclass(frozen=True)
class FigureOutput:
    formats: tuple[str, ...] = ("png",)  # each figure is written once per format, same name
    dpi: int = DPI  # raster formats only (png); svg and pdf are vector

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise UsageError(
                f"--format: {bad[0] if bad else 'nothing'} is not a figure format "
                f"(allowed: {', '.join(FORMATS)}, comma-separated)"
            )
        if self.dpi < 10:
            raise UsageError(f"--dpi: must be at least 10, got {self.dpi}")

    @property
    def main(self) -> str:
        """The format the report's pages show (png, else svg, else pdf)."""
        return next(f for f in FORMATS if f in self.formats)


DEFAULT_OUTPUT = FigureOutput()
_output: contextvars.ContextVar[FigureOutput | None] = contextvars.ContextVar("figure_output", default=None)


@contextlib.contextmanager
def figure_output(output: FigureOutput) -> Iterator[FigureOutput]:
    token = _output.set(output)
    try:
        yield output
    finally:
        _output.reset(token)


def current_output() -> FigureOutput:
    return _output.get() or DEFAULT_OUTPUT


class NeedsMoreTrials(ValueError):
    """A plot that the study cannot draw yet; the message says what it needs."""


def new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def integer_ticks(axis: Axis) -> None:
    """Trials and epochs are counted: no 2.5th epoch on the axis."""
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def save(fig: Figure, path: Path) -> Path:
    """Write fig as path's name in every format of the current output; returns the main format's path."""
    out = current_output()
    for fmt in out.formats:
        fig.savefig(path.with_suffix(f".{fmt}"), dpi=out.dpi, format=fmt)
    return path.with_suffix(f".{out.main}")
