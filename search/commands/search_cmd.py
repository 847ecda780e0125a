"""`alexsearch search`: create or resume a study and run trials until it reaches its budget."""

from __future__ import annotations

import argparse
import sys

import optuna
import torch
from tqdm import tqdm

from model.device import device_name, resolve_device
from model.tasks import DataConfig, all_tasks, get_task
from search.commands.common import add_data_args, add_storage_args, non_negative_int, positive_int
from search.objective import Objective
from search.pruning import PRUNERS, make_pruner
from search.samplers import SAMPLERS, make_sampler
from search.settings import SearchConfig
from search.space import Space, load_space
from search.stepwise import STRATEGIES, make_strategy
from search.worker import finished_count, run_trials
from storage.study import Heartbeat, open_storage, quiet_optuna
from storage.url import parse_url, redact

NAME = "search"
ORDER = 1
HELP = "create or resume a study and run trials until it has --trials finished trials"


def add_search_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--val-size", type=positive_int, default=None,
                   help="validation hold-out taken from the training images (default: 5000)")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="use only this many training images, for quick runs (default: all that remain)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP)
    add_search_args(p)
    p.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> tuple[SearchConfig, Space]:
    """Validate every input; nothing touches the database until this returns."""
    if args.task not in all_tasks():
        raise ValueError(f"--task: unknown task {args.task!r} (allowed: {', '.join(sorted(all_tasks()))})")
    parse_url(args.storage)
    space = load_space(args.space, args.task)
    task = get_task(args.task)
    if args.sampler == "grid":
        space.grid()  # fails now, naming the range parameter, if the space is not categorical
    trials = args.trials or (space.grid_size() if args.sampler == "grid" else 20)
    data = DataConfig(root=args.data, download=args.download, val_size=args.val_size or task.default_val_size,
                      train_size=args.train_size)
    settings = SearchConfig(study=args.study or args.task, storage=args.storage, task=args.task, space=args.space,
                            trials=trials, epochs=args.epochs, strategy=args.strategy, sampler=args.sampler,
                            pruner=args.pruner,
                            patience=args.patience, warmup_epochs=args.warmup_epochs,
                            startup_trials=args.startup_trials, seed=args.seed, device=args.device, data=data)
    return settings, space


def create_study(settings: SearchConfig, space: Space, sampler_seed: int,
                 heartbeat: Heartbeat | None = None) -> optuna.Study:
    storage = open_storage(settings.storage, create=True, heartbeat=heartbeat)
    study = optuna.create_study(
        study_name=settings.study, storage=storage, direction="maximize", load_if_exists=True,
        sampler=make_sampler(settings.sampler, space, sampler_seed),
        pruner=make_pruner(settings.pruner, settings.epochs, settings.startup_trials, settings.warmup_epochs),
    )
    if "search_config" not in study.user_attrs:
        study.set_user_attr("search_config", settings.replace(storage=redact(settings.storage)).to_dict())
        study.set_user_attr("space", space.to_dict())
    return study


def run(args: argparse.Namespace) -> int:
    settings, space = settings_from_args(args)
    device = resolve_device(settings.device)
    data = space.task.load_search_data(settings.data)  # fails with a clear message before the study exists
    quiet_optuna()
    study = create_study(settings, space, settings.seed)
    done = finished_count(study)
    if done >= settings.trials:
        print(f"study {settings.study!r} already has {done} finished trials (budget {settings.trials}); nothing to do")
        return 0
    print(f"study {settings.study!r} in {redact(settings.storage)}: {done}/{settings.trials} trials finished; "
          f"{len(data.train)} train / {len(data.eval)} val images on {device_name(device)} "
          f"({torch.get_num_threads()} threads)", file=sys.stderr)
    bar = tqdm(total=settings.trials, initial=done, desc="trials", unit="trial", dynamic_ncols=True, file=sys.stderr)

    def progress(n: int) -> None:
        bar.update(n - bar.n)

    objective = Objective(space, settings, data, device, log=bar.write)
    try:
        run_trials(study, objective, settings.trials, space, progress, make_strategy(settings, space))
    finally:
        bar.close()
    print_best(study)
    return 0


def print_best(study: optuna.Study) -> None:
    try:
        best = study.best_trial
    except ValueError:
        print("no trial has completed yet")
        return
    print(f"best trial {best.number}: val_acc {best.value:.4f} at epoch {best.user_attrs.get('best_epoch')} "
          f"with {best.params}")
