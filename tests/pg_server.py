"""A real PostgreSQL server for the tests (and the storage benchmark), started from Debian's server binaries.

`PgServer` runs initdb and pg_ctl in a temporary folder, on a free localhost TCP port, with trust auth for
localhost and a unix socket in that folder. initdb refuses to run as root, so as root the server runs as an
unprivileged user (`postgres` when the package made one, else `nobody`) that owns the folder.

Fixtures: `pg_server` (one server per test session, stopped with `pg_ctl stop -m fast` at the end) and `pg_url`
(a fresh database per test, so tests never share studies).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "postgres"
START_TIMEOUT_S = 60
UNPRIVILEGED_USERS = ("postgres", "nobody")
# Test-only speed-ups: a crash of a throwaway server loses nothing we need.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl, else the ones on PATH; None if neither."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for bindir in found:
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None = this process's user; as root, an existing unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root and none of the users {UNPRIVILEGED_USERS} exists to run PostgreSQL")


class PgServer:
    """One throwaway PostgreSQL cluster. Use as a context manager, or call start() and stop()."""

    def __init__(self, bindir: Path, *, fast: bool = True) -> None:
        self.bindir = bindir
        self.fast = fast
        self.user = server_user()
        # As root, under /tmp whatever TMPDIR says: the server user must reach it, and a socket path must be short.
        self.root = Path(tempfile.mkdtemp(prefix="alexsearch-pg-", dir="/tmp" if self.user else None))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._opts = ""  # the server options of the last start, for start_server() after stop_server()
        self._names = itertools.count()

    def _run(self, *cmd: str, timeout: float = START_TIMEOUT_S) -> None:
        kwargs: dict = {}
        if self.user is not None:
            kwargs = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        env = {**os.environ, "HOME": str(self.root), "LC_ALL": "C"}
        r = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
        if r.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({r.returncode}): {r.stderr.strip()}\n{log}")

    def start(self) -> PgServer:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "max_connections": "200",
            **(FAST_SETTINGS if self.fast else {}),
        }
        for attempt in range(3):  # another process may take the free port between probe and bind
            self.port = free_port()
            self._opts = " ".join(f"-c {k}={v}" for k, v in settings.items()) + f" -p {self.port}"
            try:
                self.start_server()
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def start_server(self) -> None:
        """Start the server of an initialized cluster, on the same port as before."""
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-o",
            self._opts,
            "start",
            timeout=START_TIMEOUT_S + 10,
        )

    def stop_server(self) -> None:
        """Stop the server as an administrator would (fast: open transactions are rolled back and every
        connection is closed), keeping its data for start_server(). For outage tests."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "stop", "-m", "fast")

    def restart(self) -> None:
        """A server restart: stop_server() then start_server()."""
        self.stop_server()
        self.start_server()

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "stop", "-m", "fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin_connection(self, database: str = "postgres"):
        """A psycopg connection in autocommit mode (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database, autocommit=True)

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its name."""
        name = f"{prefix}_{next(self._names)}"
        with self.admin_connection() as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name

    def terminate_backends(self, database: str) -> int:
        """Kill every connection to database (as a server restart or a firewall would). Returns how many."""
        with self.admin_connection() as con:
            rows = con.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)


def missing_reason() -> str | None:
    if find_pg_bin() is None:
        return (
            "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
            "install Debian's postgresql package (.ci/run does)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed; pip install -e '.[postgres]' (make install does)"
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):  # CI installs both; a skip there would hide a broken install step
            pytest.fail(reason)
        pytest.skip(reason)
    bin_dir = find_pg_bin()
    assert bin_dir is not None  # missing_reason() looked for it
    with PgServer(bin_dir) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return pg_server.url(pg_server.create_database())
