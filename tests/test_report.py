"""`alexsearch report`: every file from a real tiny study, a still-running study, and studies compared."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.cli import main
from search.report.compare import compare_figure, cost_curve
from storage.study import open_storage
from tests.helpers import digest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ["history.html", "intermediate.html", "parallel.html", "importance.html"]


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100, path


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> Path:
    """5 real trials of 2 epochs of the MLP task through the CLI; no pruning keeps them all complete."""
    root = tmp_path_factory.mktemp("report")
    space = root / "space.toml"
    space.write_text(
        'task = "mlp-synth"\n[params]\nactivation = { choices = ["sigmoid", "relu"] }\n'
        'optimizer = { choices = ["adam", "sgd"] }\nlr = { low = 1e-4, high = 1e-2, log = true }\n'
        "[fixed]\nbatch_size = 100\n"
    )
    db = root / "study.db"
    assert (
        main(
            [
                "search",
                "--storage",
                f"sqlite:///{db}",
                "--task",
                "mlp-synth",
                "--space",
                str(space),
                "--trials",
                "5",
                "--epochs",
                "2",
                "--pruner",
                "none",
                "--train-size",
                "300",
                "--val-size",
                "200",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    return db


def test_report_on_a_real_study_writes_every_file(real_db, tmp_path, capsys):
    before = digest(real_db)
    out = tmp_path / "report"
    assert main(["report", "--storage", f"sqlite:///{real_db}", "--out", str(out)]) == 0
    assert digest(real_db) == before  # opened read-only
    for name in ["curves-activation.png", "curves-optimizer.png", "curves-lr.png", "history.png", "importance.png"]:
        assert_png(out / name)
    for name in PLOTS:  # plotly.js once per folder, next to the pages: offline, and not 4.8 MB per page
        text = (out / name).read_text()
        assert re.search(r"<script[^>]*\bsrc=\"plotly.min.js\"", text) and len(text) < 1_000_000
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    study = optuna.load_study(study_name="mlp-synth", storage=f"sqlite:///{real_db}")
    best = study.best_trial
    summary = (out / "summary.md").read_text()
    assert f"trial {best.number}: val_acc {best.value:.4f}" in summary
    assert "epochs trained: 10" in summary and "complete 5" in summary and "pruned 0" in summary
    assert '"batch_size": 100' in summary  # the best trial's whole config
    assert summary.count("| COMPLETE |") == 5
    index = (out / "index.html").read_text()
    assert "<img src='curves-lr.png'" in index and "href='parallel.html'" in index
    assert f"trial {best.number}: val_acc {best.value:.4f}" in index
    assert "not drawn" not in summary + index + capsys.readouterr().out


def synthetic_study(url: str, name: str, values: list[float], strategy: str = "optuna") -> optuna.Study:
    """Finished trials with the attributes the objective records, without training anything."""
    study = optuna.create_study(storage=open_storage(url, create=True), study_name=name, direction="maximize")
    study.set_user_attr(
        "search_config",
        {
            "strategy": strategy,
            "sampler": "tpe",
            "pruner": "median",
            "patience": 0,
            "epochs": 3,
            "trials": len(values),
            "data": {},
        },
    )
    dists = {"batch_norm": CategoricalDistribution([False, True]), "lr": FloatDistribution(1e-5, 1e-2, log=True)}
    for i, v in enumerate(values):
        pruned = v < 0
        curve = [abs(v) * (k + 1) / 3 for k in range(2 if pruned else 3)]
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else v,
                params={"batch_norm": i % 2 == 0, "lr": 10 ** -(2 + i % 3)},
                distributions=dists,
                intermediate_values=dict(enumerate(curve, 1)),
                user_attrs={"train_acc": [c + 0.05 for c in curve], "val_acc": curve, "best_epoch": len(curve)},
            )
        )
    return study


def test_report_on_a_running_study_says_what_needs_more_trials(tmp_path, capsys):
    db = tmp_path / "running.db"
    url = f"sqlite:///{db}"
    study = synthetic_study(url, "live", [0.4])
    running = study.ask(
        {"batch_norm": CategoricalDistribution([False, True]), "lr": FloatDistribution(1e-5, 1e-2, log=True)}
    )
    running.report(0.3, 1)
    running.set_user_attr("train_acc", [0.35])
    running.set_user_attr("val_acc", [0.3])
    out = tmp_path / "report"
    assert main(["report", "--storage", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "running 1" in printed and "not drawn: importance.png: needs 5 complete trials, the study has 1" in printed
    summary = (out / "summary.md").read_text()
    assert "still running" in summary and "parallel.html (not drawn)" in summary
    assert "| 1 | RUNNING | (0.3000) |" in summary
    assert_png(out / "curves-lr.png")
    assert_png(out / "history.png")
    assert not (out / "parallel.html").exists() and not (out / "importance.png").exists()
    assert "needs 2 complete trials, the study has 1" in (out / "index.html").read_text()


def test_compare_draws_both_studies_against_epochs(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    a = synthetic_study(url, "tpe", [0.5, -0.3, 0.7, -0.2])  # pruned trials cost 2 epochs, complete ones 3
    b = synthetic_study(url, "steps", [0.6, 0.65, 0.55], strategy="stepwise")
    curve = cost_curve(a)
    assert curve.epochs == [3, 5, 8, 10] and curve.best == [0.5, 0.5, 0.7, 0.7] and curve.epochs_to_best == 8
    fig = compare_figure([curve, cost_curve(b)])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(fig.axes) == 1 and len(labels) == 2
    assert labels[0].startswith("tpe (tpe + median pruner): best 0.700, 10 epochs")
    assert labels[1].startswith("steps (Table 1 protocol, no pruning): best 0.650, 9 epochs")
    out = tmp_path / "cmp"
    assert main(["report", "--storage", url, "--compare", "tpe", "steps", "--out", str(out)]) == 0
    assert_png(out / "compare.png")
    printed = capsys.readouterr().out
    assert "tpe (tpe + median pruner): best val_acc 0.7000" in printed and "reached after 8 epochs" in printed
    assert "steps (Table 1 protocol, no pruning): best val_acc 0.6500" in (out / "compare.md").read_text()


BAD = [
    (["--compare", "tpe"], "alexsearch report: error: --compare: give two or more studies, got 1"),
    (["--compare", "tpe", "nope"], "alexsearch report: error: --study: no study named 'nope' in this storage"),
    (["--study", "tpe", "--compare", "tpe", "steps"], "alexsearch report: error: --study: not used with --compare"),
    ([], "alexsearch report: error: --study: this storage holds 2 studies; name one"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    db = tmp_path / "two.db"
    synthetic_study(f"sqlite:///{db}", "tpe", [0.5])
    synthetic_study(f"sqlite:///{db}", "steps", [0.6])
    before = digest(db)
    out = tmp_path / "out"
    assert main(["report", "--storage", f"sqlite:///{db}", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert digest(db) == before and not out.exists()


def test_missing_storage_is_not_created(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert main(["report", "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "out")]) == 2
    assert "no database at" in capsys.readouterr().err and not db.exists()
