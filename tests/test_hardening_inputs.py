"""Hostile and broken input at the boundary (issue 14, classes 5, 6, 8, 9, 10, 11): every one is refused in one
line naming the field and what is allowed, exit 2, no traceback, the study unchanged; nothing in it runs."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from model import cifar10
from model.errors import DataError
from model.tasks import DataConfig
from model.train import TrainConfig
from search.cli import main
from search.export import ExportedConfig
from search.trials.trial_config import TrialConfig
from storage.artifacts import checkpoint_dir
from storage.url import redact, redact_text
from tests.helpers import digest, run_cli, run_cli_stderr
from tests.tiny_cifar import make_images, write_batch, write_tiny_cifar

QUICK = [
    "--task",
    "mlp-synth",
    "--trials",
    "1",
    "--epochs",
    "1",
    "--train-size",
    "200",
    "--val-size",
    "100",
    "--device",
    "cpu",
]
# one torch thread a process, as in the other tests: CI has 2 cores
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def assert_one_line(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> Path:
    """A real mlp-synth study of one trial, made through the CLI."""
    db = tmp_path_factory.mktemp("study") / "study.db"
    assert main(["search", "--storage", f"sqlite:///{db}", *QUICK]) == 0
    return db


# -- class 10: untrusted bytes --------------------------------------------------------------------------------


class RunsCommand:
    """A pickle payload: unpickling it with plain pickle.load runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_crafted_batch_file_is_refused_and_runs_nothing(tiny_data, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    marker = tmp_path / "pwned"
    images, labels = make_images(80, seed=1)
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": images, b"labels": labels, b"x": RunsCommand(f"touch {marker}")}, f)
    rc, err = run_cli_stderr(
        [
            "search",
            "--storage",
            f"sqlite:///{tmp_path / 's.db'}",
            "--data",
            str(root),
            "--trials",
            "1",
            "--epochs",
            "1",
            "--val-size",
            "100",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert_one_line(rc, err, "data_batch_1 refused", "posix.system")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batch_files_of_every_pickle_protocol_load(tmp_path, protocol):
    images, labels = make_images(20, seed=3)
    path = tmp_path / f"batch-{protocol}"
    with open(path, "wb") as f:
        pickle.dump(
            {
                b"batch_label": b"x",
                b"labels": labels,
                b"data": images,
                b"filenames": [b"a.png"] * 20,
                b"n": np.int64(20),
            },
            f,
            protocol=protocol,
        )
    x, y = cifar10.read_batch(path)
    assert x.shape == (20, 3, 32, 32) and y.tolist() == labels


def test_float_pixels_outside_0_255_are_refused_not_wrapped(tmp_path):
    images, labels = make_images(10, seed=4)
    for bad in (images.astype(np.float64) * 4, images.astype(np.float64) + 0.5, -images.astype(np.int64) - 1):
        write_batch(tmp_path / "b", bad, labels)
        with pytest.raises(DataError, match=r"b: data holds .* pixels must be integers 0\.\.255") as e:
            cifar10.read_batch(tmp_path / "b")
        assert len(str(e.value).splitlines()) == 1
    write_batch(tmp_path / "b", images.astype(np.float32), labels)  # whole numbers 0..255 in floats are fine
    assert cifar10.read_batch(tmp_path / "b")[0].flatten().tolist() == images.flatten().tolist()


# -- class 5: another program's database ----------------------------------------------------------------------


def test_search_on_another_programs_sqlite_file_leaves_it_untouched(tmp_path):
    db = tmp_path / "shop.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('ada')")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    # Its own process: this one must not open and close the file while holding SQLite locks on it.
    r = subprocess.run(
        [sys.executable, "-m", "search.cli", "search", "--storage", f"sqlite:///{db}", *QUICK],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert_one_line(r.returncode, r.stderr, "another program's database (tables customers)")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.db"]  # no -wal, no -shm, no artifacts


# -- class 6: passwords ---------------------------------------------------------------------------------------

SECRET = "s3cretPW"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresq://u:{SECRET}@localhost/db",  # a mistyped driver
        f"postgresql+psycopg://u:{SECRET}@localhost:port/db",  # a port that is not a number
        f"postgresql+psycopg:/u:{SECRET}@localhost/db",  # unparsable
        f"mysql://u:{SECRET}@localhost/db",  # a driver that is not installed
        f"postgresql+psycopg://u@localhost:1/db?password={SECRET}",  # nothing listens on port 1
    ],
)
@pytest.mark.parametrize("command", ["search", "status"])
def test_storage_errors_never_quote_the_password(url, command, capsys):
    argv = [command, "--storage", url] + (QUICK if command == "search" else [])
    rc, err = run_cli_stderr(argv, capsys)
    assert_one_line(rc, err, "--storage")
    assert SECRET not in err


def test_final_never_quotes_the_password(tmp_path, capsys):
    config = tmp_path / "best.json"
    config.write_text(json.dumps(exported_config()))
    rc, err = run_cli_stderr(
        [
            "final",
            "--config",
            str(config),
            "--storage",
            f"nosuch://u:{SECRET}@h/db",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--train-size",
            "50",
            "--seeds",
            "1",
        ],
        capsys,
    )
    assert SECRET not in err


def test_storage_from_the_environment_keeps_the_url_out_of_the_command_line(tmp_path, monkeypatch, capsys):
    """--storage env:NAME (what the Slurm script gives each worker when the URL holds a password): the URL comes
    from the environment; a name that is not set is one line naming --storage, exit 2."""
    db = tmp_path / "study.db"
    assert run_cli(["search", "--storage", f"sqlite:///{db}", *QUICK]) == 0
    monkeypatch.setenv("STUDY_DB_URL", f"sqlite:///{db}")
    capsys.readouterr()
    assert run_cli(["status", "--storage", "env:STUDY_DB_URL"]) == 0
    assert "study mlp-synth: 1 trials" in capsys.readouterr().out
    for reference in ("env:NOT_SET_ANYWHERE", "env:"):
        code, err = run_cli_stderr(["status", "--storage", reference], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "--storage" in err and "is not set" in err


def test_redact_hides_query_passwords_and_userinfo_everywhere():
    assert redact(f"sqlite:///x.db?password={SECRET}") == "sqlite:///x.db?password=***"
    assert (
        redact(f"postgresql://u:{SECRET}@h/db?sslmode=require&PassWord={SECRET}")
        == "postgresql://u:***@h/db?sslmode=require&PassWord=***"
    )
    assert redact(f"not a url://u:{SECRET}@") == "not a url://u:***@"
    assert redact(f"postgresql:/u:{SECRET}@h/db") == "postgresql:/u:***@h/db"
    assert redact(f"postgresql://u:p@{SECRET}@h/db") == "postgresql://u:***@h/db"
    assert SECRET not in redact_text(f"auth failed with {SECRET}", f"postgresql://u@h/db?password={SECRET}")


@pytest.mark.slow
def test_a_run_with_a_password_url_writes_it_nowhere(tmp_path, monkeypatch, capfd):
    """search, status, export, report and final on a SQLite URL with ?password=: no output, no file, no database
    row holds the password. The commands run in this process, in tmp_path; capfd takes all they write to file
    descriptors 1 and 2, logging and warnings included."""
    db = tmp_path / "runs" / "study.db"
    url = f"sqlite:///{db}?password={SECRET}"
    steps = [
        ["search", "--storage", url, *QUICK],
        ["status", "--storage", url],
        ["export", "--storage", url, "--out", str(tmp_path / "best.json")],
        ["report", "--storage", url, "--out", str(tmp_path / "report")],
        [
            "final",
            "--config",
            str(tmp_path / "best.json"),
            "--storage",
            url,
            "--out",
            str(tmp_path / "final"),
            "--device",
            "cpu",
            "--train-size",
            "100",
            "--seeds",
            "1",
        ],
    ]
    monkeypatch.chdir(tmp_path)
    output = []
    for argv in steps:
        rc = run_cli(argv)
        out, err = capfd.readouterr()
        assert rc == 0, err[-2000:]
        output.append(out + err)
    assert SECRET not in "\n".join(output)
    con = sqlite3.connect(db)
    dump = "\n".join(con.iterdump())
    con.close()
    # a --train-size final is a smoke run: recorded apart (issue 12), and its record must hide the password too
    assert "search_config" in dump and "final_smoke_result" in dump and SECRET not in dump
    assert "password=***" in dump  # the stored settings keep the URL's shape, without its secret
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("study.db")]
    assert len(written) > 8  # export, report files, final's metrics and figures, artifacts
    leaks = [p for p in written if SECRET.encode() in p.read_bytes()]
    assert not leaks


# -- class 8: study names -------------------------------------------------------------------------------------


def test_names_differing_only_in_non_ascii_get_their_own_folders(tmp_path):
    names = ["café", "cafe", "cafè", "caf_", "café" * 100, "café" * 100 + "!", "a/b", "a_b", "..", ""]
    folders = {checkpoint_dir(tmp_path, n) for n in names}
    assert len(folders) == len(names)
    for folder in folders:
        assert folder.name.isascii() and len(folder.name) <= 60 and folder.name not in (".", "..")
    assert checkpoint_dir(tmp_path, "café").name.startswith("cafe-")  # still readable


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("", "--study: must be a name of 1 to 200 characters"),
        ("x" * 600, "--study: must be at most 200 characters, got 600"),
        ("   ", "not empty or blank"),
    ],
)
@pytest.mark.parametrize("command", ["search", "status"])
def test_bad_study_names_are_refused(name, fragment, command, study_db, capsys):
    before = digest(study_db)
    argv = [command, "--storage", f"sqlite:///{study_db}", "--study", name] + (QUICK if command == "search" else [])
    rc, err = run_cli_stderr(argv, capsys)
    assert_one_line(rc, err, fragment)
    assert digest(study_db) == before


# -- class 9: values that passed validation and crashed a trial -----------------------------------------------

SPACE_HEAD = 'task = "mlp-synth"\n[params]\nlr = { low = 1e-3, high = 1e-1, log = true }\n'
BAD_SPACES = [
    (
        "[fixed]\naugment = true\n",
        "fixed.augment: True is not allowed (augment: task mlp-synth has no augmentation (allowed: false))",
    ),
    ("hidden = { choices = [16, 100000000000] }\n", "params.hidden = 100000000000: the model's training state"),
    (
        "hidden = { low = 16, high = 1000000000000 }\ndepth = { choices = [2, 3] }\n",
        "params.hidden = 1000000000000, params.depth = 3: the model cannot be built",
    ),
    ("[fixed]\nin_features = 3\n", "fixed.in_features: 3 is not allowed (in_features: the synthetic data has 2"),
    ("[fixed]\nnum_classes = 5\n", "fixed.num_classes: 5 is not allowed"),
]


@pytest.mark.parametrize("extra, fragment", BAD_SPACES, ids=[f for _, f in BAD_SPACES])
def test_space_values_a_trial_cannot_run_are_refused_before_the_study(extra, fragment, study_db, tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(
        SPACE_HEAD.replace("[params]\n", "[params]\n" + extra)
        if not extra.startswith("[fixed]")
        else SPACE_HEAD + extra
    )
    before = digest(study_db)
    rc, err = run_cli_stderr(
        ["search", "--storage", f"sqlite:///{study_db}", "--study", "new", "--space", str(space), *QUICK], capsys
    )
    assert_one_line(rc, err, str(space), fragment)
    assert digest(study_db) == before  # no study 'new' was created


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--seed", str(10**20)], "argument --seed: must be in 0..4294967295 (numpy's seed range)"),
        (["--seed", str(2**32)], "argument --seed: must be in 0..4294967295"),
    ],
)
def test_seeds_beyond_numpys_range_are_refused(argv, fragment, study_db, capsys):
    before = digest(study_db)
    rc, err = run_cli_stderr(["search", "--storage", f"sqlite:///{study_db}", *QUICK, *argv], capsys)
    assert_one_line(rc, err, fragment)
    assert digest(study_db) == before


def exported_config() -> dict:
    """A valid export of an mlp-synth config, as a dict to spoil."""
    config = TrialConfig("mlp-synth", {}, TrainConfig(epochs=1), DataConfig())
    return ExportedConfig(trial_config=config).to_dict()


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"model": {"in_features": 3}}, "trial_config.model.in_features: the synthetic data has 2 features"),
        ({"model": {"hidden": 100_000_000_000}}, "--config: trial_config.model: the model's training state"),
        ({"model": {"hidden": 10**12, "depth": 3}}, "--config: trial_config.model: the model cannot be built"),
        ({"train": {"augment": True}}, "trial_config.train.augment: task mlp-synth has no augmentation"),
        ({"train": {"seed": 10**20}}, "trial_config.train: seed must be in 0..4294967295, got 100000000000000000000"),
        ({"data": {"split_seed": -1}}, "trial_config.data: split_seed must be in 0..4294967295, got -1"),
    ],
)
def test_final_refuses_a_config_its_run_would_crash_on(change, fragment, tmp_path, capsys):
    data = exported_config()
    for part, values in change.items():
        data["trial_config"][part].update(values)
    path = tmp_path / "best.json"
    path.write_text(json.dumps(data))
    rc, err = run_cli_stderr(
        [
            "final",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--train-size",
            "50",
            "--seeds",
            "1",
        ],
        capsys,
    )
    assert_one_line(rc, err, fragment)
    assert not (tmp_path / "out").exists()


def test_final_refuses_seeds_past_the_range(tmp_path, capsys):
    path = tmp_path / "best.json"
    path.write_text(json.dumps(exported_config()))
    rc, err = run_cli_stderr(
        [
            "final",
            "--config",
            str(path),
            "--seed",
            str(2**32 - 2),
            "--seeds",
            "3",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert_one_line(rc, err, "--seeds: the last seed would be 4294967296")


# -- class 11: smaller breaks ---------------------------------------------------------------------------------


def test_space_file_with_invalid_utf8_names_the_file(study_db, tmp_path, capsys):
    space = tmp_path / "latin1.toml"
    space.write_bytes('task = "mlp-synth"\n# caf\xe9\n[params]\nlr = { low = 1e-3, high = 1e-1 }\n'.encode("latin1"))
    rc, err = run_cli_stderr(["search", "--storage", f"sqlite:///{study_db}", "--space", str(space), *QUICK], capsys)
    assert_one_line(rc, err, f"--space: {space} is not UTF-8 text (byte 24 is 0xe9)")


def read_only_mount(folder: Path) -> None:
    """Make folder a read-only tmpfs holding its current files (needs root); skip where mounting is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a read-only file system")
    saved = folder.with_name(folder.name + "-copy")
    shutil.copytree(folder, saved)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)]).returncode:
        pytest.skip("mount is not allowed here")
    shutil.copytree(saved, folder, dirs_exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


@pytest.fixture
def ro_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # -l: an engine this process left open


def test_a_wal_database_on_read_only_media_is_read(ro_folder, capsys):
    db = ro_folder / "study.db"
    storage = optuna.storages.RDBStorage(f"sqlite:///{db}")
    optuna.create_study(study_name="ro", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.engine.dispose()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"  # WAL stays a property of the file
    con.close()
    read_only_mount(ro_folder)
    capsys.readouterr()
    assert main(["status", "--storage", f"sqlite:///{db}"]) == 0, capsys.readouterr().err
    assert "study ro: 2 trials" in capsys.readouterr().out
    rc, err = run_cli_stderr(["search", "--storage", f"sqlite:///{db}", "--study", "ro", *QUICK], capsys)
    assert_one_line(rc, err, "is on read-only media or in a folder this user cannot write")


def test_a_new_database_in_a_read_only_folder_is_one_line(ro_folder, capsys):
    read_only_mount(ro_folder)
    rc, err = run_cli_stderr(["search", "--storage", f"sqlite:///{ro_folder / 'new.db'}", *QUICK], capsys)
    assert_one_line(rc, err, "new.db (unable to open database file); a search needs a database in a writable folder")


def test_tiny_cifar_still_loads(tmp_path):
    x, y = cifar10.load_train(write_tiny_cifar(tmp_path, per_batch=10, test_size=10))
    assert x.shape == (50, 3, 32, 32)
