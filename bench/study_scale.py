"""Reads of a big study: the parent's progress poll, `status`, `report` and optuna-dashboard at 1,000 and 10,000 trials.

    python -m bench.study_scale [--sizes 1000,10000] [--cache /tmp/study-scale] [--skip report]

The studies are made once with Optuna's API and kept in --cache (a SQLite file per size, reused by later runs).
Each trial is what an alexsearch trial of the alexnet-cifar10 space leaves behind: four params, one intermediate
value per epoch (10, or 2-9 for pruned trials), the user attrs the objective writes (config, seed, device,
versions, the five per-epoch curves, best_epoch, a pruned or stopped reason) and its value; 70% complete, 29%
pruned, 1% skipped duplicates. Fast bulk insert: RDBStorage.create_new_trial with a template trial, the whole
build in one engine whose connections run PRAGMA synchronous=OFF (no fsync per trial: a build that crashes is
simply thrown away and made again).

Timed, each on the same file:
- poll: what `search --workers N`'s parent does every 2 s to draw its progress bar (a second poll, as the
  parent keeps its storage open between polls);
- status: the `alexsearch status` command, a fresh process, wall time;
- report: the `alexsearch report` command, a fresh process, wall time;
- dashboard first load: optuna-dashboard's GET /api/studies/<id>?after=0 on the app `alexsearch dashboard` serves;
- dashboard update poll: the page's next GET /api/studies/<id>?after=<trials it has>, once the dashboard's trial
  cache (10 s at this size) has expired, as it is every 10 s on an open page.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import sqlalchemy
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

PY = sys.executable
STUDY = "scale"
EPOCHS = 10
CURVES = ("train_acc", "val_acc", "train_loss", "epoch_seconds", "images_per_s")
DISTRIBUTIONS = {
    "batch_norm": CategoricalDistribution([False, True]),
    "optimizer": CategoricalDistribution(["adam", "sgd"]),
    "batch_size": CategoricalDistribution([10, 100, 500]),
    "lr": FloatDistribution(1e-5, 1e-2, log=True),
}


def make_trial(rng: random.Random, number: int) -> optuna.trial.FrozenTrial:
    params = {
        "batch_norm": rng.random() < 0.5,
        "optimizer": rng.choice(["adam", "sgd"]),
        "batch_size": rng.choice([10, 100, 500]),
        "lr": 10 ** rng.uniform(-5, -2),
    }
    kind = rng.random()
    epochs = EPOCHS if kind < 0.7 else rng.randint(2, EPOCHS - 1)
    val = [min(0.9, 0.3 + 0.05 * e + rng.uniform(-0.05, 0.05)) for e in range(epochs)]
    curves = {
        "train_acc": [v + 0.05 for v in val],
        "val_acc": val,
        "train_loss": [2.0 - v for v in val],
        "epoch_seconds": [rng.uniform(1, 2) for _ in val],
        "images_per_s": [rng.uniform(2e4, 3e4) for _ in val],
    }
    best = max(range(epochs), key=val.__getitem__)
    attrs = {
        "config": {
            "task": "alexnet-cifar10",
            "model": {"batch_norm": params["batch_norm"]},
            "train": {
                "optimizer": params["optimizer"],
                "lr": params["lr"],
                "batch_size": params["batch_size"],
                "epochs": EPOCHS,
                "seed": 0,
            },
        },
        "seed": 0,
        "device": "NVIDIA H200",
        "versions": {"python": "3.11", "torch": "2.x", "optuna": "5.0"},
        **curves,
        "best_epoch": best + 1,
    }
    if kind < 0.7:
        state, value = TrialState.COMPLETE, val[best]
        if epochs < EPOCHS:
            attrs["stopped_reason"] = "no val_acc improvement for 3 epochs"
    else:
        state, value = TrialState.PRUNED, None
        attrs["pruned_reason"] = f"val_acc {val[-1]:.4f} at epoch {epochs} fell below the median pruner's bar"
        if kind > 0.99:
            attrs = {"duplicate_of": max(0, number - 1), "pruned_reason": "duplicate"}
            val = []
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs=attrs,
        intermediate_values=dict(enumerate(val, start=1)),
    )


def build(path: Path, n: int) -> None:
    """A study of n finished trials at path (see the module docstring)."""
    from search.settings import SearchConfig
    from search.space.space import load_space

    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    url = f"sqlite:///{tmp}"
    storage = optuna.storages.RDBStorage(url)

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def _fast(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    storage.engine.dispose()
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.set_user_attr("search_config", SearchConfig(study=STUDY, trials=n).to_dict())
    study.set_user_attr("space", load_space(None, "alexnet-cifar10").to_dict())
    rng = random.Random(n)
    start = time.perf_counter()
    for i in range(n):
        storage.create_new_trial(study._study_id, template_trial=make_trial(rng, i))
        if (i + 1) % 2000 == 0:
            print(f"  built {i + 1}/{n} trials ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    storage.engine.dispose()
    con = __import__("sqlite3").connect(tmp)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    tmp.rename(path)


def time_poll(url: str) -> float:
    """Seconds of the parent's second progress poll (the first one opens the storage)."""
    from search.settings import SearchConfig
    from search.workers.study_count import StudyCount

    count = StudyCount(SearchConfig(storage=url, study=STUDY))
    count()
    start = time.perf_counter()
    count()
    return time.perf_counter() - start


def time_command(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([PY, "-m", "search.cli", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"alexsearch {args[0]} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return seconds


def dashboard_app(url: str, artifacts: str):
    """The WSGI app `alexsearch dashboard` serves."""
    from search.cli.dashboard import make_app

    return make_app(url, artifacts)


def get(app, path: str, query: str) -> tuple[float, dict]:
    from wsgiref.util import setup_testing_defaults

    environ: dict = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(s: str, headers: list, exc_info=None):
        status.append(s)
        return io.BytesIO().write

    start = time.perf_counter()
    body = b"".join(app(environ, start_response))
    seconds = time.perf_counter() - start
    if not status or not status[0].startswith("200"):
        raise SystemExit(f"dashboard GET {path}?{query}: {status} {body[:300]!r}")
    return seconds, json.loads(body)


def time_dashboard(url: str, artifacts: str, ttl_s: float) -> tuple[float, float]:
    app = dashboard_app(url, artifacts)
    study_id = optuna.storages.RDBStorage(url, skip_table_creation=True).get_study_id_from_name(STUDY)
    first, body = get(app, f"/api/studies/{study_id}", "after=0")
    time.sleep(ttl_s)  # the dashboard re-reads the study once its cache has expired
    update, _ = get(app, f"/api/studies/{study_id}", f"after={len(body['trials'])}")
    return first, update


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.study_scale", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000", help="finished trials of each study (default: 1000,10000)")
    p.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "alexsearch-study-scale"),
        help="folder keeping the built studies between runs",
    )
    p.add_argument("--skip", default="", help="comma-separated: poll,status,report,dashboard")
    p.add_argument(
        "--dashboard-ttl",
        type=float,
        default=10.5,
        help="seconds to wait between the dashboard's two requests (its cache lasts 10 s)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        path = cache / f"study-{n}.db"
        if not path.exists():
            print(f"building a study of {n} trials in {path}", file=sys.stderr, flush=True)
            build(path, n)
        url = f"sqlite:///{path}"
        row: dict[str, float | None] = {}
        row["poll"] = None if "poll" in skip else time_poll(url)
        with tempfile.TemporaryDirectory(prefix="study-scale-") as tmp:
            row["status"] = (
                None if "status" in skip else time_command(["status", "--storage", url, "--study", STUDY], env)
            )
            row["report"] = (
                None
                if "report" in skip
                else time_command(
                    ["report", "--storage", url, "--study", STUDY, "--out", str(Path(tmp) / "report")], env
                )
            )
            row["dashboard"], row["dashboard update"] = (
                (None, None)
                if "dashboard" in skip
                else time_dashboard(url, str(Path(tmp) / "artifacts"), args.dashboard_ttl)
            )
        rows.append((n, row))
        print(
            f"{n} trials: " + ", ".join(f"{k} {v:.3f} s" for k, v in row.items() if v is not None),
            file=sys.stderr,
            flush=True,
        )
    names = list(rows[0][1])
    print(f"{'trials':>7} " + " ".join(f"{k + ' s':>18}" for k in names))
    for n, row in rows:
        print(f"{n:>7} " + " ".join(f"{'-' if row[k] is None else f'{row[k]:.3f}':>18}" for k in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
