"""Strategies that plan trials themselves. `optuna` (the default) leaves it to the sampler.

`stepwise` is the course report's protocol (section 3.3, Table 1): start from the report's defaults
(Adam, lr 1e-3, batch 100, no batch norm), then tune one parameter per step, in the order batch norm,
optimizer, batch size, learning rate, each step keeping the best values of the steps before. Every
config is an enqueued Optuna trial; a config the study already ran is not run again, so Table 1 costs
2 + 1 + 2 + 2 = 7 trials. Like the report, it trains every trial for all epochs: no pruner, no patience.

The plan is replayed from the study's trials before each trial, so a stopped search resumes where it
was, and several workers can share a study: each enqueues one config before it takes one, and a
worker whose next step depends on trials still running elsewhere waits (polls) until they finish.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.errors import UsageError
from search.settings import SearchConfig
from search.space.space import Choice, Space, builtin_space_path, load_space
from search.trials import record
from search.trials.record import is_duplicate
from search.workers.loop import Strategy
from search.workers.signals import stop_requested
from storage.heartbeat import reap_stale_trials
from storage.optuna_private import fixed_params
from storage.sqlite import deciding
from storage.study import GRACE_PERIOD_S, MAX_RETRY

STRATEGIES = ("optuna", "stepwise")

# Table 1's order, and the report's starting point ("default parameters", section 3.3).
PROTOCOL = ("batch_norm", "optimizer", "batch_size", "lr")
DEFAULTS: dict[str, Any] = {"batch_norm": False, "optimizer": "adam", "batch_size": 100, "lr": 1e-3}
TABLE1_SPACE = "alexnet-cifar10-table1.toml"  # step values for a parameter the space gives as a range
POLL_S = 10.0  # how often a waiting worker looks again; trials last minutes
ORPHAN_S = 60.0  # a trial WAITING this long was enqueued by a worker that died before taking it
FAIL_LIMIT = 3  # a config whose trial failed this many times is given up (a crash, not a slow trial)
PLAN_ATTR = record.STEPWISE_PLAN


@dataclass(frozen=True)
class Step:
    name: str
    values: tuple


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    defaults: dict[str, Any]  # every step's parameter, at the value step 1 starts from

    @property
    def size(self) -> int:
        """Distinct configs: all of step 1, then each later step adds its values but the one kept."""
        return 1 + sum(len(s.values) - 1 for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [[s.name, list(s.values)] for s in self.steps], "defaults": dict(self.defaults)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(tuple(Step(n, tuple(v)) for n, v in data["steps"]), dict(data["defaults"]))


def plan_for(space: Space) -> Plan:
    """The protocol over this space: its Choice values, or Table 1's values for a range parameter."""
    extra = [n for n in space.names if n not in PROTOCOL]
    if extra:
        raise UsageError(
            f"--strategy stepwise: params.{extra[0]} is not a step of the report's protocol "
            f"({', '.join(PROTOCOL)}); move it to [fixed] in the space file"
        )
    params = {p.name: p for p in space.params}
    table1 = None
    steps = []
    for name in PROTOCOL:
        if name not in params:
            continue  # fixed in the space file, or the task's default: not tuned
        p = params[name]
        if isinstance(p, Choice):
            values = p.choices
        else:
            table1 = table1 or {q.name: q.choices for q in load_space_table1().params if isinstance(q, Choice)}
            values = tuple(v for v in table1[name] if p.low <= v <= p.high)
            if not values:
                raise UsageError(
                    f"--strategy stepwise: params.{name} range [{p.low:g}, {p.high:g}] holds none "
                    f"of Table 1's values {list(table1[name])}; give it choices"
                )
        steps.append(Step(name, tuple(values)))
    defaults = {
        s.name: DEFAULTS[s.name] if _index(s.values, DEFAULTS[s.name]) is not None else s.values[0] for s in steps
    }
    return Plan(tuple(steps), defaults)


def load_space_table1() -> Space:
    return load_space(builtin_space_path(TABLE1_SPACE))


def apply_protocol(settings: SearchConfig, space: Space, trials_given: int | None) -> SearchConfig:
    """For --strategy stepwise: check the space now (before any database is touched), train every trial
    in full as the report did (pruner none, patience 0), and default the budget to the protocol's size."""
    if settings.strategy != "stepwise":
        return settings
    plan = plan_for(space)
    return settings.replace(pruner="none", patience=0, trials=trials_given or plan.size)


# --- replaying the plan from the study's trials ---------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1.0)
    return a == b


def _index(values: Sequence, value: Any) -> int | None:
    return next((i for i, v in enumerate(values) if _same(v, value)), None)


def trial_values(t: FrozenTrial) -> dict[str, Any]:
    """A trial's parameter values: sampled, or fixed by enqueue_trial while it still waits."""
    return {**fixed_params(t), **t.params}


def matches(t: FrozenTrial, config: dict[str, Any]) -> bool:
    values = trial_values(t)
    return all(k in values and _same(values[k], v) for k, v in config.items())


@dataclass
class StepView:
    """One step as the study has it so far."""

    step: Step
    base: dict[str, Any]  # the values of the other steps' parameters during this step
    configs: list[dict[str, Any]]
    trials: list[list[FrozenTrial]] = field(default_factory=list)  # every trial of each config
    best: dict[str, Any] | None = None  # the step's winning config, once every config is finished

    def finished(self, i: int) -> list[FrozenTrial]:
        # A trial the objective skipped as a duplicate (user attr duplicate_of) says nothing about
        # the config: its original may still be running.
        return [
            t for t in self.trials[i] if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not is_duplicate(t)
        ]

    def all_trials(self) -> list[FrozenTrial]:
        return [t for ts in self.trials for t in ts]


def replay(plan: Plan, trials: Sequence[FrozenTrial]) -> list[StepView]:
    """Walk the steps as far as the trials go; the last view is the step still open (best is None)."""
    views = []
    base = dict(plan.defaults)
    for step in plan.steps:
        configs = [{**base, step.name: v} for v in step.values]
        view = StepView(
            step,
            {k: v for k, v in base.items() if k != step.name},
            configs,
            [[t for t in trials if matches(t, c)] for c in configs],
        )
        views.append(view)
        open_configs = [i for i in range(len(configs)) if not view.finished(i) and not _given_up(view.trials[i])]
        if open_configs:
            return views
        view.best = _best(view, base[step.name])
        base = dict(view.best)
    return views


def _given_up(trials: list[FrozenTrial]) -> bool:
    """FAIL_LIMIT failures and no retry queued or running: the config crashes, the plan goes on without it."""
    active = any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    return not active and sum(t.state == TrialState.FAIL for t in trials) >= FAIL_LIMIT


def _best(view: StepView, kept: Any) -> dict[str, Any]:
    """Highest value wins; a tie keeps the value the step started from (the report kept its choice)."""
    scored = []
    for i, config in enumerate(view.configs):
        values = [t.value for t in view.finished(i) if t.state == TrialState.COMPLETE and t.value is not None]
        if values:
            scored.append((max(values), _same(config[view.step.name], kept), -i, config))
    if not scored:  # every config pruned or crashed: nothing beats the starting value
        return {**view.base, view.step.name: kept}
    return max(scored, key=lambda s: s[:3])[3]


def plan_done(plan: Plan, trials: Sequence[FrozenTrial]) -> bool:
    views = replay(plan, trials)
    return len(views) == len(plan.steps) and views[-1].best is not None


# --- the strategy -------------------------------------------------------------------------------


class StartSampler(optuna.samplers.BaseSampler):
    """Never invents a config: any value not fixed by enqueue_trial is the protocol's starting value.

    A worker takes the trial it enqueued, but Optuna's queue is not airtight between processes: rarely
    a worker finds it empty and asks the sampler. That trial then repeats step 1's starting config,
    which the objective skips at once as a duplicate (it does not count towards the budget), instead of
    training a config outside the protocol.
    """

    def __init__(self, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.fallback = optuna.samplers.RandomSampler(seed=0)  # a parameter outside the plan (none today)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        if param_name in self.defaults:
            return self.defaults[param_name]
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)


class Stepwise:
    """Enqueues the protocol's next config before each trial (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        poll_s: float = POLL_S,
        orphan_s: float = ORPHAN_S,
        log: Callable[[str], None] | None = None,
        grace_period_s: int = GRACE_PERIOD_S,
        max_retry: int = MAX_RETRY,
    ) -> None:
        self.plan, self.poll_s, self.orphan_s = plan, poll_s, orphan_s
        self.grace_period_s, self.max_retry = grace_period_s, max_retry
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.waiting_since: dict[int, float] = {}  # trial number -> when this worker first saw it WAITING

    def _orphaned(self, t: FrozenTrial) -> bool:
        """A worker takes the trial it enqueued within milliseconds; one left WAITING this long has no owner."""
        now = time.monotonic()
        return now - self.waiting_since.setdefault(t.number, now) >= self.orphan_s

    def prepare(self, study: optuna.Study) -> bool:
        if not isinstance(study.sampler, StartSampler):
            study.sampler = StartSampler(self.plan.defaults)  # see StartSampler: the plan alone picks configs
        if PLAN_ATTR not in study.user_attrs:
            study.set_user_attr(PLAN_ATTR, self.plan.to_dict())
        said = None
        while True:
            if stop_requested():  # SIGTERM or Ctrl-C: enqueue nothing that no one would take
                return False
            with deciding():  # this read decides an enqueue: serialised with the other workers' enqueues
                trials = study.get_trials(deepcopy=False)
            views = replay(self.plan, trials)
            view = views[-1] if views else None
            if view is None or view.best is not None:
                return False  # every step finished (or nothing to tune)
            step_no = len(views)
            for i, config in enumerate(view.configs):
                ts = view.trials[i]
                if view.finished(i) or _given_up(ts):
                    continue
                waiting = [t for t in ts if t.state == TrialState.WAITING]
                if any(record.retried_trial_number(t) is not None or self._orphaned(t) for t in waiting):
                    return True  # a retry of a crashed trial, or one whose enqueuer died before taking it
                if not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in ts):
                    # Enqueue exactly one per trial this worker is about to take, so a pop never finds
                    # the queue empty and falls back to the sampler.
                    study.enqueue_trial(
                        config, user_attrs={record.STEPWISE_STEP: step_no, record.STEPWISE_PARAM: view.step.name}
                    )
                    return True
            # Every open config of this step runs (or waits) in another worker: the next step needs them.
            running = sorted(t.number for t in view.all_trials() if t.state in (TrialState.RUNNING, TrialState.WAITING))
            if said != running:
                self.log(
                    f"stepwise: step {step_no} ({view.step.name}) waits for trial(s) "
                    f"{', '.join(map(str, running))} in other workers"
                )
                said = running
            deadline = time.monotonic() + self.poll_s
            while time.monotonic() < deadline and not stop_requested():
                time.sleep(min(1.0, self.poll_s))
            # A dead worker's trial becomes FAIL and is retried, also one that died before its first beat.
            reap_stale_trials(study, self.grace_period_s, self.max_retry)


def make_strategy(settings: SearchConfig, space: Space) -> Strategy | None:
    if settings.strategy == "optuna":
        return None
    if settings.strategy == "stepwise":
        return Stepwise(plan_for(space), grace_period_s=settings.grace_period, max_retry=settings.max_retry)
    raise UsageError(f"--strategy: unknown strategy {settings.strategy!r} (allowed: {', '.join(STRATEGIES)})")
