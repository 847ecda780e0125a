"""`alexsearch search`: create or resume a study and run N workers on it until it reaches its budget."""

from __future__ import annotations

import argparse

from model.task_catalog import task_summaries
from search.cli.args import DEFAULTS as D
from search.cli.args import (
    add_data_args,
    add_storage_args,
    duration_s,
    literal_choices,
    non_negative_float,
    non_negative_int,
    positive_int,
    seed_int,
)
from search.errors import UsageError
from search.settings import CHECKPOINT_EVERY_S, SearchConfig
from search.workers.launchers.sbatch import SlurmConfig
from search.workers.placement import measured_workers

HELP = "create or resume a study and run trials until it has --trials finished trials"
SAMPLER_HELP = {
    "tpe": "Bayesian (TPE): a third of --trials at random, then configs like the best so far",
    "grid": "every combination of a space whose parameters are all choices, once each (sets --trials)",
    "random": "independent random draws: the baseline any smarter sampler must beat",
}
PRUNER_HELP = {
    "median": "stop a trial whose val_acc at an epoch is below the median of earlier trials at that epoch",
    "hyperband": "successive halving: many trials get few epochs, the best third go on",
    "none": "every trial runs all its epochs (--patience may still end it)",
}
STRATEGY_HELP = {
    "optuna": "the sampler and pruner choose the trials",
    "stepwise": "the report's Table 1 protocol: one parameter at a time, each trial trained in full",
}


def _block(title: str, items: dict[str, str], default: str | None = None) -> str:
    width = max(map(len, items))
    return (
        title
        + "\n"
        + "\n".join(f"  {k.ljust(width)}  {v}{' (default)' if k == default else ''}" for k, v in items.items())
    )


CHOICES_HELP = "\n".join(
    [
        _block("tasks (--task):", task_summaries(), D.task),
        _block("samplers (--sampler):", SAMPLER_HELP, D.sampler),
        _block("pruners (--pruner):", PRUNER_HELP, D.pruner),
        _block("strategies (--strategy):", STRATEGY_HELP, D.strategy),
    ]
)


def add_search_args(p: argparse.ArgumentParser) -> None:
    """The options of a study and its workers, shared by `search` and `worker`."""
    add_storage_args(p)
    add_data_args(p)
    p.add_argument("--task", default=D.task, help=f"what to train (see below; default: {D.task})")
    p.add_argument("--space", default=None, help="search-space TOML file (default: the task's built-in space)")
    p.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        help=f"finished trials the whole study aims at (default: {D.trials}; the grid size for --sampler grid)",
    )
    p.add_argument("--epochs", type=positive_int, default=D.epochs, help=f"epochs per trial (default: {D.epochs})")
    p.add_argument(
        "--strategy",
        choices=literal_choices(SearchConfig, "strategy"),
        default=D.strategy,
        help=f"see below (default: {D.strategy})",
    )
    p.add_argument(
        "--sampler",
        choices=literal_choices(SearchConfig, "sampler"),
        default=D.sampler,
        help=f"see below (default: {D.sampler})",
    )
    p.add_argument(
        "--pruner",
        choices=literal_choices(SearchConfig, "pruner"),
        default=D.pruner,
        help=f"see below; it never prunes at a trial's last epoch (default: {D.pruner})",
    )
    p.add_argument(
        "--patience",
        type=non_negative_int,
        default=D.patience,
        help=f"stop a trial after this many epochs without improvement; 0 = never (default: {D.patience})",
    )
    p.add_argument(
        "--warmup-epochs",
        type=non_negative_int,
        default=D.warmup_epochs,
        help=f"epochs before a trial may be pruned (default: {D.warmup_epochs})",
    )
    p.add_argument(
        "--startup-trials",
        type=non_negative_int,
        default=D.startup_trials,
        help=f"completed trials before the median pruner prunes (default: {D.startup_trials})",
    )
    p.add_argument(
        "--tpe-startup-trials",
        type=non_negative_int,
        default=None,
        help="random trials before TPE models the results (default: a third of --trials, at least 3)",
    )
    p.add_argument("--seed", type=seed_int, default=D.seed, help=f"seeds the sampler and training (default: {D.seed})")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="auto: bf16 autocast on CUDA, fp32 elsewhere; bf16 also speeds up CPUs with bf16 units "
        "(default: the space file's, else auto)",
    )
    p.add_argument(
        "--val-size",
        type=positive_int,
        default=None,
        help="validation hold-out taken from the training data (default: the task's, 5000 for CIFAR-10)",
    )
    p.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help="use only this many training items, for quick runs (default: all that remain)",
    )
    p.add_argument(
        "--timeout",
        type=duration_s,
        default=None,
        metavar="DURATION",
        help="start no new trial after this long, e.g. 90s, 30m, 2h; running trials finish (default: no limit)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=positive_int,
        default=D.heartbeat_interval,
        help=f"seconds between a running trial's heartbeats (default: {D.heartbeat_interval})",
    )
    p.add_argument(
        "--grace-period",
        type=positive_int,
        default=D.grace_period,
        help=f"seconds without a heartbeat before a trial is declared dead, failed and retried "
        f"(default: {D.grace_period})",
    )
    p.add_argument(
        "--max-retry",
        type=non_negative_int,
        default=D.max_retry,
        help=f"retries of a dead trial, each resuming from its last checkpoint (default: {D.max_retry})",
    )
    p.add_argument(
        "--checkpoint-every",
        type=non_negative_float,
        default=CHECKPOINT_EVERY_S,
        metavar="SECONDS",
        help=f"checkpoint a running trial at most this often, from a background thread, so a retry "
        f"resumes there; every epoch when epochs are longer; 0 = every epoch "
        f"(default: {CHECKPOINT_EVERY_S:g})",
    )
    p.add_argument(
        "--db-outage-timeout",
        type=non_negative_int,
        default=D.db_outage_timeout,
        help=f"seconds a worker waits, retrying, for a database server it cannot reach before it "
        f"stops; 0 = stop at once (default: {D.db_outage_timeout})",
    )
    p.add_argument(
        "--artifacts",
        default=None,
        help="folder for checkpoints and artifacts (default: next to the SQLite file, "
        "DB-artifacts/; ./alexsearch-artifacts for a server database)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help=HELP, description=HELP, epilog=CHOICES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_search_args(p)
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes on this machine (default: one per visible GPU, times --workers-per-gpu; "
        "1 on a CPU-only machine)",
    )
    measured = measured_workers()
    p.add_argument(
        "--workers-per-gpu",
        type=positive_int,
        default=measured.workers_per_gpu,
        help=f"workers sharing each GPU (default: {measured.describe()}; "
        f"search/workers/workers_per_gpu.json, written by make gpu-check); with --launcher slurm, "
        "workers in each array task per GPU it asks for",
    )
    p.add_argument(
        "--no-estimate",
        action="store_true",
        help="skip the cost estimate (a few timed training steps) before the search starts",
    )
    p.add_argument(
        "--estimate-only", action="store_true", help="print the cost estimate and exit, without touching the study"
    )
    add_launcher_args(p)
    p.set_defaults(run=run)


def add_launcher_args(p: argparse.ArgumentParser) -> None:
    """Where the workers run: here (local), or as a Slurm job array of --workers tasks (docs/slurm.md)."""
    d = SlurmConfig()
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: worker processes on this machine; slurm: a Slurm job array of --workers tasks, "
        "submitted with sbatch and watched from here (default: local)",
    )
    p.add_argument(
        "--detach",
        action="store_true",
        help="slurm: return once the array is submitted; run the same command again to watch it",
    )
    g = p.add_argument_group("Slurm (with --launcher slurm; each option asks for one array task)")
    g.add_argument(
        "--slurm-partition", metavar="NAME", default=d.partition, help="default: the cluster's default partition"
    )
    g.add_argument(
        "--slurm-time",
        metavar="TIME",
        default=d.time,
        help="time limit per task, e.g. 4:00:00; the task requeues itself just before it (default: the partition's)",
    )
    g.add_argument(
        "--slurm-gpus-per-worker",
        metavar="N",
        type=non_negative_int,
        default=d.gpus_per_worker,
        help=f"GPUs per array task; 0 = CPU only (default: {d.gpus_per_worker})",
    )
    g.add_argument(
        "--slurm-cpus-per-worker",
        metavar="N",
        type=positive_int,
        default=d.cpus_per_worker,
        help=f"CPU cores per array task (default: {d.cpus_per_worker})",
    )
    g.add_argument(
        "--slurm-mem", metavar="SIZE", default=d.mem, help="memory per array task, e.g. 16G (default: the partition's)"
    )
    g.add_argument("--slurm-account", metavar="NAME", default=d.account, help="account to charge (default: yours)")
    g.add_argument(
        "--slurm-arg",
        action="append",
        default=list(d.sbatch_args),
        metavar="OPTION",
        help="another sbatch option, copied into the script as an #SBATCH line, e.g. "
        "--slurm-arg=--qos=high (repeatable)",
    )


def slurm_from_args(args: argparse.Namespace) -> SlurmConfig:
    return SlurmConfig(
        partition=args.slurm_partition,
        time=args.slurm_time,
        gpus_per_worker=args.slurm_gpus_per_worker,
        cpus_per_worker=args.slurm_cpus_per_worker,
        mem=args.slurm_mem,
        account=args.slurm_account,
        sbatch_args=tuple(args.slurm_arg),
    )


def check_launcher_args(args: argparse.Namespace) -> None:
    """Slurm options without --launcher slurm are a mistake, not something to ignore."""
    if args.launcher == "slurm":
        return
    given = [
        name
        for name in ("slurm_partition", "slurm_time", "slurm_mem", "slurm_account")
        if getattr(args, name) is not None
    ]
    given += [
        name
        for name, default in (
            ("slurm_gpus_per_worker", SlurmConfig().gpus_per_worker),
            ("slurm_cpus_per_worker", SlurmConfig().cpus_per_worker),
        )
        if getattr(args, name) != default
    ]
    given += ["slurm_arg"] if args.slurm_arg else []
    given += ["detach"] if args.detach else []
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')}: only with --launcher slurm")


def settings_from_args(args: argparse.Namespace, check_device: bool = True):  # -> tuple[SearchConfig, Space]
    """Validate every input; nothing touches the database until this returns. check_device=False when the
    workers run elsewhere (a Slurm array): this machine need not have the device."""
    from model.device import resolve_device
    from model.tasks import DataConfig, all_tasks, get_task
    from search.space.space import load_space
    from search.trials.stepwise import apply_protocol
    from storage.url import parse_url

    parse_url(args.storage)
    if args.task not in all_tasks():
        raise UsageError(f"--task: unknown task {args.task!r} (allowed: {', '.join(sorted(all_tasks()))})")
    space = load_space(args.space, args.task)
    task = get_task(args.task)
    if args.sampler == "grid":
        space.grid()  # fails now, naming the range parameter, if the space is not categorical
    trials = args.trials or (space.grid_size() if args.sampler == "grid" else D.trials)
    data = DataConfig(
        root=args.data,
        download=args.download,
        val_size=args.val_size or task.default_val_size,
        train_size=args.train_size,
    )
    study = args.task if args.study is None else args.study  # --study '' is refused, not taken as the default
    settings = SearchConfig(
        study=study,
        storage=args.storage,
        task=args.task,
        space=args.space,
        trials=trials,
        epochs=args.epochs,
        strategy=args.strategy,
        sampler=args.sampler,
        pruner=args.pruner,
        patience=args.patience,
        warmup_epochs=args.warmup_epochs,
        startup_trials=args.startup_trials,
        tpe_startup_trials=args.tpe_startup_trials,
        seed=args.seed,
        device=args.device,
        data=data,
        precision=args.precision,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        max_retry=args.max_retry,
        db_outage_timeout=args.db_outage_timeout,
        artifacts=args.artifacts,
        checkpoint_every=args.checkpoint_every,
    )
    if check_device:  # a Slurm array's workers run elsewhere: their node checks its device
        device = resolve_device(settings.device)  # fails here, before the database is touched
        space.check_models(device)  # a model too big for the device fails here, not in every trial
    return apply_protocol(settings, space, args.trials), space  # stepwise: no pruning, 7 trials by default


def run(args: argparse.Namespace) -> int:
    from model.device import resolve_device
    from search.cli import STARTED
    from search.study.stop import clear_stopped_study, existing_study
    from search.workers.cost import estimate_cost
    from search.workers.launchers.local import LocalLauncher
    from search.workers.launchers.slurm import SlurmLauncher
    from search.workers.placement import cpu_cores, default_workers, threads_per_worker, visible_gpu_ids
    from search.workers.run import WorkerPlace, run_worker

    check_launcher_args(args)
    deadline = STARTED + args.timeout if args.timeout else None
    if args.launcher == "slurm":
        if args.timeout:
            raise UsageError("--timeout: not with --launcher slurm yet (use --slurm-time per task)")
        settings, space = settings_from_args(args, check_device=False)
        clear_stopped_study(settings.storage, settings.study)
        launcher = SlurmLauncher(space, slurm_from_args(args), args.workers_per_gpu, detach=args.detach)
        return launcher.launch(settings, args.workers or 1)
    settings, space = settings_from_args(args)
    device = resolve_device(settings.device)
    gpu_ids = visible_gpu_ids() if device.type == "cuda" else []
    if device.index is not None:  # --device cuda:K: every worker on that one GPU
        gpu_ids = [gpu_ids[device.index]]
    workers = args.workers or default_workers(len(gpu_ids), args.workers_per_gpu)
    threads = None if gpu_ids else threads_per_worker(workers, cpu_cores())
    data = space.task.load_search_data(settings.data)  # a missing or bad data folder fails here, once, in one line
    if args.estimate_only or not args.no_estimate:
        study = existing_study(settings.storage, settings.study)
        estimate = estimate_cost(
            settings, space, data, device, workers, len(gpu_ids), threads, study, always_time=args.estimate_only
        )
        for line in estimate.lines():
            print(line, flush=True)
    if args.estimate_only:
        return 0
    cleared = clear_stopped_study(settings.storage, settings.study)
    if cleared is not None:
        print(f"cleared the stop request ({cleared.get('at', '?')}) of study {settings.study!r}; resuming", flush=True)
    if workers == 1:
        return run_worker(settings, WorkerPlace(index=0, deadline=deadline, debug=args.debug))
    if gpu_ids:
        settings = settings.replace(device="cuda")  # each worker sees only its own GPU, as cuda:0
    return LocalLauncher(gpu_ids, threads, deadline=deadline, debug=args.debug).launch(settings, workers)
