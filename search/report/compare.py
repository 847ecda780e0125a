"""Strategies compared on cost and result: best validation accuracy so far against epochs trained so far.

Trials are taken in the order they finished; each adds the epochs it trained (its intermediate values,
so a trial pruned at epoch 2 costs 2 epochs), and a complete trial may raise the best. Trials still
running, and trials skipped as duplicates, are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from search.errors import UsageError
from search.report.figures import NeedsMoreTrials, integer_ticks, new_figure, save
from search.report.trials import data_caption
from search.trials import record
from search.trials.record import epochs_trained, is_duplicate
from search.workers.events import fmt_params


@dataclass(frozen=True)
class CostCurve:
    study: str
    label: str  # how the study searched, e.g. "tpe + median pruner" or "stepwise"
    epochs: list[int]  # cumulative epochs after each finished trial
    best: list[float | None]  # best validation accuracy so far after each finished trial
    best_trial: FrozenTrial | None
    seconds: float  # training time of all finished trials (user attr epoch_seconds), to set epochs in scale
    data: str = ""  # the study and its data size

    @property
    def total_epochs(self) -> int:
        return self.epochs[-1] if self.epochs else 0

    @property
    def final_best(self) -> float | None:
        return self.best[-1] if self.best else None

    @property
    def epochs_to_best(self) -> int | None:
        """Epochs trained when the final best was first reached."""
        if self.final_best is None:
            return None
        return next(e for e, b in zip(self.epochs, self.best, strict=True) if b == self.final_best)


def strategy_label(study: optuna.Study) -> str:
    s = study.user_attrs.get(record.SEARCH_CONFIG, {})
    if not s:
        return "unknown search"
    if s.get("strategy") == "stepwise":
        return "Table 1 protocol, no pruning"
    pruner = s.get("pruner")
    pruning = "no pruning" if pruner == "none" else f"{pruner} pruner"
    return f"{s.get('sampler')} + {pruning}" + (f", patience {s['patience']}" if s.get("patience") else "")


def cost_curve(study: optuna.Study) -> CostCurve:
    finished = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if not is_duplicate(t)
    ]
    finished.sort(key=lambda t: (t.datetime_complete or datetime.max, t.number))
    total, best, best_trial = 0, None, None
    seconds = sum(sum(t.user_attrs.get(record.EPOCH_SECONDS, [])) for t in finished)
    epochs, bests = [], []
    for t in finished:
        total += epochs_trained(t)
        if t.state == TrialState.COMPLETE and t.value is not None and (best is None or t.value > best):
            best, best_trial = t.value, t
        epochs.append(total)
        bests.append(best)
    return CostCurve(
        study.study_name,
        strategy_label(study),
        epochs,
        bests,
        best_trial,
        seconds,
        data_caption(study.study_name, study.user_attrs),
    )


def compare_figure(curves: list[CostCurve]) -> Figure:
    if not any(c.final_best is not None for c in curves):
        raise NeedsMoreTrials("none of the studies has a complete trial yet")
    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    for i, c in enumerate(curves):
        points = [(e, b) for e, b in zip(c.epochs, c.best, strict=True) if b is not None]
        if not points or c.final_best is None or c.epochs_to_best is None:  # all three: no complete trial yet
            continue
        xs, ys = [e for e, _ in points], [b for _, b in points]
        color = f"C{i % 10}"
        ax.step(
            xs,
            ys,
            where="post",
            color=color,
            linewidth=1.8,
            label=f"{c.study} ({c.label}): best {c.final_best:.3f}, {c.total_epochs} epochs, "
            f"{len(c.epochs)} trials\n  {c.data.split(': ', 1)[-1]}",
        )
        ax.plot(xs, ys, "o", color=color, markersize=3)
        ax.plot([c.epochs_to_best], [c.final_best], "*", color=color, markersize=12)
    ax.set_xlabel("epochs trained so far (all trials, in the order they finished)")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("cost and result of each search (star: best first reached)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def compare_lines(curves: list[CostCurve]) -> list[str]:
    """One plain-text line per study, for the terminal and compare.md."""
    lines = []
    for c in curves:
        if c.final_best is None or c.best_trial is None:
            lines.append(f"{c.study} ({c.label}): no complete trial yet, {c.total_epochs} epochs trained")
            continue
        lines.append(
            f"{c.study} ({c.label}): best val_acc {c.final_best:.4f} (trial {c.best_trial.number}, "
            f"{fmt_params(c.best_trial.params)}), reached after {c.epochs_to_best} epochs; "
            f"{len(c.epochs)} trials, {c.total_epochs} epochs ({c.seconds:.0f} s of training) in all"
        )
    return lines


def write_compare(studies: list[optuna.Study], out: Path) -> tuple[Path, list[str]]:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    curves = [cost_curve(s) for s in studies]
    figure = save(compare_figure(curves), out / "compare.png")  # in each format of the current figure_output
    lines = compare_lines(curves)
    (out / "compare.md").write_text(
        f"# Strategies compared\n\n![cost and result]({figure.name})\n\n" + "".join(f"- {line}\n" for line in lines)
    )
    return figure, lines
