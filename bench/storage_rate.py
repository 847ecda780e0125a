"""Trials per second of a no-train objective with N worker processes, on SQLite and on PostgreSQL, in one run.

    python -m bench.storage_rate [--workers 8] [--trials 300] [--rounds 2] [--backends sqlite,postgresql]

What a trial costs the storage here is what it costs in a real search, minus the training: each worker is a
spawned process that opens its own storage with storage.study.open_storage(create=True) and the default
heartbeat, and runs search.workers.loop.run_trials (which counts the study's finished trials before each trial);
the objective samples the task's four parameters, reports two intermediate values and returns a float.
The same N processes measure every backend, in alternating rounds (sqlite, postgresql, sqlite, ...) on a
fresh study each time, so a machine whose load drifts does not favour one backend. In a round the workers
start together at a barrier; its rate is the study's finished trials over the span from that start to the
last worker's end. PostgreSQL is a temporary server (tests/pg_server.py) with its durable defaults (fsync
on), as SQLite keeps its own (WAL, synchronous FULL). Every error a worker meets is counted, and "database
is locked" errors separately: there must be none.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
import torch

from search.space.space import load_space
from search.workers.loop import run_trials
from storage.study import Heartbeat, open_storage, quiet_optuna

TIMEOUT_S = 600
TASK = "alexnet-cifar10"
STUDY = "rate"
LOCKED = "database is locked"
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Job:
    url: str
    budget: int
    sampler: str


@dataclass
class WorkerResult:
    trials: int  # trials this worker ran
    start: float  # time.time() at the barrier release
    end: float
    errors: list[str]  # first line of each error this worker met
    locked: int  # "database is locked" errors the driver raised, including any Optuna caught itself


def run_job(rank: int, job: Job, barrier) -> WorkerResult:
    space = load_space(None, TASK)
    storage = open_storage(job.url, create=True, heartbeat=Heartbeat())
    locked = [0]

    @sqlalchemy.event.listens_for(storage.engine, "handle_error")
    def count_locked(context) -> None:
        if LOCKED in str(context.original_exception):
            locked[0] += 1

    make_sampler = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}[job.sampler]
    study = optuna.load_study(study_name=STUDY, storage=storage, sampler=make_sampler(seed=rank))
    rng = random.Random(rank)

    def objective(trial: optuna.Trial) -> float:
        space.sample(trial)
        trial.report(rng.random(), 1)
        value = rng.random()
        trial.report(value, 2)
        return value

    barrier.wait(timeout=TIMEOUT_S)
    errors: list[str] = []
    start, ran = time.time(), 0
    while len(errors) <= 20:
        try:
            ran += run_trials(study, objective, job.budget, space)
            break
        except Exception as e:  # count it and go on: the rate must include what errors cost
            errors.append(f"{type(e).__name__}: {str(e.__cause__ or e).strip().splitlines()[0][:200]}")
    end = time.time()
    storage.engine.dispose()
    return WorkerResult(ran, start, end, errors, locked[0])


def worker(rank: int, jobs, barrier, results) -> None:
    """Run each job the parent sends, until it sends None."""
    torch.set_num_threads(1)
    quiet_optuna()
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's notices
    while (job := jobs.get()) is not None:
        try:
            result = run_job(rank, job, barrier)
        except Exception as e:  # e.g. the storage did not open: release the others from the barrier
            barrier.abort()
            result = WorkerResult(0, 0.0, 0.0, [f"{type(e).__name__}: {str(e).strip()[:300]}"], 0)
        results.put((rank, result))


@dataclass
class Rate:
    backend: str
    trials: int  # finished trials in the study
    seconds: float
    errors: list[str]
    locked: int

    @property
    def per_s(self) -> float:
        return self.trials / self.seconds


def finished_trials(url: str) -> int:
    storage = open_storage(url, create=False)
    try:
        study = optuna.load_study(study_name=STUDY, storage=storage)
        return len(
            study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
        )
    finally:
        storage.engine.dispose()


def measure(backend: str, url: str, workers: int, job_args: dict, jobs, results) -> Rate:
    # The study is created here, so the workers never race to create it.
    storage = open_storage(url, create=True)
    optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    storage.engine.dispose()
    for _ in range(workers):
        jobs.put(Job(url, **job_args))  # a worker blocks at the barrier after one job, so each takes one
    got = dict(results.get(timeout=TIMEOUT_S) for _ in range(workers))
    if any(r.start == 0.0 for r in got.values()):
        raise RuntimeError(f"{backend}: a worker failed: {[e for r in got.values() for e in r.errors][:3]}")
    span = max(r.end for r in got.values()) - min(r.start for r in got.values())
    return Rate(
        backend,
        finished_trials(url),
        span,
        [e for r in got.values() for e in r.errors],
        sum(r.locked for r in got.values()),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.storage_rate", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=8, help="worker processes (default: 8)")
    p.add_argument("--trials", type=int, default=300, help="the trial budget of each study (default: 300)")
    p.add_argument("--rounds", type=int, default=2, help="studies per backend, alternating (default: 2)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: sqlite,postgresql)")
    p.add_argument(
        "--sampler",
        choices=("random", "tpe"),
        default="random",
        help="random keeps the sampler's own CPU time out of the storage rate (default: random)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        print(f"--backends: unknown {', '.join(sorted(unknown))} (allowed: {', '.join(BACKENDS)})", file=sys.stderr)
        return 2
    quiet_optuna()
    rates: list[Rate] = []
    ctx = mp.get_context("spawn")
    jobs, results, barrier = ctx.Queue(), ctx.Queue(), ctx.Barrier(args.workers)
    procs = [ctx.Process(target=worker, args=(r, jobs, barrier, results)) for r in range(args.workers)]
    with tempfile.TemporaryDirectory(prefix="storage-rate-") as tmp, contextlib.ExitStack() as stack:
        server = None
        if "postgresql" in backends:
            from tests.pg_server import PgServer, find_pg_bin, missing_reason

            reason = missing_reason()
            if reason is not None:
                print(f"postgresql: skipped: {reason}", file=sys.stderr)
                backends.remove("postgresql")
            else:
                bin_dir = find_pg_bin()
                assert bin_dir is not None  # missing_reason() looked for it
                server = stack.enter_context(PgServer(bin_dir, fast=False))
        for p in procs:
            p.start()
        try:
            for round_ in range(args.rounds):
                for backend in backends:
                    if backend == "sqlite":
                        url = f"sqlite:///{Path(tmp) / f'rate-{round_}.db'}"
                    else:
                        assert server is not None  # postgresql stays in backends only when its server started
                        url = server.url(server.create_database("rate"))
                    rates.append(
                        measure(
                            backend, url, args.workers, dict(budget=args.trials, sampler=args.sampler), jobs, results
                        )
                    )
                    print(f"round {round_ + 1} {backend}: {rates[-1].per_s:.1f} trials/s", file=sys.stderr)
        finally:
            for _ in procs:
                jobs.put(None)
            for p in procs:
                p.join(timeout=60)
    report(args, backends, rates)
    return 1 if any(r.locked or r.errors for r in rates) else 0


def report(args: argparse.Namespace, backends: list[str], rates: list[Rate]) -> None:
    print(
        f"{args.workers} worker processes, no-train objective (4 params, 2 intermediate values), {args.sampler} "
        f"sampler, {args.rounds} round(s) of a {args.trials}-trial study per backend"
    )
    print(f"{'backend':<11} {'trials/s':>9}  {'per round':<24} {'trials':>6} {'errors':>6} {'locked':>6}")
    median = {}
    for backend in backends:
        mine = [r for r in rates if r.backend == backend]
        median[backend] = statistics.median(r.per_s for r in mine)
        rounds = ", ".join(f"{r.per_s:.1f}" for r in mine)
        print(
            f"{backend:<11} {median[backend]:>9.1f}  {rounds:<24} {sum(r.trials for r in mine):>6} "
            f"{sum(len(r.errors) for r in mine):>6} {sum(r.locked for r in mine):>6}"
        )
    for r in rates:
        for e in sorted(set(r.errors)):
            print(f"{r.backend} error: {e}")
    if len(median) == 2:
        print(f"ratio postgresql/sqlite (median trials/s): {median['postgresql'] / median['sqlite']:.2f}")
    print(f'"{LOCKED}" errors: {sum(r.locked for r in rates)}')


if __name__ == "__main__":
    sys.exit(main())
