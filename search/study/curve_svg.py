"""A trial's learning curve as a small SVG, written as text.

A worker draws one at every new best, while the trial still runs. matplotlib cost a worker 0.6 s to import and
~50 ms a figure on the CPU (bench/overhead.py: a third of the service's cost on a 20-trial mlp-synth search);
this costs well under a millisecond, and the dashboard shows an SVG artifact like a PNG (its mimetype is image/*).
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape

from search.trials import record

WIDTH, HEIGHT = 640, 400  # px
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 40, 52  # plot margins, px
SERIES = ((record.TRAIN_ACC, "train accuracy", "#1f77b4"), (record.VAL_ACC, "validation accuracy", "#ff7f0e"))
MAX_X_TICKS = 10


def _y_range(values: list[float]) -> tuple[float, float]:
    """Accuracy bounds rounded out to tenths, within [0, 1]; at least 0.1 apart."""
    finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    lo = max(0.0, math.floor(min(finite) * 10) / 10)
    hi = min(1.0, math.ceil(max(finite) * 10) / 10)
    if hi - lo < 0.1:
        lo, hi = (hi - 0.1, hi) if hi >= 0.1 else (lo, lo + 0.1)
    return lo, hi


def curve_svg(curves: dict[str, list[float]], title: str) -> str:
    """Train and validation accuracy per epoch (1-based), the best validation epoch marked, as SVG text."""
    epochs = max((len(curves.get(key) or []) for key, _, _ in SERIES), default=0) or 1
    lo, hi = _y_range([v for key, _, _ in SERIES for v in curves.get(key) or []])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(epoch: int) -> float:
        return LEFT + (plot_w / 2 if epochs == 1 else (epoch - 1) * plot_w / (epochs - 1))

    def y(value: float) -> float:
        return TOP + (hi - value) * plot_h / (hi - lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="{TOP - 14}" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    span = round((hi - lo) * 10)  # tenths
    step = 0.02 if span == 1 else 0.05 if span <= 2 else 0.1 if span <= 5 else 0.2
    for i in range(round((hi - lo) / step) + 1):
        value = lo + i * step
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>')
    for epoch in range(1, epochs + 1, math.ceil(epochs / MAX_X_TICKS)):
        out.append(f'<text x="{x(epoch):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{epoch}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">epoch</text>')
    out.append(
        f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">accuracy</text>'
    )
    legend: list[tuple[str, str, str]] = []  # (label, colour, dash pattern)
    best_entry = []
    val = curves.get(record.VAL_ACC) or []
    if any(math.isfinite(v) for v in val):
        best = max((i for i in range(len(val)) if math.isfinite(val[i])), key=val.__getitem__)
        out.append(
            f'<line x1="{x(best + 1):.1f}" x2="{x(best + 1):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
            'stroke="grey" stroke-dasharray="2 3"/>'
        )
        best_entry.append((f"best epoch {best + 1} ({val[best]:.4f})", "grey", "2 3"))
    for key, label, color in SERIES:
        points = [(x(i + 1), y(v)) for i, v in enumerate(curves.get(key) or []) if math.isfinite(v)]
        if not points:
            continue
        coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        out.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points)
        legend.append((label, color, ""))
    legend += best_entry
    for i, (label, color, dash) in enumerate(legend):  # lower right, inside the plot
        ly = TOP + plot_h - 12 - 18 * (len(legend) - 1 - i)
        lx = WIDTH - RIGHT - 190
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="1.5"'
            + (f' stroke-dasharray="{dash}"/>' if dash else "/>")
        )
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def save_curve_svg(curves: dict[str, list[float]], path: Path, title: str) -> Path:
    path.write_text(curve_svg(curves, title), encoding="utf-8")
    return path
