"""Learning curves per searched parameter: the course report's Figures 3-6, drawn from a study.

Left: training accuracy per epoch, right: validation accuracy per epoch, one line per trial. A parameter
with few values (a choice, or a range that took at most MAX_LEGEND_VALUES values) gets one colour and
line style per value, as the report's solid and dashed lines. A range that took more values (lr under
TPE) is coloured by value on a colour bar, on a log scale when the parameter is searched on one.

In a stepwise study each parameter's figure shows only the trials of its step, where the other
parameters were held at the steps' best values, exactly as the report compared them. In any other
study all trials are drawn, and the other parameters vary between lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from search.report.figures import NeedsMoreTrials, integer_ticks, new_figure, save
from search.trials.record import STEPWISE_PLAN, curves, is_duplicate
from search.workers.events import fmt_params, fmt_value

MAX_DOTTED_CURVES = 500  # curves drawn with a dot per epoch; more are drawn as lines only
MAX_LEGEND_VALUES = 5  # more distinct values than this: a colour bar instead of a legend
STYLES: tuple[LineStyleType, ...] = ("-", "--", "-.")  # ":" is kept for failed trials
END_MARKERS = {
    TrialState.PRUNED: ("x", "pruned"),
    TrialState.RUNNING: (">", "still running"),
    TrialState.FAIL: ("X", "failed (its retry goes on from its checkpoint)"),
}
FAILED_ALPHA = 0.35  # a failed trial's curve is faint and dotted: it is not a result


def trials_for(param: str, trials: list[FrozenTrial], study_attrs: dict[str, Any]) -> tuple[list[FrozenTrial], str]:
    """The trials that show this parameter's effect, and a caption saying which they are."""
    drawable = [t for t in trials if param in t.params and curves(t) is not None and not is_duplicate(t)]
    plan = study_attrs.get(STEPWISE_PLAN)
    if plan is None:
        return drawable, f"all {len(drawable)} trials with curves (the other parameters vary)"
    # only for a stepwise study: search.trials.stepwise loads the search space, and with it torch
    from search.trials.stepwise import Plan, replay

    views = replay(Plan.from_dict(plan), trials)
    for number, view in enumerate(views, 1):
        if view.step.name == param:
            ids = {t.number for t in view.all_trials()}
            return (
                [t for t in drawable if t.number in ids],
                f"stepwise step {number}, others at {fmt_params(view.base) or 'their fixed values'}",
            )
    return [], "its stepwise step has not started yet"


def _sort_key(v: Any) -> tuple:
    return (type(v).__name__, v) if isinstance(v, (bool, int, float, str)) else ("~", repr(v))


def draw_param_curves(param: str, trials: list[FrozenTrial], caption: str, path: Path, context: str = "") -> Path:
    return save(param_curves_figure(param, trials, caption, context), path)


def _curves(t: FrozenTrial) -> tuple[list[float], list[float]]:
    """The curves of a trial that trials_for chose: it keeps only trials that have them."""
    c = curves(t)
    assert c is not None, f"trial {t.number} has no curves"
    return c


def param_curves_figure(param: str, trials: list[FrozenTrial], caption: str, context: str = "") -> Figure:
    """context: the study and its data size, for the title (search.report.trials.data_caption)."""
    if not trials:
        raise NeedsMoreTrials(f"no trial has finished an epoch yet ({caption})")
    fig = new_figure(10, 4)
    ax_train, ax_val = fig.subplots(1, 2, sharey=True)
    values = [t.params[param] for t in trials]
    distinct = sorted(set(values), key=_sort_key)
    dist = trials[0].distributions.get(param)
    discrete = isinstance(dist, CategoricalDistribution) or len(distinct) <= MAX_LEGEND_VALUES
    handles = []
    if discrete:
        style = {v: (f"C{i % 10}", STYLES[i % len(STYLES)]) for i, v in enumerate(distinct)}
        handles = [Line2D([], [], color=c, linestyle=s, label=f"{param}={fmt_value(v)}") for v, (c, s) in style.items()]
    else:
        log = isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log
        norm = (LogNorm if log else Normalize)(vmin=min(values), vmax=max(values))
        cmap = colormaps["viridis"]
    # Each axis draws all its curves as ONE LineCollection, its epoch dots as one scatter and its end markers as
    # one scatter per kind: a Line2D per curve took 139 s for a 10,000-trial study's figures.
    axes = (ax_train, ax_val)
    lines: dict[Any, list[list[tuple[float, float]]]] = {ax: [] for ax in axes}
    colors, styles, widths, dot_colors, dot_sizes = [], [], [], [], []
    ends: dict[tuple[str, str], dict[Any, list]] = {}
    # one colour map call for all trials: a call per trial took 8 s of a 10,000-trial report
    mapped = None if discrete else cmap(norm(np.asarray(values, dtype=float)))
    for i, (t, v) in enumerate(zip(trials, values, strict=True)):
        color, ls = style[v] if mapped is None else (tuple(mapped[i]), "-")
        marker = END_MARKERS.get(t.state)
        failed = t.state == TrialState.FAIL
        rgba = to_rgba(color, FAILED_ALPHA if failed else 0.9)
        colors.append(rgba)
        styles.append(":" if failed else ls)
        widths.append(1.0 if failed else 1.4)
        accs = _curves(t)
        dot_colors += [rgba] * len(accs[0])
        dot_sizes += [4 if failed else 9] * len(accs[0])
        for ax, acc in zip(axes, accs, strict=True):
            lines[ax].append(list(enumerate(acc, start=1)))
            if marker:
                ends.setdefault(marker, {a: [] for a in axes})[ax].append((len(acc), acc[-1], rgba))
    for ax in axes:
        ax.add_collection(LineCollection(lines[ax], colors=colors, linestyles=styles, linewidths=widths))
        if len(trials) <= MAX_DOTTED_CURVES:  # beyond that the dots hide under the lines and cost seconds
            points = [p for line in lines[ax] for p in line]
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=dot_sizes, c=dot_colors, linewidths=0)
        for (m, _label), per_ax in ends.items():
            if per_ax[ax]:
                xs, ys, cs = zip(*per_ax[ax], strict=True)
                ax.scatter(xs, ys, marker=m, s=49, c=list(cs))
        ax.autoscale_view()
    handles += [Line2D([], [], color="grey", marker=m, linestyle="none", label=label) for m, label in sorted(ends)]
    longest = max(len(_curves(t)[0]) for t in trials)
    for ax, title in ((ax_train, "training accuracy"), (ax_val, "validation accuracy")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.set_xlim(0.7, longest + 0.3)
        integer_ticks(ax.xaxis)
    ax_train.set_ylabel("accuracy")
    if handles:
        fig.legend(handles=handles, fontsize=8, loc="outside right upper")
    if not discrete:
        label = f"{param} (log scale)" if log else param
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[ax_train, ax_val], label=label)
    fig.suptitle(f"{param}: {caption}" + (f"\n{context}" if context else ""), fontsize=10)
    return fig
