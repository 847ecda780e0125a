"""alexsearch against a plain Optuna script (bench/plain_optuna.py) on identical studies, side by side in one run.

    python -m bench.overhead                                  # mlp-synth, 20 trials x 5 epochs
    python -m bench.overhead --task alexnet-cifar10 --data DATA --train-size 500 --val-size 200 --trials 4 --epochs 2
    python -m bench.overhead --trials 6 --epochs 2 --train-size 5000 --rounds 1   # smaller, for a quick look

Each round runs the commands as fresh processes on fresh SQLite files, in an order that turns round by round, so
load that drifts during the run falls on all: the ratio of two wall times in one round survives a busy machine
much better than either time alone. alexsearch runs twice: as a user starts it, and with --no-estimate, which
skips the cost estimate printed before a search (a few timed training steps per batch size of the space: a
fixed start-up cost, ~10 s for AlexNet on a 2-core CPU, ~1 s on a GPU), so the second ratio is the service's
cost that grows with the search. Wall time is the whole command, interpreter start and imports included, as a
user sees it. alexsearch ends with os._exit once its cleanup is done (search/process_exit.py), skipping the
interpreter's teardown (~0.8 s with torch loaded); the plain script runs a second time with --exit-now, doing the
same, so that the last two ratios leave that gain out. Both use the same torch threads (--threads, set through
OMP_NUM_THREADS) and the CPU. After the runs the studies of the first round are compared trial by trial (params,
state, intermediate values, value): the ratios mean something only if they are the same study.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

PY = sys.executable


ALEX, NO_ESTIMATE, PLAIN_EXIT_NOW = "alexsearch", "alexsearch --no-estimate", "plain --exit-now"
DB = {  # one study file each
    "plain": "plain.db",
    PLAIN_EXIT_NOW: "plain-exit-now.db",
    ALEX: "alexsearch.db",
    NO_ESTIMATE: "alexsearch-no-estimate.db",
}


def commands(args: argparse.Namespace, folder: Path) -> dict[str, list[str]]:
    common = ["--task", args.task, "--trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    if args.train_size:
        common += ["--train-size", str(args.train_size)]
    if args.val_size:
        common += ["--val-size", str(args.val_size)]
    common += ["--data", args.data]

    def storage(name: str) -> list[str]:
        return ["--storage", f"sqlite:///{folder / DB[name]}", "--study", "s"]

    def alexsearch(name: str, *extra: str) -> list[str]:
        search = [PY, "-m", "search.cli", "search", *storage(name), "--device", "cpu", "--workers", "1"]
        return [*search, *common, *args.alexsearch_args.split(), *extra]

    return {
        "plain": [PY, "-m", "bench.plain_optuna", *storage("plain"), *common],
        PLAIN_EXIT_NOW: [PY, "-m", "bench.plain_optuna", *storage(PLAIN_EXIT_NOW), *common, "--exit-now"],
        ALEX: alexsearch(ALEX),
        NO_ESTIMATE: alexsearch(NO_ESTIMATE, "--no-estimate"),
    }


def run_timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def study_difference(a_url: str, b_url: str) -> str | None:
    """None when the two studies hold the same trials; else the first difference."""
    a = optuna.load_study(study_name="s", storage=a_url).get_trials(deepcopy=False)
    b = optuna.load_study(study_name="s", storage=b_url).get_trials(deepcopy=False)
    if len(a) != len(b):
        return f"{len(a)} trials vs {len(b)}"
    for x, y in zip(a, b, strict=True):
        for what in ("params", "state", "intermediate_values", "value"):
            if getattr(x, what) != getattr(y, what):
                return f"trial {x.number} {what}: {getattr(x, what)} vs {getattr(y, what)}"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mlp-synth")
    p.add_argument("--data", default="data", help="folder holding cifar-10-batches-py/ (alexnet-cifar10 only)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3, help="side-by-side rounds (default: 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads of both (default: 1)")
    p.add_argument(
        "--alexsearch-args", default="", help="extra options for alexsearch search, e.g. '--checkpoint-every 0'"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    names = ["plain", PLAIN_EXIT_NOW, ALEX, NO_ESTIMATE]
    times: dict[str, list[float]] = {name: [] for name in names}
    difference = None
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        for r in range(args.rounds):
            folder = Path(tmp) / f"round-{r}"
            folder.mkdir()
            cmds = commands(args, folder)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(run_timed(cmds[name], env))
            print(
                f"round {r + 1}: "
                + ", ".join(f"{name} {times[name][-1]:.1f} s" for name in names)
                + f"; ratios {times[ALEX][-1] / times['plain'][-1]:.3f}, "
                f"{times[NO_ESTIMATE][-1] / times['plain'][-1]:.3f}",
                file=sys.stderr,
                flush=True,
            )
            if r == 0:
                url = {name: f"sqlite:///{folder / db}" for name, db in DB.items()}
                difference = next(filter(None, (study_difference(url["plain"], url[name]) for name in names[1:])), None)
    size = f"{args.train_size or 'all'}/{args.val_size or 'default'} items"
    print(
        f"{args.task}, {args.trials} trials x {args.epochs} epochs, {size}, {args.threads} thread(s), "
        f"{args.rounds} round(s)"
    )
    for name in names:
        print(f"{name + ' s:':32} {', '.join(f'{t:.1f}' for t in times[name])}")
    for name, base in ((ALEX, "plain"), (NO_ESTIMATE, "plain"), (ALEX, PLAIN_EXIT_NOW), (NO_ESTIMATE, PLAIN_EXIT_NOW)):
        ratios = [a / p for a, p in zip(times[name], times[base], strict=True)]
        print(
            f"ratio {name}/{base} per round: {', '.join(f'{x:.3f}' for x in ratios)}; "
            f"median {statistics.median(ratios):.3f}"
        )
    print(
        "studies match (params, states, intermediate values, values)"
        if difference is None
        else f"STUDIES DIFFER: {difference}"
    )
    return 0 if difference is None else 1


if __name__ == "__main__":
    sys.exit(main())
