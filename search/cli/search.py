"""`alexsearch search`: create or resume a study and run N workers on it until it reaches its budget."""

from __future__ import annotations

import argparse

from model.tasks import DataConfig, all_tasks, get_task
from search.cli.args import add_data_args, add_storage_args, non_negative_float, non_negative_int, positive_int
from search.settings import CHECKPOINT_EVERY_S, SearchConfig
from search.space.pruning import PRUNERS
from search.space.samplers import SAMPLERS
from search.space.space import Space, load_space
from search.trials.stepwise import STRATEGIES, apply_protocol
from search.workers.placement import cpu_cores, default_workers, threads_per_worker, visible_gpu_ids
from storage.study import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, MAX_RETRY
from storage.url import parse_url

HELP = "create or resume a study and run trials until it has --trials finished trials"


def add_search_args(p: argparse.ArgumentParser) -> None:
    """The options of a study and its workers, shared by `search` and `worker`."""
    add_storage_args(p)
    add_data_args(p)
    p.add_argument("--task", default="alexnet-cifar10", help="what to train (default: alexnet-cifar10)")
    p.add_argument("--space", default=None, help="search-space TOML file (default: the task's built-in space)")
    p.add_argument("--trials", type=positive_int, default=None,
                   help="finished trials the whole study aims at (default: 20; the grid size for --sampler grid)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per trial (default: 10)")
    p.add_argument("--strategy", choices=STRATEGIES, default="optuna",
                   help="optuna: the sampler and pruner choose; stepwise: the report's Table 1 protocol "
                        "(default: optuna)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe")
    p.add_argument("--pruner", choices=PRUNERS, default="median", help="default: median")
    p.add_argument("--patience", type=non_negative_int, default=3,
                   help="stop a trial after this many epochs without improvement; 0 = never (default: 3)")
    p.add_argument("--warmup-epochs", type=non_negative_int, default=1,
                   help="epochs before a trial may be pruned (default: 1)")
    p.add_argument("--startup-trials", type=non_negative_int, default=3,
                   help="completed trials before the median pruner prunes (default: 3)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds the sampler and training (default: 0)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                   help="auto: bf16 autocast on CUDA, fp32 elsewhere; bf16 also speeds up CPUs with bf16 units "
                        "(default: the space file's, else auto)")
    p.add_argument("--val-size", type=positive_int, default=None,
                   help="validation hold-out taken from the training data (default: the task's, 5000 for CIFAR-10)")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="use only this many training items, for quick runs (default: all that remain)")
    p.add_argument("--heartbeat-interval", type=positive_int, default=HEARTBEAT_INTERVAL_S,
                   help=f"seconds between a running trial's heartbeats (default: {HEARTBEAT_INTERVAL_S})")
    p.add_argument("--grace-period", type=positive_int, default=GRACE_PERIOD_S,
                   help=f"seconds without a heartbeat before a trial is declared dead, failed and retried "
                        f"(default: {GRACE_PERIOD_S})")
    p.add_argument("--max-retry", type=non_negative_int, default=MAX_RETRY,
                   help=f"retries of a dead trial, each resuming from its last checkpoint (default: {MAX_RETRY})")
    p.add_argument("--checkpoint-every", type=non_negative_float, default=CHECKPOINT_EVERY_S, metavar="SECONDS",
                   help=f"checkpoint a running trial at most this often, from a background thread, so a retry "
                        f"resumes there; every epoch when epochs are longer; 0 = every epoch "
                        f"(default: {CHECKPOINT_EVERY_S:g})")
    p.add_argument("--artifacts", default=None,
                   help="folder for checkpoints and artifacts (default: next to the SQLite file, "
                        "DB-artifacts/; ./alexsearch-artifacts for a server database)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help=HELP, description=HELP)
    add_search_args(p)
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes on this machine (default: one per visible GPU, times --workers-per-gpu; "
                        "1 on a CPU-only machine)")
    p.add_argument("--workers-per-gpu", type=positive_int, default=1,
                   help="workers sharing each GPU (default: 1)")
    p.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> tuple[SearchConfig, Space]:
    """Validate every input; nothing touches the database until this returns."""
    from model.device import resolve_device  # torch: imported by the commands that train, when they run
    parse_url(args.storage)
    if args.task not in all_tasks():
        raise ValueError(f"--task: unknown task {args.task!r} (allowed: {', '.join(sorted(all_tasks()))})")
    space = load_space(args.space, args.task)
    task = get_task(args.task)
    if args.sampler == "grid":
        space.grid()  # fails now, naming the range parameter, if the space is not categorical
    trials = args.trials or (space.grid_size() if args.sampler == "grid" else 20)
    data = DataConfig(root=args.data, download=args.download, val_size=args.val_size or task.default_val_size,
                      train_size=args.train_size)
    settings = SearchConfig(study=args.study or args.task, storage=args.storage, task=args.task, space=args.space,
                            trials=trials, epochs=args.epochs, strategy=args.strategy, sampler=args.sampler,
                            pruner=args.pruner, patience=args.patience, warmup_epochs=args.warmup_epochs,
                            startup_trials=args.startup_trials, seed=args.seed, device=args.device, data=data,
                            precision=args.precision,
                            heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
                            max_retry=args.max_retry, artifacts=args.artifacts,
                            checkpoint_every=args.checkpoint_every)
    resolve_device(settings.device)  # fails here, before the database is touched
    return apply_protocol(settings, space, args.trials), space  # stepwise: no pruning, 7 trials by default


def run(args: argparse.Namespace) -> int:
    from model.device import resolve_device
    from search.workers.launchers.local import launch
    from search.workers.run import WorkerPlace, run_worker

    settings, space = settings_from_args(args)
    device = resolve_device(settings.device)
    gpu_ids = visible_gpu_ids() if device.type == "cuda" else []
    if device.index is not None:  # --device cuda:K: every worker on that one GPU
        gpu_ids = [gpu_ids[device.index]]
    workers = args.workers or default_workers(len(gpu_ids), args.workers_per_gpu)
    if workers == 1:
        return run_worker(settings, WorkerPlace(index=0))
    space.task.load_search_data(settings.data)  # a missing or bad data folder fails here, once, in one line
    if gpu_ids:
        settings = settings.replace(device="cuda")  # each worker sees only its own GPU, as cuda:0
    threads = None if gpu_ids else threads_per_worker(workers, cpu_cores())
    return launch(settings, workers, gpu_ids, threads)
