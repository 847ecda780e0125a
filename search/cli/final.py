"""`alexsearch final`: retrain an exported config on all training images and test it once per seed."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from search.cli.args import STORAGE_HELP, positive_int, seed_int, storage_url, study_name

HELP = "retrain an exported config on all training images and evaluate the test set once per seed"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("final", help=HELP, description=HELP)
    p.add_argument("--config", required=True, help="a file written by `alexsearch export` (e.g. best.json)")
    p.add_argument(
        "--data", default=None, help="folder holding cifar-10-batches-py/ (default: the data root stored in the config)"
    )
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into --data when it is missing")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="train this many times, with seeds = the config's seed, +1, +2, ... (default: 3)",
    )
    p.add_argument("--seed", type=seed_int, default=None, help="first seed (default: the seed stored in the config)")
    p.add_argument("--out", default="final", help="folder for metrics.json, weights and plots (default: ./final)")
    p.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help="train on only this many images, a seeded stratified subset, for quick runs "
        "(default: all training images)",
    )
    p.add_argument(
        "--storage",
        type=storage_url,
        default=None,
        help="record the result on the study in this storage (default: the storage in the config's "
        f"provenance; needed when its URL had a password){STORAGE_HELP}",
    )
    p.add_argument(
        "--study", type=study_name, default=None, help="record the result on this study (default: the config's study)"
    )
    p.add_argument(
        "--artifacts",
        default=None,
        help="artifact folder for a server database (default: next to a SQLite file, else ./alexsearch-artifacts)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from model.config import MAX_SEED, ConfigError
    from model.device import device_name, resolve_device
    from model.tasks import get_task
    from search import final
    from search.export import load_exported
    from search.trials.trial_config import versions
    from storage.study import quiet_optuna
    from storage.url import redact_text

    exported = load_exported(args.config)
    config = exported.trial_config
    task = get_task(config.task)
    device = resolve_device(args.device)
    try:  # built on the meta device: a model that cannot be built or would not fit fails here, before training
        task.check_fits(config.model_config(), device)
    except ValueError as e:
        raise ConfigError(f"--config: trial_config.model: {e}") from None
    out = Path(args.out).expanduser()
    final.check_out_dir(out)
    first_seed = config.train.seed if args.seed is None else args.seed
    seeds = [first_seed + i for i in range(args.seeds)]
    if seeds[-1] > MAX_SEED:
        raise ConfigError(f"--seeds: the last seed would be {seeds[-1]}; seeds must be in 0..{MAX_SEED}")
    data_config = final.final_data_config(exported, args.data, args.download, args.train_size)
    data = task.load_final_data(data_config)  # the only command that loads the test set
    quiet_optuna()
    study, storage_url, why_not = final.study_to_record_on(exported, args.storage, args.study)
    if why_not:
        print(f"alexsearch final: {why_not}", file=sys.stderr)
    now_versions = versions()
    note = final.version_note(exported, now_versions)
    if note:
        print(note, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    n_classes = final.num_classes(exported, data)
    names = final.class_names(task, n_classes)
    p = exported.provenance
    print(
        f"final run of {args.config}"
        + (f" (study {p.study!r}, trial {p.trial})" if p.trial is not None else "")
        + f": {config.train.epochs} epochs x {len(seeds)} seeds, {len(data.train)} train / {len(data.eval)} test "
        f"images on {device_name(device)} ({torch.get_num_threads()} threads)",
        file=sys.stderr,
    )

    started, t0 = datetime.now(UTC), time.perf_counter()
    results, weights = [], {}
    bar = tqdm(seeds, desc="seeds", unit="seed", dynamic_ncols=True, file=sys.stderr)
    for seed in bar:
        result, weights_file = final.run_seed(task, exported, data, device, seed, n_classes, out, log=bar.write)
        results.append(result)
        if weights_file is not None:
            weights[str(seed)] = weights_file
            bar.write(f"seed {seed}: test_acc {result.test_acc:.4f} ({result.seconds:.0f}s)")
    bar.close()

    metrics = final.metrics(
        exported,
        results,
        names,
        data,
        data_config,
        device_name(device),
        started,
        time.perf_counter() - t0,
        weights,
        now_versions,
    )
    files = final.write_results(out, exported, metrics, results, names)

    if metrics["test_acc_mean"] is None:
        print(f"every seed diverged; nothing to test. Wrote {out}", file=sys.stderr)
    else:
        done = [r for r in results if r.test_acc is not None]
        accs = ", ".join(f"seed {r.seed} {r.test_acc:.4f}" for r in done)
        spread = f" ± {metrics['test_acc_std']:.4f} (sample std)" if len(done) > 1 else ""
        print(f"test accuracy {metrics['test_acc_mean']:.4f}{spread} over {len(done)} seed(s): {accs}; wrote {out}")
    if study is not None and storage_url is not None:  # open_study returns both or no study
        try:
            final.record_on_study(
                study,
                storage_url,
                args.artifacts,
                final.study_result(metrics, out),
                files,
                smoke_train_size=args.train_size,
            )
            if args.train_size is None:
                print(
                    f"recorded on study {study.study_name!r}: user attr {final.STUDY_ATTR!r} and {len(files)} artifacts"
                )
            else:
                print(
                    f"a --train-size run is a smoke test: recorded on study {study.study_name!r} only as user "
                    f"attr {final.SMOKE_ATTR!r} (its {final.STUDY_ATTR!r} and artifacts are left as they were)"
                )
        except Exception as e:  # the run is done and saved; a storage hiccup must not hide that
            why = redact_text(str(e).splitlines()[0] if str(e) else "", storage_url)
            print(
                f"alexsearch final: could not record on study {study.study_name!r} "
                f"({type(e).__name__}: {why}); results are in {out}",
                file=sys.stderr,
            )
    return 0 if metrics["test_acc_mean"] is not None else 1
