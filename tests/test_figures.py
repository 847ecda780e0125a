"""Figures fit for a paper, checked through matplotlib's objects (not pixels): integer trial and epoch ticks,
failed and running trials marked apart, the study and data size in each title, several formats, one plotly.js."""

from __future__ import annotations

import matplotlib
import optuna
import pytest
from matplotlib.collections import LineCollection
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.cli import main
from search.report.build import write_report
from search.report.curves import FAILED_ALPHA, param_curves_figure
from search.report.figures import FigureOutput
from search.report.optuna_plots import history_figure
from search.report.trials import data_caption
from storage.study import open_storage

DISTS = {"batch_norm": CategoricalDistribution([False, True]), "lr": FloatDistribution(1e-5, 1e-2, log=True)}
SEARCH = {
    "strategy": "optuna",
    "sampler": "tpe",
    "pruner": "median",
    "patience": 0,
    "epochs": 3,
    "trials": 4,
    "data": {"train_size": 2000, "val_size": 500},
}


def trial(number: int, state: TrialState, curve: list[float], **kw) -> optuna.trial.FrozenTrial:
    t = create_trial(
        state=state,
        value=max(curve) if state == TrialState.COMPLETE else None,
        params={"batch_norm": number % 2 == 0, "lr": 10 ** -(2 + number % 3)},
        distributions=DISTS,
        intermediate_values=dict(enumerate(curve, 1)),
        user_attrs={"train_acc": [c + 0.05 for c in curve], "val_acc": curve, "best_epoch": 1},
        **kw,
    )
    t.number = number
    return t


def trials() -> list[optuna.trial.FrozenTrial]:
    return [
        trial(0, TrialState.COMPLETE, [0.3, 0.5, 0.6]),
        trial(1, TrialState.PRUNED, [0.1, 0.2]),
        trial(2, TrialState.FAIL, [0.7, 0.95]),  # died mid-trial: its curve is not a result
        trial(3, TrialState.RUNNING, [0.4]),
        trial(4, TrialState.COMPLETE, [0.35, 0.55, 0.65]),
    ]


def integer_ticks_shown(ax) -> bool:
    ax.figure.canvas.draw()  # the locator places the ticks on draw
    lo, hi = ax.get_xlim()
    shown = [x for x in ax.get_xticks() if lo <= x <= hi]
    return bool(shown) and all(float(x).is_integer() for x in shown)


def test_history_marks_failed_and_running_trials_apart_with_integer_trial_ticks():
    fig = history_figure(trials(), "study s: 2,000 train / 500 val items, 3 epochs per trial")
    ax = fig.axes[0]
    assert integer_ticks_shown(ax)
    by_label = {line.get_label(): line for line in ax.get_lines()}
    failed = next(line for label, line in by_label.items() if label.startswith("failed"))
    running = next(line for label, line in by_label.items() if label.startswith("running"))
    assert failed.get_marker() == "X" and list(failed.get_xdata()) == [2]
    assert running.get_marker() == ">" and list(running.get_xdata()) == [3]
    complete = by_label["complete trial"]
    assert list(complete.get_xdata()) == [0, 4]  # the failed trial's 0.95 is not drawn as a result
    assert "study s: 2,000 train / 500 val items" in ax.get_title()


def test_curves_draw_a_failed_trial_faint_and_dotted_with_integer_epoch_ticks():
    ts = trials()
    fig = param_curves_figure("lr", ts, "all trials", "study s: 2,000 train / 500 val items")
    ax_train, ax_val = fig.axes[:2]
    assert integer_ticks_shown(ax_train) and integer_ticks_shown(ax_val)
    # every curve of an axis is one segment of one LineCollection (report/curves.py: 10,000 trials draw in seconds)
    (lines,) = [c for c in ax_val.collections if isinstance(c, LineCollection)]
    ys = [list(seg[:, 1]) for seg in lines.get_segments()]
    failed, ok = ys.index([0.7, 0.95]), ys.index([0.3, 0.5, 0.6])
    assert ys.count([0.7, 0.95]) == 1
    styles, colors = lines.get_linestyles(), lines.get_colors()
    dotted = list(matplotlib.rcParams["lines.dotted_pattern"])  # ":" at a failed curve's 1.0 line width
    assert list(styles[failed][1]) == pytest.approx(dotted) and styles[ok][1] != pytest.approx(dotted)
    assert colors[failed][3] == pytest.approx(FAILED_ALPHA) and colors[ok][3] > FAILED_ALPHA
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert any(t.startswith("failed") for t in legend) and "still running" in legend and "pruned" in legend
    assert "2,000 train / 500 val items" in fig._suptitle.get_text()


def test_data_caption_prefers_what_the_workers_loaded():
    assert data_caption("s", {"search_config": SEARCH}) == "study s: 2,000 train / 500 val items, 3 epochs per trial"
    attrs = {"search_config": {**SEARCH, "data": {"val_size": 5000}}, "data_size": {"train": 45000, "val": 5000}}
    assert data_caption("s", attrs) == "study s: 45,000 train / 5,000 val items, 3 epochs per trial"


@pytest.fixture
def study_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=open_storage(url, create=True), study_name="s", direction="maximize")
    study.set_user_attr("search_config", SEARCH)
    study.set_user_attr(
        "final_result",
        {
            "test_acc_mean": 0.8123,
            "test_acc_std": 0.0041,
            "trial": 4,
            "epochs": 3,
            "test_acc_per_seed": [0.81, 0.816, 0.8079],
            "train_images": 50000,
        },
    )
    for t in trials():
        if t.state != TrialState.RUNNING:
            study.add_trial(t)
    return url


def test_report_in_three_formats_with_one_plotly_js_and_the_final_accuracy(study_url, tmp_path):
    out = tmp_path / "report"
    storage = open_storage(study_url, create=False)
    summary = write_report(
        optuna.load_study(study_name="s", storage=storage), out, output=FigureOutput(("png", "svg", "pdf"), dpi=50)
    )
    for stem in ("history", "curves-lr", "curves-batch_norm"):
        for fmt in ("png", "svg", "pdf"):
            assert (out / f"{stem}.{fmt}").stat().st_size > 1000, f"{stem}.{fmt}"
    assert len(list(out.glob("plotly.min.js"))) == 1
    assert all("plotly.min.js" in (out / f).read_text() for f in ("history.html", "intermediate.html"))
    final = "final test accuracy: 0.8123 ± 0.0041 over 3 seed(s) (trial 4, 3 epochs on 50,000 training images)"
    assert final in summary.headline() and final in (out / "summary.md").read_text()
    assert "data: study s: 2,000 train / 500 val items" in (out / "index.html").read_text()


def test_bad_format_is_one_line(study_url, tmp_path, capsys):
    assert main(["report", "--storage", study_url, "--out", str(tmp_path / "r"), "--format", "png,gif"]) == 2
    err = capsys.readouterr().err
    assert "--format: gif is not a figure format (allowed: png, svg, pdf" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
