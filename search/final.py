"""The final run: retrain an exported config on all training images, then test it once per seed.

The test set is evaluated exactly once per seed, after the last epoch (the Trainer runs with
evaluate_each_epoch=False, so no epoch looks at it). Results go to a folder: metrics.json, one
state_dict per seed, a confusion-matrix PNG and a learning-curve PNG; and, when the config names its
study, to the study as the user attr `final_result` plus artifacts.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from model.errors import DivergedError
from model.tasks import DataConfig, Task, TaskData, get_task
from model.train import EpochStats, Trainer
from search.errors import UsageError
from search.export import ExportedConfig
from search.trials import record
from storage import sqlite as sqlite_settings
from storage.artifacts import artifact_dir, artifact_store
from storage.study import load_study, open_storage
from storage.url import parse_url, redact, redact_text, sqlite_path

Log = Callable[[str], None]
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"  # the exported config the run used, copied next to its results
CONFUSION_PNG = "confusion_matrix.png"
CURVE_PNG = "learning_curve.png"
STUDY_ATTR = record.FINAL_RESULT
# A `final --train-size N` run is a smoke test of the pipeline, not the study's result: it is kept apart, marked,
# and adds no artifacts (the last smoke run replaces the one before).
SMOKE_ATTR = record.FINAL_SMOKE_RESULT


def check_out_dir(out: Path) -> None:
    """The results folder must not be a file, nor hold an earlier run's results."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file, not a folder")
    if (out / METRICS_FILE).exists():
        raise UsageError(
            f"--out: {out} already holds {METRICS_FILE} from an earlier run; pick another folder or remove it"
        )


def version_note(exported: ExportedConfig, now: dict[str, str]) -> str | None:
    changed = [
        f"{k} {exported.versions[k]} -> {now[k]}"
        for k in now
        if k in exported.versions and exported.versions[k] != now[k]
    ]
    return f"note: versions differ from the search trial's: {', '.join(changed)}" if changed else None


def weights_file(seed: int) -> str:
    return f"model-seed{seed}.pt"


def final_data_config(exported: ExportedConfig, root: str | None, download: bool, train_size: int | None) -> DataConfig:
    """All training images (or a seeded stratified cap of train_size) and the test set; no hold-out."""
    data = exported.trial_config.data
    return DataConfig(
        root=root or data.root, download=download, val_size=None, train_size=train_size, split_seed=data.split_seed
    )


@dataclass
class SeedResult:
    seed: int
    history: list[dict[str, float]]  # per epoch: epoch, train_loss (nats), train_acc, seconds, images_per_s
    test_acc: float | None = None  # None when training diverged
    per_class_acc: list[float] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)  # rows: true class, columns: predicted
    diverged: str | None = None
    seconds: float = 0.0  # training and testing, wall time

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "test_acc": self.test_acc,
            "per_class_acc": self.per_class_acc,
            "confusion_matrix": self.confusion_matrix,
            "diverged": self.diverged,
            "seconds": self.seconds,
            "history": self.history,
        }


def num_classes(exported: ExportedConfig, data: TaskData) -> int:
    n = exported.trial_config.model.get("num_classes")
    if isinstance(n, int):
        return n
    return int(max(int(data.train.y.max()), int(data.eval.y.max())) + 1)


def class_names(task: Task, n: int) -> list[str]:
    names = task.class_names
    return list(names) if names is not None and len(names) == n else [str(i) for i in range(n)]


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n) int64 counts; row = true class, column = predicted class."""
    return torch.bincount(y_true.long() * n + y_pred.long(), minlength=n * n).view(n, n)


def per_class_accuracy(cm: torch.Tensor) -> list[float]:
    totals = cm.sum(1)
    return [float(cm[i, i]) / int(totals[i]) if int(totals[i]) else math.nan for i in range(len(cm))]


def epoch_line(seed: int, epochs: int, s: EpochStats) -> str:
    return (
        f"seed {seed} epoch {s.epoch}/{epochs}: loss {s.train_loss:.4f} train_acc {s.train_acc:.4f} "
        f"{s.seconds:.1f}s {s.images_per_s:.0f} img/s"
    )


def train_and_test(
    task: Task,
    exported: ExportedConfig,
    data: TaskData,
    device: torch.device,
    seed: int,
    n_classes: int,
    log: Log = print,
) -> tuple[SeedResult, dict[str, torch.Tensor] | None]:
    """Train one seed for the exported epochs, then predict the test set once. Returns the weights on the CPU."""
    config = exported.trial_config
    train = config.train.replace(seed=seed)
    start = datetime.now(UTC)
    trainer = Trainer(task, config.model_config(), train, data, device, evaluate_each_epoch=False)
    result = SeedResult(seed=seed, history=[])
    try:
        for s in trainer.epochs():
            result.history.append({k: v for k, v in s.as_dict().items() if k != "val_acc"})
            log(epoch_line(seed, train.epochs, s))
    except DivergedError as e:
        result.diverged = str(e)
        log(f"seed {seed}: diverged ({e}); left out of the mean")
        return result, None
    y_pred = trainer.predict()  # the one look at the test set for this seed
    cm = confusion_matrix(data.eval.y.cpu(), y_pred, n_classes)
    result.test_acc = float(cm.diag().sum()) / len(y_pred)
    result.per_class_acc = per_class_accuracy(cm)
    result.confusion_matrix = cm.tolist()
    result.seconds = (datetime.now(UTC) - start).total_seconds()
    weights = {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}
    return result, weights


def run_seed(
    task: Task,
    exported: ExportedConfig,
    data: TaskData,
    device: torch.device,
    seed: int,
    n_classes: int,
    out: Path,
    log: Log = print,
) -> tuple[SeedResult, str | None]:
    """Train and test one seed, and save its weights in out. Returns the result and the weights' file name."""
    result, state = train_and_test(task, exported, data, device, seed, n_classes, log=log)
    if state is None:
        return result, None
    torch.save(state, out / weights_file(seed))
    return result, weights_file(seed)


def summarize(results: list[SeedResult], names: list[str]) -> dict[str, Any]:
    """Mean and sample std of the test accuracy over the seeds that finished; confusion counts summed."""
    done = [r for r in results if r.test_acc is not None]
    accs = [r.test_acc for r in results if r.test_acc is not None]
    n = len(names)
    cm = torch.zeros(n, n, dtype=torch.long)
    for r in done:
        cm += torch.tensor(r.confusion_matrix, dtype=torch.long)
    per_class = [statistics.fmean(r.per_class_acc[i] for r in done) if done else math.nan for i in range(n)]
    return {
        "test_acc_mean": statistics.fmean(accs) if accs else None,
        "test_acc_std": statistics.stdev(accs) if len(accs) >= 2 else (0.0 if accs else None),
        "test_acc_per_seed": {str(r.seed): r.test_acc for r in results},
        "per_class_acc": dict(zip(names, per_class, strict=True)),
        "confusion_matrix": cm.tolist(),
    }


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)  # Agg without pyplot: no global backend state, works headless
    fig.savefig(path, dpi=120)


def plot_confusion(cm: list[list[int]], names: list[str], title: str, path: Path) -> None:
    counts = torch.tensor(cm, dtype=torch.float64)
    rows = counts.sum(1, keepdim=True).clamp(min=1)
    share = (counts / rows).numpy()
    n = len(names)
    fig = Figure(figsize=(1.0 + 0.62 * n, 0.6 + 0.55 * n), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{share[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, label="share of the true class")
    _save(fig, path)


def plot_learning_curve(results: list[SeedResult], title: str, path: Path) -> None:
    """Training loss and accuracy per epoch for each seed; each seed's test accuracy as a point at its last epoch."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for r in results:
        epochs = [h["epoch"] for h in r.history]
        line = loss_ax.plot(epochs, [h["train_loss"] for h in r.history], marker="o", label=f"seed {r.seed}")[0]
        acc_ax.plot(
            epochs,
            [h["train_acc"] for h in r.history],
            marker="o",
            color=line.get_color(),
            label=f"seed {r.seed} train",
        )
        if r.test_acc is not None and epochs:
            acc_ax.scatter(
                [epochs[-1]],
                [r.test_acc],
                marker="*",
                s=160,
                color=line.get_color(),
                zorder=3,
                label=f"seed {r.seed} test {r.test_acc:.4f}",
            )
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy, nats)", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="training accuracy; test accuracy once at the end")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def write_json(path: Path, data: Any) -> None:
    # NaN is not JSON; a class missing from the test set has no accuracy.
    path.write_text(dumps(_nan_to_none(data)) + "\n")


def dumps(x: Any, indent: int = 0) -> str:
    """JSON with 2-space indents, but a list of plain values on one line (a confusion matrix reads as rows)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(x, dict) and x:
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 2)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(x, list) and any(isinstance(v, (dict, list)) for v in x):
        return "[\n" + ",\n".join(inner + dumps(v, indent + 2) for v in x) + f"\n{pad}]"
    return json.dumps(x)


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def study_to_record_on(
    exported: ExportedConfig, storage: str | None, study_name: str | None
) -> tuple[optuna.Study | None, str | None, str | None]:
    """(study, storage URL, why not): the study to record the result on, or None and the reason; never fails."""
    url = storage or exported.provenance.storage
    name = study_name or exported.provenance.study
    if not url or not (name or storage):  # --storage alone picks the storage's only study
        return None, None, None
    try:
        return open_study_for_result(url, name), url, None
    except Exception as e:  # any storage problem: the local results still matter more
        why = redact_text(str(e).splitlines()[0] if str(e) else type(e).__name__, url)
        return None, url, (f"cannot open study {name!r} in {redact(url)} ({why}); results are written locally only")


def metrics(
    exported: ExportedConfig,
    results: list[SeedResult],
    names: list[str],
    data: TaskData,
    data_config: DataConfig,
    device: str,
    started: datetime,
    seconds: float,
    weights: dict[str, str],
    now_versions: dict[str, str],
) -> dict[str, Any]:
    """What metrics.json holds: the summary over the seeds, each seed's result, and how the run was made."""
    config, p = exported.trial_config, exported.provenance
    return {
        **summarize(results, names),
        "classes": names,
        "seeds": [r.seed for r in results],
        "epochs": config.train.epochs,
        "task": config.task,
        "train_images": len(data.train),
        "test_images": len(data.eval),
        "data_root": data_config.root,
        "device": device,
        "study": p.study,
        "trial": p.trial,
        "storage": p.storage,
        "search_val_acc": p.val_acc,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": seconds,
        "weights": weights,
        "versions": now_versions,
        "per_seed": [r.as_dict() for r in results],
        "config": exported.to_dict(),
        # What a model-seed*.pt expects as input: apply this before model(x), or its predictions mean nothing.
        "input_normalisation": get_task(config.task).input_normalisation,
    }


def write_results(
    out: Path, exported: ExportedConfig, metrics: dict[str, Any], results: list[SeedResult], names: list[str]
) -> list[Path]:
    """The config used, metrics.json and the two figures into out. Returns the files to keep on the study."""
    config, p = exported.trial_config, exported.provenance
    (out / CONFIG_FILE).write_text(exported.to_json() + "\n")
    write_json(out / METRICS_FILE, metrics)
    title = f"{config.task}" + (f", study {p.study} trial {p.trial}" if p.trial is not None else "")
    plot_confusion(
        metrics["confusion_matrix"], names, f"test set, {len(results)} seed(s) summed: {title}", out / CONFUSION_PNG
    )
    plot_learning_curve(results, title, out / CURVE_PNG)
    return [out / METRICS_FILE, out / CONFUSION_PNG, out / CURVE_PNG]


def open_study_for_result(storage_url: str, study_name: str | None) -> optuna.Study:
    """The existing study (never created here); its SQLite writes take the lock up front like a worker's."""
    storage = open_storage(storage_url, create=False)
    if sqlite_path(parse_url(storage_url)) is not None:
        sqlite_settings.use_immediate_transactions(storage.engine)
    return load_study(storage, study_name)


def record_on_study(
    study: optuna.Study,
    storage_url: str,
    artifacts: str | None,
    result: dict[str, Any],
    files: list[Path],
    smoke_train_size: int | None = None,
) -> dict[str, str]:
    """Upload files as study artifacts and set the study user attr `final_result`. Returns name -> artifact id.

    A smoke run (smoke_train_size set) only sets `final_smoke_result`, marked as one, and uploads nothing."""
    if smoke_train_size is not None:
        study.set_user_attr(SMOKE_ATTR, _nan_to_none({**result, "smoke": True, "train_size": smoke_train_size}))
        return {}
    store = artifact_store(artifact_dir(storage_url, artifacts))
    ids = {
        p.name: optuna.artifacts.upload_artifact(artifact_store=store, study_or_trial=study, file_path=str(p))
        for p in files
    }
    study.set_user_attr(STUDY_ATTR, _nan_to_none({**result, "artifacts": ids}))
    return ids


def study_result(metrics: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The short form of metrics.json kept on the study."""
    keys = (
        "test_acc_mean",
        "test_acc_std",
        "test_acc_per_seed",
        "seeds",
        "epochs",
        "train_images",
        "test_images",
        "device",
        "finished_at",
        "trial",
    )
    return {
        **{k: metrics[k] for k in keys},
        "out_dir": str(out_dir.resolve()),
        "storage": redact(metrics["storage"]) if metrics.get("storage") else None,
    }
