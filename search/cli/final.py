"""`alexsearch final`: retrain an exported config on all training images and test it once per seed."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from search.cli.args import non_negative_int, positive_int
from storage.study import quiet_optuna
from storage.url import redact

if TYPE_CHECKING:
    import optuna

    from search.export import ExportedConfig

HELP = "retrain an exported config on all training images and evaluate the test set once per seed"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("final", help=HELP, description=HELP)
    p.add_argument("--config", required=True, help="a file written by `alexsearch export` (e.g. best.json)")
    p.add_argument("--data", default=None,
                   help="folder holding cifar-10-batches-py/ (default: the data root stored in the config)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into --data when it is missing")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="train this many times, with seeds = the config's seed, +1, +2, ... (default: 3)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="first seed (default: the seed stored in the config)")
    p.add_argument("--out", default="final", help="folder for metrics.json, weights and plots (default: ./final)")
    p.add_argument("--train-size", type=positive_int, default=None,
                   help="train on only this many images, a seeded stratified subset, for quick runs "
                        "(default: all training images)")
    p.add_argument("--storage", default=None,
                   help="record the result on the study in this storage (default: the storage in the config's "
                        "provenance; needed when its URL had a password)")
    p.add_argument("--study", default=None, help="record the result on this study (default: the config's study)")
    p.add_argument("--artifacts", default=None,
                   help="artifact folder for a server database (default: next to a SQLite file, else "
                        "./alexsearch-artifacts)")
    p.set_defaults(run=run)


def check_out_dir(out: Path) -> None:
    from search import final

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} is a file, not a folder")
    if (out / final.METRICS_FILE).exists():
        raise ValueError(f"--out: {out} already holds {final.METRICS_FILE} from an earlier run; "
                         "pick another folder or remove it")


def version_note(exported: ExportedConfig, now: dict[str, str]) -> str | None:
    changed = [f"{k} {exported.versions[k]} -> {now[k]}" for k in now
               if k in exported.versions and exported.versions[k] != now[k]]
    return f"note: versions differ from the search trial's: {', '.join(changed)}" if changed else None


def open_study(args: argparse.Namespace, exported: ExportedConfig) -> tuple[optuna.Study | None, str | None]:
    """The study to record on, or None with a message; never fails the run."""
    from search import final

    url = args.storage or exported.provenance.storage
    name = args.study or exported.provenance.study
    if not url or not (name or args.storage):  # --storage alone picks the storage's only study
        return None, None
    try:
        return final.open_study_for_result(url, name), url
    except Exception as e:  # any storage problem: the local results still matter more
        print(f"alexsearch final: cannot open study {name!r} in {redact(url)} ({str(e).splitlines()[0]}); "
              "results are written locally only", file=sys.stderr)
        return None, url


def run(args: argparse.Namespace) -> int:
    # torch and the training code load only when a final run starts; `alexsearch status` etc. never load them
    import torch
    from tqdm import tqdm

    from model.device import device_name, resolve_device
    from model.tasks import get_task
    from search import final
    from search.export import load_exported
    from search.trials.trial_config import versions

    exported = load_exported(args.config)
    config = exported.trial_config
    task = get_task(config.task)
    device = resolve_device(args.device)
    out = Path(args.out).expanduser()
    check_out_dir(out)
    first_seed = config.train.seed if args.seed is None else args.seed
    seeds = [first_seed + i for i in range(args.seeds)]
    data_config = final.final_data_config(exported, args.data, args.download, args.train_size)
    data = task.load_final_data(data_config)  # the only command that loads the test set
    quiet_optuna()
    study, storage_url = open_study(args, exported)
    now_versions = versions()
    note = version_note(exported, now_versions)
    if note:
        print(note, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    n_classes = final.num_classes(exported, data)
    names = final.class_names(task, n_classes)
    p = exported.provenance
    print(f"final run of {args.config}" + (f" (study {p.study!r}, trial {p.trial})" if p.trial is not None else "")
          + f": {config.train.epochs} epochs x {len(seeds)} seeds, {len(data.train)} train / {len(data.eval)} test "
          f"images on {device_name(device)} ({torch.get_num_threads()} threads)", file=sys.stderr)

    started, t0 = datetime.now(UTC), time.perf_counter()
    results, weights = [], {}
    bar = tqdm(seeds, desc="seeds", unit="seed", dynamic_ncols=True, file=sys.stderr)
    for seed in bar:
        result, state = final.train_and_test(task, exported, data, device, seed, n_classes, log=bar.write)
        results.append(result)
        if state is not None:
            torch.save(state, out / final.weights_file(seed))
            weights[str(seed)] = final.weights_file(seed)
            bar.write(f"seed {seed}: test_acc {result.test_acc:.4f} ({result.seconds:.0f}s)")
    bar.close()

    summary = final.summarize(results, names)
    metrics = {
        **summary, "classes": names, "seeds": seeds, "epochs": config.train.epochs, "task": config.task,
        "train_images": len(data.train), "test_images": len(data.eval), "data_root": data_config.root,
        "device": device_name(device), "study": p.study, "trial": p.trial, "storage": p.storage,
        "search_val_acc": p.val_acc, "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "seconds": time.perf_counter() - t0,
        "weights": weights, "versions": now_versions, "per_seed": [r.as_dict() for r in results],
        "config": exported.to_dict(),
    }
    (out / final.CONFIG_FILE).write_text(exported.to_json() + "\n")
    final.write_json(out / final.METRICS_FILE, metrics)
    title = f"{config.task}" + (f", study {p.study} trial {p.trial}" if p.trial is not None else "")
    final.plot_confusion(summary["confusion_matrix"], names, f"test set, {len(results)} seed(s) summed: {title}",
                         out / final.CONFUSION_PNG)
    final.plot_learning_curve(results, title, out / final.CURVE_PNG)

    if summary["test_acc_mean"] is None:
        print(f"every seed diverged; nothing to test. Wrote {out}", file=sys.stderr)
    else:
        done = [r for r in results if r.test_acc is not None]
        accs = ", ".join(f"seed {r.seed} {r.test_acc:.4f}" for r in done)
        spread = f" ± {summary['test_acc_std']:.4f} (sample std)" if len(done) > 1 else ""
        print(f"test accuracy {summary['test_acc_mean']:.4f}{spread} over {len(done)} seed(s): {accs}; wrote {out}")
    if study is not None:
        files = [out / final.METRICS_FILE, out / final.CONFUSION_PNG, out / final.CURVE_PNG]
        try:
            final.record_on_study(study, storage_url, args.artifacts, final.study_result(metrics, out), files)
            print(f"recorded on study {study.study_name!r}: user attr {final.STUDY_ATTR!r} and "
                  f"{len(files)} artifacts")
        except Exception as e:  # the run is done and saved; a storage hiccup must not hide that
            print(f"alexsearch final: could not record on study {study.study_name!r} "
                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); results are in {out}",
                  file=sys.stderr)
    return 0 if summary["test_acc_mean"] is not None else 1
