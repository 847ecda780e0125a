"""Usage errors are one line and exit 2; anything else is a bug: traceback, exit 1. --debug and --version."""

from __future__ import annotations

from importlib import metadata

import optuna
import pytest

from search.cli import main


@pytest.fixture
def study_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="s", storage=url)
    return url


def test_a_usage_error_is_one_line_and_exit_2(tmp_path, capsys):
    rc = main(["status", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("alexsearch status: error: --storage: no database at ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_os_error_on_a_path_the_user_gave_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    rc = main(
        [
            "search",
            "--task",
            "mlp-synth",
            "--storage",
            f"sqlite:///{tmp_path / 'afile' / 'study.db'}",
            "--trials",
            "1",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() == f"alexsearch search: error: {tmp_path / 'afile'}: File exists"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_of_a_usage_error(where, tmp_path, capsys):
    command = ["status", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]
    rc = main(["--debug", *command] if where == "before" else [*command, "--debug"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback (most recent call last)" in err and "StorageError" in err
    assert err.strip().splitlines()[-1].startswith("alexsearch status: error: --storage: no database at ")


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("a library's ValueError is not bad input")])
def test_a_bug_shows_its_traceback_and_exits_1(error, study_db, monkeypatch, capsys):
    def broken(*args, **kwargs):  # stands in for a bug inside a library the command calls
        raise error

    monkeypatch.setattr(optuna.study.Study, "get_trials", broken)
    rc = main(["status", "--storage", study_db])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback (most recent call last)" in err and f"{type(error).__name__}: {error}" in err
    assert "internal error" in err.strip().splitlines()[-1]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"alexsearch {metadata.version('alexsearch')}"
