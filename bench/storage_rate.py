"""Trials per second of a no-train objective with N worker processes, on SQLite and on PostgreSQL, in one run.

    python -m bench.storage_rate [--workers 8] [--trials 300] [--backends sqlite,postgresql] [--sampler random]

What a trial costs the storage here is what it costs in a real search, minus the training: each worker is a
spawned process that opens its own storage with storage.study.open_storage(create=True) and the default
heartbeat, and runs search.worker.run_trials (which counts the study's finished trials before each trial);
the objective samples the task's four parameters, reports two intermediate values and returns a float. The
workers start together at a barrier; the rate is the study's finished trials over the span from that start
to the last worker's end. PostgreSQL is a temporary server (tests/pg_server.py) with its durable defaults
(fsync on), as SQLite keeps its own (WAL, synchronous FULL). Every error a worker meets is counted, and
"database is locked" errors separately: there must be none.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
import torch

from search.space import load_space
from search.worker import run_trials
from storage.study import Heartbeat, open_storage, quiet_optuna

TIMEOUT_S = 600
TASK = "alexnet-cifar10"
LOCKED = "database is locked"


@dataclass
class WorkerResult:
    trials: int  # trials this worker ran
    start: float  # time.time() at the barrier release
    end: float
    errors: list[str]  # first line of each error this worker met
    locked: int  # "database is locked" errors the driver raised, including any Optuna caught itself


def worker(rank: int, url: str, budget: int, sampler: str, barrier, results) -> None:
    torch.set_num_threads(1)
    quiet_optuna()
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's notices
    space = load_space(None, TASK)
    storage = open_storage(url, create=True, heartbeat=Heartbeat())
    locked = [0]

    @sqlalchemy.event.listens_for(storage.engine, "handle_error")
    def count_locked(context) -> None:
        if LOCKED in str(context.original_exception):
            locked[0] += 1

    make_sampler = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}[sampler]
    study = optuna.create_study(study_name="rate", storage=storage, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(seed=rank))
    rng = random.Random(rank)

    def objective(trial: optuna.Trial) -> float:
        space.sample(trial)
        trial.report(rng.random(), 1)
        value = rng.random()
        trial.report(value, 2)
        return value

    barrier.wait(timeout=TIMEOUT_S)
    start, ran, errors = time.time(), 0, []
    while True:
        try:
            ran += run_trials(study, objective, budget, space)
            break
        except Exception as e:  # count it and go on: the rate must include what errors cost
            errors.append(f"{type(e).__name__}: {str(e.__cause__ or e).strip().splitlines()[0][:200]}")
            if len(errors) > 20:
                break
    results.put((rank, WorkerResult(ran, start, time.time(), errors, locked[0])))
    storage.engine.dispose()


@dataclass
class Rate:
    backend: str
    workers: int
    trials: int  # finished trials in the study
    seconds: float
    errors: list[str]
    locked: int

    @property
    def per_s(self) -> float:
        return self.trials / self.seconds


def measure(backend: str, url: str, workers: int, budget: int, sampler: str) -> Rate:
    ctx = mp.get_context("spawn")
    # The study is created once here, so the workers never race to create it.
    storage = open_storage(url, create=True)
    optuna.create_study(study_name="rate", storage=storage, direction="maximize")
    storage.engine.dispose()
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, url, budget, sampler, barrier, results)) for r in range(workers)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=TIMEOUT_S) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    storage = open_storage(url, create=False)
    study = optuna.load_study(study_name="rate", storage=storage)
    finished = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                            optuna.trial.TrialState.PRUNED)))
    storage.engine.dispose()
    span = max(r.end for r in got.values()) - min(r.start for r in got.values())
    errors = [e for r in got.values() for e in r.errors]
    return Rate(backend, workers, finished, span, errors, sum(r.locked for r in got.values()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.storage_rate", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=8, help="worker processes per backend (default: 8)")
    p.add_argument("--trials", type=int, default=300, help="the study's trial budget per backend (default: 300)")
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated (default: sqlite,postgresql)")
    p.add_argument("--sampler", choices=("random", "tpe"), default="random",
                   help="random keeps the sampler's own CPU time out of the storage rate (default: random)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_optuna()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown:
        print(f"--backends: unknown {', '.join(sorted(unknown))} (allowed: sqlite, postgresql)", file=sys.stderr)
        return 2
    rates: list[Rate] = []
    with tempfile.TemporaryDirectory(prefix="storage-rate-") as tmp:
        if "sqlite" in backends:
            rates.append(measure("sqlite", f"sqlite:///{Path(tmp) / 'rate.db'}", args.workers, args.trials,
                                 args.sampler))
        if "postgresql" in backends:
            from tests.pg_server import PgServer, find_pg_bin, missing_reason

            reason = missing_reason()
            if reason is not None:
                print(f"postgresql: skipped: {reason}", file=sys.stderr)
            else:
                with PgServer(find_pg_bin(), fast=False) as server:
                    url = server.url(server.create_database("rate"))
                    rates.append(measure("postgresql", url, args.workers, args.trials, args.sampler))
    print(f"{args.workers} workers, no-train objective (4 params, 2 intermediate values), {args.sampler} sampler, "
          f"budget {args.trials} trials per backend")
    print(f"{'backend':<11} {'workers':>7} {'trials':>6} {'seconds':>8} {'trials/s':>9} {'errors':>6} "
          f"{'locked':>6}")
    for r in rates:
        print(f"{r.backend:<11} {r.workers:>7} {r.trials:>6} {r.seconds:>8.2f} {r.per_s:>9.1f} {len(r.errors):>6} "
              f"{r.locked:>6}")
    for r in rates:
        for e in sorted(set(r.errors)):
            print(f"{r.backend} error: {e}")
    by = {r.backend: r for r in rates}
    if len(by) == 2:
        print(f"ratio postgresql/sqlite trials/s: {by['postgresql'].per_s / by['sqlite'].per_s:.2f}")
    locked = sum(r.locked for r in rates)
    print(f'"{LOCKED}" errors: {locked}')
    return 1 if locked or any(r.errors for r in rates) else 0


if __name__ == "__main__":
    sys.exit(main())
