"""Steering a study: `stop` from another process, `--timeout`, `studies`, and `export` that will not overwrite."""

from __future__ import annotations

import subprocess
import threading
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from model.alexnet import AlexNetConfig
from model.tasks import DataConfig
from model.train import TrainConfig
from search.cli import main
from search.study.stop import STOP_ATTR, request_stop
from search.trials.trial_config import TrialConfig
from storage.study import open_storage
from tests.helpers import ALEXSEARCH, ENV

MLP = ["--task", "mlp-synth", "--device", "cpu", "--pruner", "none", "--patience", "0"]


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False))


class Output:
    """A child's stdout, read line by line on a thread, so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        stdout = proc.stdout
        assert stdout is not None  # PIPE
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(stdout), daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.lines):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; output so far: {self.lines[-20:]}")


@pytest.mark.slow
def test_stop_from_another_process_ends_a_two_worker_search_within_an_epoch(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    search = subprocess.Popen(
        [
            ALEXSEARCH,
            "search",
            *MLP,
            "--no-estimate",
            "--storage",
            url,
            "--study",
            "st",
            "--workers",
            "2",
            "--trials",
            "4",
            "--epochs",
            "60",
            "--train-size",
            "20000",
            "--val-size",
            "500",
            "--artifacts",
            str(tmp_path / "art"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    out = Output(search)
    try:
        out.wait_for(
            lambda lines: (
                {w for w in ("[w0]", "[w1]") if any(w in x and "epoch 1/60" in x for x in lines)} == {"[w0]", "[w1]"}
            ),
            300,
            "both workers to finish an epoch",
        )
        capsys.readouterr()
        assert main(["stop", "--storage", url, "--study", "st"]) == 0  # this process: another one than the search's
        assert "stop requested" in capsys.readouterr().out
        search.wait(timeout=180)
    finally:
        if search.poll() is None:
            search.kill()
    out.thread.join(10)
    assert search.returncode == 0, search.stderr.read()[-3000:]
    storage = open_storage(url, create=False)
    flagged = storage.get_study_system_attrs(storage.get_study_id_from_name("st"))[STOP_ATTR]["time"]
    trials = load(url, "st").get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and not [t for t in trials if t.state == TrialState.COMPLETE]  # both stopped mid-trial
    for t in failed:  # within one epoch of the flag (an epoch is read for the flag at its end)
        epoch_s = max(t.user_attrs["epoch_seconds"])
        assert t.datetime_complete.timestamp() - flagged < epoch_s + 3, (t.number, epoch_s)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in failed)  # queued
    text = "".join(out.lines)
    assert text.count("stopped by `alexsearch stop`") == 2 and text.count("queued for retry") == 2

    # `worker` obeys the flag until `search` clears it (run in this process: what it does, not how it stops).
    capsys.readouterr()
    code = main(
        [
            "worker",
            *MLP,
            "--storage",
            url,
            "--study",
            "st",
            "--trials",
            "4",
            "--epochs",
            "60",
            "--train-size",
            "20000",
            "--val-size",
            "500",
        ]
    )
    said, err = capsys.readouterr()
    assert code == 0 and "was stopped by" in said, said + err
    assert len(load(url, "st").get_trials()) == len(trials)  # it started nothing


@pytest.mark.slow
def test_timeout_starts_no_trial_after_the_limit(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    started = time.time()
    r = subprocess.run(
        [
            ALEXSEARCH,
            "search",
            *MLP,
            "--storage",
            url,
            "--study",
            "to",
            "--trials",
            "1000",
            "--epochs",
            "1",
            "--train-size",
            "300",
            "--val-size",
            "100",
            "--timeout",
            "10s",  # a trial starts within it even on a loaded machine (start-up takes 2-5 s)
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "time limit (--timeout) reached" in r.stdout
    trials = load(url, "to").get_trials()
    assert 1 <= len(trials) < 1000
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)  # the running one finished
    assert max(t.datetime_start.timestamp() for t in trials) <= started + 10 + 2  # none began after the limit


@pytest.mark.parametrize(
    "text,message", [("soon", "must be a duration like 90s, 30m or 2h, got 'soon'"), ("0s", "must be a duration")]
)
def test_bad_timeout_is_one_line(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as e:
        main(["search", *MLP, "--storage", f"sqlite:///{tmp_path / 's.db'}", "--timeout", text])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.db").exists()


def synthetic(url: str, name: str, values: list[float | None], **attrs) -> optuna.Study:
    """Trials with the user attrs the objective writes, without training; None = a failed trial."""
    study = optuna.create_study(storage=open_storage(url, create=True), study_name=name, direction="maximize")
    study.set_user_attr("search_config", {"trials": 5, "epochs": 2, "data": {}})
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    config = TrialConfig("alexnet-cifar10", AlexNetConfig().to_dict(), TrainConfig(epochs=2), DataConfig())
    for i, v in enumerate(values):
        study.add_trial(
            create_trial(
                state=TrialState.FAIL if v is None else TrialState.COMPLETE,
                value=v,
                params={"lr": 10.0 ** -(i + 2)},
                distributions={"lr": FloatDistribution(1e-6, 1e-1, log=True)},
                intermediate_values={1: v or 0.1},
                user_attrs={"config": config.to_dict(), "best_epoch": 1, "val_acc": [v or 0.1], "train_acc": [0.5]},
            )
        )
    return study


def test_studies_lists_states_best_and_final_result(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic(
        url,
        "alpha",
        [0.6, 0.8, None],
        final_result={"test_acc_mean": 0.7712, "test_acc_std": 0.004, "test_acc_per_seed": [0.77, 0.78, 0.76]},
    )
    synthetic(url, "beta", [0.5])
    request_stop(open_storage(url, create=False), "beta")
    assert main(["studies", "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    alpha, beta = (next(line for line in lines if line.startswith(name)) for name in ("alpha", "beta"))
    assert alpha.split()[:7] == ["alpha", "2/5", "2", "0", "0", "0", "1"]  # finished, complete ... failed
    assert "0.8000 (#1)" in alpha and "0.7712 ± 0.0040 (3 seeds)" in alpha
    assert beta.split()[:3] == ["beta", "1/5", "1"] and "stop requested" in beta


def test_stop_clear_and_the_flag_in_the_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic(url, "s", [0.5])
    assert main(["stop", "--storage", url]) == 0  # the only study
    storage = open_storage(url, create=False)
    assert storage.get_study_system_attrs(storage.get_study_id_from_name("s"))[STOP_ATTR]["by"]
    assert main(["stop", "--storage", url, "--clear"]) == 0
    assert storage.get_study_system_attrs(storage.get_study_id_from_name("s"))[STOP_ATTR] is None
    assert main(["stop", "--storage", url, "--study", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_export_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    synthetic(url, "s", [0.5, 0.9])
    out = tmp_path / "best.json"
    out.write_text("another study's export\n")
    assert main(["export", "--storage", url, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out: {out} already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "another study's export\n"
    assert main(["export", "--storage", url, "--out", str(out), "--force"]) == 0
    assert '"trial": 1' in out.read_text()
