"""The baseline of bench/overhead.py: a plain Optuna script in the style of optuna-examples' pytorch_simple.py.

    python -m bench.plain_optuna --storage sqlite:///plain.db --task mlp-synth --trials 20 --epochs 5

It makes the same study `alexsearch search --workers 1` makes with the same options: the same seeded TPE
sampler (constant liar) and median pruner, the same parameters drawn in the same order (through the task's
search space, which only calls trial.suggest_*), the same model, data split and seeds, the fused optimizer,
the same epoch arithmetic as model/train.py, and the same patience rule (a trial stops after `patience`
epochs without improvement and completes with its best validation accuracy). What it leaves out is the
service: no checkpoints, no per-epoch curves or attributes in the database, no heartbeat, no duplicate
check, no best-trial artifacts, no progress bar. One database write per epoch: trial.report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import optuna
import torch
import torch.nn.functional as F

from model.tasks import DataConfig, get_task
from model.train import epoch_seed, make_optimizer
from search.space.space import load_space

EVAL_BATCH = 1000  # model/train.py's CPU eval batch: the same batches give bit-identical logits


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.plain_optuna", description=__doc__.splitlines()[0])
    p.add_argument("--storage", required=True)
    p.add_argument("--study", default="plain")
    p.add_argument("--task", default="mlp-synth")
    p.add_argument("--data", default="data")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--startup-trials", type=int, default=3)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument(
        "--exit-now",
        action="store_true",
        help="end with os._exit after the last line, skipping the interpreter's teardown as alexsearch does",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = torch.device("cpu")
    task = get_task(args.task)
    space = load_space(None, args.task)
    data = task.load_search_data(
        DataConfig(root=args.data, val_size=args.val_size or task.default_val_size, train_size=args.train_size)
    )
    train_x, train_y, val_x, val_y = data.train.x, data.train.y, data.eval.x, data.eval.y
    preprocess = task.make_preprocess(device)

    def objective(trial: optuna.Trial) -> float:
        model_config, config = space.build(space.sample(trial), epochs=args.epochs, seed=args.seed)
        torch.manual_seed(config.seed)
        model = task.build_model(model_config).to(device)
        optimizer = make_optimizer(model, config, device)  # fused Adam / SGD
        best, best_epoch = float("-inf"), 0
        for epoch in range(1, args.epochs + 1):
            seed = epoch_seed(config.seed, epoch)
            torch.manual_seed(seed)
            generator = torch.Generator(device=device).manual_seed(seed)
            model.train()
            for idx in torch.randperm(len(train_y), device=device, generator=generator).split(config.batch_size):
                x = train_x[idx]
                if config.augment:
                    x = task.augment(x, generator)
                loss = F.cross_entropy(model(preprocess(x)).float(), train_y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.inference_mode():
                for start in range(0, len(val_y), EVAL_BATCH):
                    pred = model(preprocess(val_x[start : start + EVAL_BATCH])).argmax(1)
                    correct += int((pred == val_y[start : start + EVAL_BATCH]).sum())
            val_acc = correct / len(val_y)
            if val_acc > best:
                best, best_epoch = val_acc, epoch
            trial.report(val_acc, epoch)
            if epoch < args.epochs and trial.should_prune():  # as alexsearch: never at the last epoch
                raise optuna.TrialPruned()
            if epoch < args.epochs and args.patience > 0 and epoch - best_epoch >= args.patience:
                break
        return best

    study = optuna.create_study(
        study_name=args.study,
        storage=args.storage,
        direction="maximize",
        # as alexsearch: random trials for a third of the budget (at least 3) before TPE models the results
        sampler=optuna.samplers.TPESampler(
            seed=args.seed, constant_liar=True, n_startup_trials=max(3, round(args.trials / 3))
        ),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials, n_warmup_steps=args.warmup_epochs + 1),
    )
    start = time.perf_counter()
    study.optimize(objective, n_trials=args.trials)
    print(f"{args.trials} trials in {time.perf_counter() - start:.1f} s; best {study.best_value:.4f}", flush=True)
    if args.exit_now:
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
