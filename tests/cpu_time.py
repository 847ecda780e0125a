"""CPU time of the test run, the figure issue 13's suite-speed target is set in.

At the end of every run pytest prints one line: CPU seconds of the pytest process and of the child processes it
waited for (the spawned `alexsearch` commands and tools, and the session's PostgreSQL server when it stops; not
the Slurm daemons, which detach), their sum, and wall seconds. `--cpu-top N` also lists the N tests that used
the most CPU, each with its own and its children's share, to show where a faster suite has to come from.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator

import pytest

_per_test: dict[str, tuple[float, float]] = {}
_start: dict[str, float] = {}


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-top", type=int, default=0, metavar="N", help="list the N tests that used the most CPU")


def pytest_sessionstart(session: pytest.Session) -> None:
    _start.update(wall=time.monotonic(), own=_cpu(resource.RUSAGE_SELF), children=_cpu(resource.RUSAGE_CHILDREN))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    own, children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    yield
    _per_test[item.nodeid] = (_cpu(resource.RUSAGE_SELF) - own, _cpu(resource.RUSAGE_CHILDREN) - children)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if not _start:
        return
    own = _cpu(resource.RUSAGE_SELF) - _start["own"]
    children = _cpu(resource.RUSAGE_CHILDREN) - _start["children"]
    wall = time.monotonic() - _start["wall"]
    top = config.getoption("--cpu-top")
    if top:
        terminalreporter.write_line(f"the {top} tests that used the most CPU (s: total = own + child processes):")
        ranked = sorted(_per_test.items(), key=lambda kv: -sum(kv[1]))[:top]
        for nodeid, (o, c) in ranked:
            terminalreporter.write_line(f"  {o + c:7.1f} = {o:6.1f} + {c:6.1f}  {nodeid}")
    terminalreporter.write_line(
        f"CPU time: {own + children:.1f} s ({own:.1f} s pytest, {children:.1f} s its child processes) "
        f"in {wall:.1f} s wall, {len(_per_test)} tests"
    )
