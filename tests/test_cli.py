"""The CLI end to end on a real SQLite study, and every bad input: one line, exit 2, database unchanged.

The study is of the MLP task (a trial takes well under a second); the bad inputs about CIFAR-10 data run
the AlexNet task against the same database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.cli import main
from tests.helpers import digest, run_cli_stderr

QUICK = ["--task", "mlp-synth", "--epochs", "2", "--train-size", "300", "--val-size", "200", "--device", "cpu"]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    """A real study of 4 trials, 2 epochs, made through the CLI."""
    db = tmp_path_factory.mktemp("e2e") / "runs" / "study.db"  # parent folder does not exist yet
    rc = main(["search", "--storage", f"sqlite:///{db}", "--trials", "4", *QUICK])
    assert rc == 0
    return db


def test_search_writes_trials_intermediate_values_and_user_attrs(study_db):
    con = sqlite3.connect(study_db)
    states = [r[0] for r in con.execute("SELECT state FROM trials")]
    assert len(states) == 4 and set(states) <= {"COMPLETE", "PRUNED"}
    steps = con.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()[0]
    assert steps >= 4 * 1
    keys = {r[0] for r in con.execute("SELECT DISTINCT key FROM trial_user_attributes")}
    assert {
        "train_acc",
        "val_acc",
        "train_loss",
        "best_epoch",
        "epoch_seconds",
        "images_per_s",
        "device",
        "versions",
        "seed",
        "config",
    } <= keys
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_status_shows_the_study(study_db, capsys):
    assert main(["status", "--storage", f"sqlite:///{study_db}"]) == 0
    out = capsys.readouterr().out
    assert "study mlp-synth: 4 trials" in out and "best: trial" in out and "activation=" in out


def test_rerun_resumes_towards_the_total(study_db, capsys):
    copy = study_db.parent / "resume.db"
    with sqlite3.connect(study_db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)  # a plain file copy would miss what is still in the -wal file
    url = f"sqlite:///{copy}"
    capsys.readouterr()
    assert main(["search", "--storage", url, "--trials", "4", *QUICK]) == 0
    assert "already has 4 finished trials" in capsys.readouterr().out
    assert main(["search", "--storage", url, "--trials", "5", *QUICK]) == 0
    assert sqlite3.connect(copy).execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 5


BAD = [
    (["search", "--trials", "0"], "argument --trials: must be a positive integer, got '0'"),
    (["search", "--trials", "many"], "argument --trials: must be a positive integer, got 'many'"),
    (["search", "--epochs", "-1"], "argument --epochs: must be a positive integer"),
    (["search", "--sampler", "cmaes"], "argument --sampler: invalid choice: 'cmaes'"),
    (["search", "--pruner", "x"], "argument --pruner: invalid choice: 'x'"),
    (["search", "--precision", "fp16"], "argument --precision: invalid choice: 'fp16'"),
    (["search", "--grace-period", "5", "--heartbeat-interval", "10"], "--grace-period: must be longer than"),
    (["search", "--patience", "-2"], "argument --patience: must be an integer >= 0"),
    (["search", "--task", "resnet"], "--task: unknown task 'resnet' (allowed: alexnet-cifar10"),
    (["search", "--space", "MISSING.toml"], "--space: no file at"),
    (["search", "--space", "BAD.toml"], "params.lr: low (0.1) > high (0.01)"),
    (["search", "--sampler", "grid"], "--sampler grid needs choices for every parameter; params.lr is a range"),
    (["search", "--device", "cuda:7"], "device: 'cuda:7'"),
    (["search", "--device", "tpu"], "device: 'tpu'"),
    (["search", "--data", "NODATA"], "CIFAR-10 not found"),
    (["search", "--val-size", "0"], "argument --val-size: must be a positive integer"),
    (["search", "--val-size", "400", "--data", "DATA"], "--val-size: must be less than the 400 training images"),
    (["search", "--storage", "not a url"], "--storage: cannot parse 'not a url'"),
    (["search", "--storage", "nosuchdb://x"], "--storage: unknown database kind 'nosuchdb'"),
    (["status", "--study", "nope"], "--study: no study named 'nope' in this storage (studies: mlp-synth)"),
    (["status", "--storage", "sqlite:///MISSING.db"], "--storage: no database at"),
    (["status", "--storage", "sqlite:///NOTADB"], "is not a SQLite database"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2_database_unchanged(argv, fragment, study_db, tiny_data, tmp_path, capsys):
    bad_space = tmp_path / "BAD.toml"
    bad_space.write_text("[params]\nlr = { low = 0.1, high = 0.01 }\n")
    (tmp_path / "NOTADB").write_text("hello, not a database")
    subs = {
        "MISSING.toml": str(tmp_path / "missing.toml"),
        "BAD.toml": str(bad_space),
        "NODATA": str(tmp_path / "nodata"),
        "sqlite:///MISSING.db": f"sqlite:///{tmp_path / 'missing.db'}",
        "sqlite:///NOTADB": f"sqlite:///{tmp_path / 'NOTADB'}",
        "DATA": str(tiny_data),
    }
    argv = [subs.get(a, a) for a in argv]
    if "--storage" not in argv and argv[0] in ("search", "status"):
        argv += ["--storage", f"sqlite:///{study_db}"]
    if argv[0] == "search" and "--data" not in argv:  # the study's task, unless the input is about CIFAR-10
        argv += ([] if "--task" in argv else ["--task", "mlp-synth"]) + ["--val-size", "100"]
        argv += ["--trials" if "--trials" not in argv else "--epochs", "9"]
    before = digest(study_db)
    rc, err = run_cli_stderr(argv, capsys)
    assert rc == 2
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert digest(study_db) == before
    assert not (tmp_path / "missing.db").exists()


def test_console_script_prints_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "alexsearch"
    r = subprocess.run(
        [str(exe), "status", "--storage", f"sqlite:///{tmp_path / 'none.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no database at" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "none.db").exists()


def test_precision_flag_reaches_every_trial_config(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert (
        main(
            [
                "search",
                "--task",
                "mlp-synth",
                "--storage",
                url,
                "--trials",
                "1",
                "--epochs",
                "1",
                "--train-size",
                "300",
                "--val-size",
                "100",
                "--device",
                "cpu",
                "--precision",
                "bf16",
            ]
        )
        == 0
    )
    con = sqlite3.connect(tmp_path / "p.db")
    (config,) = con.execute("SELECT value_json FROM trial_user_attributes WHERE key = 'config'").fetchone()
    assert '"precision": "bf16"' in config


def test_resume_with_other_settings_is_refused(study_db, capsys):
    before = digest(study_db)
    capsys.readouterr()
    rc = main(
        ["search", "--storage", f"sqlite:///{study_db}", "--trials", "5", *[a if a != "2" else "3" for a in QUICK]]
    )  # --epochs 3 instead of 2
    err = capsys.readouterr().err
    assert rc == 2 and "--epochs: study 'mlp-synth' was created with 2, not 3" in err
    assert digest(study_db) == before


def test_search_keeps_the_best_trials_weights_and_curve_as_artifacts(study_db):
    study = optuna.load_study(study_name="mlp-synth", storage=f"sqlite:///{study_db}")
    best = study.user_attrs["best_artifacts"]
    assert best["trial"] == study.best_trial.number
    stored = {p.name for p in (study_db.parent / "study-artifacts" / "optuna").iterdir()}
    assert {best["weights_id"], best["curve_id"]} <= stored
    assert not list((study_db.parent / "study-artifacts" / "checkpoints").rglob("*.pt"))  # finished: none left
