"""How long workers wait for SQLite's write lock: N `alexsearch worker` processes on one study, epochs that sleep.

    python -m bench.lock_wait [--workers 8] [--epoch-seconds 0.25] [--trials 48] [--epochs 4]

Each worker is a fresh process running the real `alexsearch worker` command (objective, checkpoints, heartbeat,
pruner, database writes) on the task of bench/sleep_task.py, whose epoch is one sleep of --epoch-seconds
instead of training. Under WAL, SQLite waits for the write lock in the statement that begins a write
transaction (BEGIN IMMEDIATE); a read transaction (plain BEGIN) never waits. Every worker times its BEGIN
statements with a SQLAlchemy listener, and the bench prints the time spent waiting in them as a share of the
workers' summed wall time (from the command's start to its end, so start-up counts too), the p50/p99 of one
wait, and how many write transactions each epoch cost. The workers all share the one machine, so the share
is measured against the same epochs in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def worker_main(spec: dict) -> int:
    """One worker process: run `alexsearch worker` with its BEGIN statements timed; write the figures to spec['out']."""
    import sqlalchemy

    import bench.sleep_task  # noqa: F401  registers task "sleep"
    from search.cli import main

    waits: list[float] = []  # seconds, each write transaction's BEGIN IMMEDIATE
    reads = [0]
    started: dict[int, float] = {}

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("BEGIN"):
            started[id(cursor)] = time.perf_counter()

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            waits.append(time.perf_counter() - started.pop(id(cursor)))
        elif statement.startswith("BEGIN"):
            reads[0] += 1

    start = time.perf_counter()
    code = main(
        [
            "worker",
            "--storage",
            spec["url"],
            "--study",
            "lock",
            "--task",
            "sleep",
            "--space",
            spec["space"],
            "--trials",
            str(spec["trials"]),
            "--epochs",
            str(spec["epochs"]),
            "--pruner",
            "none",
            "--patience",
            "0",
            "--device",
            "cpu",
            "--worker-index",
            str(spec["index"]),
            "--artifacts",
            spec["artifacts"],
            *spec["extra"],
        ]
    )
    seconds = time.perf_counter() - start
    Path(spec["out"]).write_text(json.dumps({"code": code, "seconds": seconds, "waits": waits, "reads": reads[0]}))
    return code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lock_wait", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--epoch-seconds", type=float, default=0.25)
    p.add_argument("--trials", type=int, default=48, help="finished trials of the study (default: 48)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--worker-args", default="", help="extra options for each alexsearch worker")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: run one worker from a JSON spec
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker_main(json.loads(args.worker))
    from bench.sleep_task import write_space

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory(prefix="lock-wait-") as tmp:
        space = write_space(Path(tmp) / "sleep.toml", args.epoch_seconds)
        url = f"sqlite:///{Path(tmp) / 'lock.db'}"
        # The tables and the study are made here, so the workers never race to create them.
        import optuna

        from storage.study import open_storage

        storage = open_storage(url, create=True)
        optuna.create_study(study_name="lock", storage=storage, direction="maximize")
        storage.engine.dispose()
        procs, outs = [], []
        for i in range(args.workers):
            out = Path(tmp) / f"w{i}.json"
            spec = dict(
                url=url,
                space=str(space),
                trials=args.trials,
                epochs=args.epochs,
                index=i,
                out=str(out),
                artifacts=str(Path(tmp) / "artifacts"),
                extra=args.worker_args.split(),
            )
            procs.append(
                subprocess.Popen(
                    [PY, "-m", "bench.lock_wait", "--worker", json.dumps(spec)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            outs.append(out)
        errors = [p.communicate()[1] for p in procs]
        results = []
        for p, out, err in zip(procs, outs, errors, strict=True):
            if p.returncode != 0 or not out.exists():
                print(f"a worker failed ({p.returncode}):\n{err[-2000:]}", file=sys.stderr)
                return 1
            results.append(json.loads(out.read_text()))
    waits = sorted(w for r in results for w in r["waits"])
    worker_s = sum(r["seconds"] for r in results)
    epochs = args.trials * args.epochs
    sleeping = epochs * args.epoch_seconds
    print(
        f"{args.workers} workers, {args.trials} trials x {args.epochs} epochs of {args.epoch_seconds} s (sleep), SQLite"
    )
    print(
        f"worker time {worker_s:.1f} s (of which epochs {sleeping:.1f} s); write-lock wait {sum(waits):.1f} s = "
        f"{100 * sum(waits) / worker_s:.1f}% of worker time"
    )
    if waits:
        p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))]
        print(
            f"one wait: p50 {1000 * statistics.median(waits):.1f} ms, p99 {1000 * p99:.1f} ms, "
            f"max {1000 * waits[-1]:.1f} ms"
        )
    print(
        f"write transactions {len(waits)} = {len(waits) / epochs:.2f} per epoch; read transactions "
        f"{sum(r['reads'] for r in results)} (take no lock)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
