"""Optimization history and parameter importance as PNGs, and Optuna's own plotly figures as HTML.

The HTML files load plotly.js (about 4.8 MB) from plotly.min.js in the same folder, written once per report
folder: they open without internet (a CDN link would leave a blank page on an offline machine) and the
folder holds one copy, not one per file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from search.report.figures import NeedsMoreTrials, integer_ticks, new_figure, save
from search.report.trials import complete, value
from search.trials.record import is_duplicate

# Parameter importance from fewer complete trials is noise (Optuna's PED-ANOVA wants far more).
MIN_IMPORTANCE_TRIALS = 5


def draw_history(trials: list[FrozenTrial], path: Path, context: str = "") -> Path:
    return save(history_figure(trials, context), path)


def history_figure(trials: list[FrozenTrial], context: str = "") -> Figure:
    """Each complete trial's value by trial number, the last value of pruned, failed and running trials
    (each with its own marker), and the best so far."""
    done = complete(trials)
    if not done:
        raise NeedsMoreTrials("needs 1 complete trial, the study has none yet")
    fig = new_figure(8, 4)
    ax = fig.subplots()
    ax.plot([t.number for t in done], [value(t) for t in done], "o", color="C0", label="complete trial")
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values and not is_duplicate(t)]
    if pruned:
        when_pruned = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]  # at the last step reported
        ax.plot([t.number for t in pruned], when_pruned, "x", color="grey", label="pruned (value when pruned)")
    for state, marker, color, label in (
        (TrialState.FAIL, "X", "C1", "failed (value when it failed; retried)"),
        (TrialState.RUNNING, ">", "C2", "running (latest value)"),
    ):
        these = [t for t in trials if t.state == state and t.intermediate_values]
        if these:
            latest = [t.intermediate_values[max(t.intermediate_values)] for t in these]
            ax.plot([t.number for t in these], latest, marker, color=color, linestyle="none", label=label)
    best, xs, ys = float("-inf"), [], []
    for t in sorted(done, key=lambda t: t.number):
        best = max(best, value(t))
        xs.append(t.number)
        ys.append(best)
    last = max(t.number for t in trials)
    if last > xs[-1]:  # carry the best on to the latest trial, pruned or not
        xs.append(last)
        ys.append(best)
    ax.step(xs, ys, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("validation accuracy")
    ax.set_title("optimization history" + (f"\n{context}" if context else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def importances(study: optuna.Study, trials: list[FrozenTrial]) -> dict[str, float]:
    n = len(complete(trials))
    if n < MIN_IMPORTANCE_TRIALS:
        raise NeedsMoreTrials(f"needs {MIN_IMPORTANCE_TRIALS} complete trials, the study has {n}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns about small samples; the threshold above covers it
        values = optuna.importance.get_param_importances(study)
    if not values:
        raise NeedsMoreTrials("no parameter took two different values in the complete trials")
    return values


def draw_importance(values: dict[str, float], path: Path, context: str = "") -> Path:
    fig = new_figure(6, 0.6 + 0.45 * len(values))
    ax = fig.subplots()
    names = list(values)[::-1]  # most important at the top
    ax.barh(names, [values[n] for n in names], color="C0")
    for y, n in enumerate(names):
        ax.text(values[n], y, f" {values[n]:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance for validation accuracy (PED-ANOVA, sums to 1)")
    ax.set_xlim(0, max(1.0, max(values.values()) * 1.15))
    ax.set_title("parameter importance" + (f"\n{context}" if context else ""), fontsize=10)
    return save(fig, path)


def plotly_figures(study: optuna.Study, trials: list[FrozenTrial]) -> dict[str, tuple[str, Callable[[], object]]]:
    """file name -> (title, a function that builds the figure or raises NeedsMoreTrials)."""
    n_complete = len(complete(trials))
    vis = optuna.visualization

    def needs(k: int, what: Callable[[], object]) -> Callable[[], object]:
        def build() -> object:
            if n_complete < k:
                raise NeedsMoreTrials(f"needs {k} complete trial{'s' * (k > 1)}, the study has {n_complete}")
            return what()

        return build

    def intermediate() -> object:
        if not any(t.intermediate_values for t in trials):
            raise NeedsMoreTrials("no trial has reported an epoch yet")
        return vis.plot_intermediate_values(study)

    def importance() -> object:
        importances(study, trials)  # the same threshold as the PNG
        return vis.plot_param_importances(study)

    return {
        "history.html": ("optimization history", needs(1, lambda: vis.plot_optimization_history(study))),
        "intermediate.html": ("validation accuracy per epoch (intermediate values)", intermediate),
        "parallel.html": ("parallel coordinate", needs(2, lambda: vis.plot_parallel_coordinate(study))),
        "importance.html": ("parameter importance", importance),
    }


PLOTLY_JS = "plotly.min.js"  # written next to the HTML files by include_plotlyjs="directory"


def write_html(fig: Any, path: Path, context: str = "") -> Path:  # a plotly Figure
    if context:
        title = fig.layout.title.text or ""
        fig.update_layout(title_text=f"{title}<br><sup>{context}</sup>")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.write_html(path, include_plotlyjs="directory", full_html=True)  # one plotly.min.js per folder
    return path
