"""A real single-node Slurm for the tests, started from Debian's packages (slurmctld slurmd slurm-client munge).

`SlurmCluster` writes a private munge key and a minimal slurm.conf into a temporary folder under /tmp, starts
munged, slurmctld and slurmd on free localhost ports, and waits until `sinfo` shows the node idle. Everything
lives in that folder (state, spool, logs, pid files, the munge socket), so two test sessions on one machine run
two clusters side by side. Clients find the cluster through SLURM_CONF, which the fixture sets for the session;
sbatch copies the environment into each job, so the jobs' own `scontrol` calls reach the same cluster.

The daemons run as root (Slurm needs it to start jobs; CI runs as root). There is no cgroup here, so processes
are tracked by /proc (proctrack/linuxproc) and tasks are not confined (task/none). No accounting daemon either:
`sacct` does not work, finished jobs stay visible to `squeue -t all` for MinJobAge seconds.

Fixture: `slurm_cluster` (one cluster per test session, its jobs cancelled and its daemons stopped at the end).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
PARTITION = "debug"
# Test-only timings, in seconds. A requeued job waits cred_expire + 1 s before it may start again (Slurm's
# default is 120 s); the scheduler looks at pending jobs every sched_interval s (default 60 s); KillWait is the
# time between SIGTERM and SIGKILL when a job is cancelled, requeued or preempted (default 30 s).
CRED_EXPIRE_S = 5
SCHED_INTERVAL_S = 2
KILL_WAIT_S = 10
MIN_JOB_AGE_S = 300  # how long a finished job stays visible to squeue / scontrol show job


def missing_reason() -> str | None:
    missing = [
        name for name in DAEMONS + CLIENTS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()
    ]
    if missing:
        return (
            f"Slurm not installed ({', '.join(missing)} not found); install Debian's "
            "slurmctld slurmd slurm-client munge (.ci/run does)"
        )
    if os.geteuid() != 0:
        return "a test Slurm cluster must run as root (slurmd starts jobs as their user)"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This machine as `slurmd -C` sees it: 'NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105'."""
    out = subprocess.run([_exe("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    return line.strip()


class SlurmCluster:
    """One throwaway Slurm cluster of one node. Use as a context manager, or call start() and stop()."""

    def __init__(self) -> None:
        # Under /tmp whatever TMPDIR says: socket paths must be short.
        self.root = Path(tempfile.mkdtemp(prefix="alexsearch-slurm-", dir="/tmp"))
        self.root.chmod(0o755)  # munged refuses a socket in a folder others cannot enter
        self.conf = self.root / "slurm.conf"
        self.node = ""  # from `slurmd -C`
        self.node_line = ""
        self.partition = PARTITION
        self.ctld_port = 0
        self.slurmd_port = 0
        self._env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- clients ----------------------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (and for anything that submits jobs) to reach this cluster."""
        return dict(self._env)

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        r = subprocess.run(cmd, env=self._env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}\n{self.logs()}")
        return r

    def jobs(self) -> list[tuple[str, str]]:
        """(job id, state) of every job the controller knows, array tasks one per line, finished ones too."""
        out = self.run("squeue", "-h", "-r", "-t", "all", "-o", "%i %T").stdout
        return [tuple(line.split()[:2]) for line in out.splitlines() if line.strip()]

    def live_jobs(self) -> list[tuple[str, str]]:
        """Jobs not yet ended: pending, running, requeued, completing."""
        out = self.run("squeue", "-h", "-r", "-o", "%i %T").stdout
        return [tuple(line.split()[:2]) for line in out.splitlines() if line.strip()]

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.5):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm: {what} not within {timeout} s; jobs: {self.jobs()}\n{self.logs()}")
            time.sleep(poll)

    def logs(self, lines: int = 15) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(parts)

    # --- daemons ----------------------------------------------------------------------------------------------
    def write_conf(self) -> None:
        r = self.root
        settings = {
            "ClusterName": "alexsearch-test",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": self.ctld_port,
            "SlurmdPort": self.slurmd_port,
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={r / 'munge.sock'},cred_expire={CRED_EXPIRE_S}",
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "slurmctld.pid",
            "SlurmdPidFile": r / "slurmd.pid",
            "SlurmctldLogFile": r / "slurmctld.log",
            "SlurmdLogFile": r / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",  # no cgroup in a container; linuxproc follows the /proc tree
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",  # memory is checked against the node but not consumed
            "SchedulerType": "sched/builtin",
            "SchedulerParameters": f"sched_interval={SCHED_INTERVAL_S}",
            "KillWait": KILL_WAIT_S,
            "MinJobAge": MIN_JOB_AGE_S,
            "ReturnToService": 2,
            "InactiveLimit": 0,
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
        }
        lines = [f"{k}={v}" for k, v in settings.items()]
        lines.append(f"{self.node_line} NodeAddr=127.0.0.1 State=UNKNOWN")
        lines.append(f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _daemon(self, *cmd: str) -> None:
        r = subprocess.run(cmd, env=self._env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(
                f"{Path(cmd[0]).name} failed to start ({r.returncode}): {r.stderr.strip()}\n{self.logs()}"
            )

    def _node_state(self) -> str:
        r = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    def start(self) -> SlurmCluster:
        self.node_line = node_line()
        self.node = self.node_line.split()[0].split("=", 1)[1]
        for d in ("state", "spool"):
            (self.root / d).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._daemon(
            _exe("munged"),
            "--force",
            f"--socket={self.root / 'munge.sock'}",
            f"--key-file={key}",
            f"--pid-file={self.root / 'munged.pid'}",
            f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={self.root / 'munged.seed'}",
        )
        for attempt in range(3):  # another process may take a free port between probe and bind
            self.ctld_port, self.slurmd_port = free_port(), free_port()
            self.write_conf()
            try:
                self._daemon(_exe("slurmctld"), "-f", str(self.conf))
                self._daemon(_exe("slurmd"), "-f", str(self.conf))
                self.wait_for(lambda: self._node_state() == "idle", START_TIMEOUT_S, "node idle")
                return self
            except (RuntimeError, TimeoutError):
                self._stop_daemons(("slurmd", "slurmctld"))
                if attempt == 2:
                    raise
        return self

    def cancel_all(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Cancel every job and wait until none is left running or completing."""
        if not self.live_jobs():
            return
        self.run("scancel", "--user", "root", check=False)
        self.wait_for(lambda: not self.live_jobs() or None, timeout, "all jobs ended")

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.root / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _stop_daemons(self, names: tuple[str, ...]) -> None:
        for name in names:
            pid = self._pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        try:
            try:
                self.cancel_all()
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                pass  # stop the daemons anyway
            self._stop_daemons(("slurmd", "slurmctld", "munged"))
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node cluster; SLURM_CONF points at it for the whole session (tests and their jobs)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):  # CI installs Slurm; a skip there would hide a broken install step
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = SlurmCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop()
