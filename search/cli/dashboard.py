"""`alexsearch dashboard`: serve optuna-dashboard for a study's database and its artifact store.

The dashboard reads the same database the workers write, so new trials and each epoch's validation
accuracy show up as they land. It never creates a database (a typo gets an error), serves read-only
unless --allow-edits (search/read_only.py), and binds to localhost unless asked otherwise: with edits
on, anyone who reaches it can delete studies, so it should not face a network without a tunnel in front
of it (see the README's SSH port forwarding).
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.cli.args import add_storage_args
from search.errors import UsageError
from search.read_only import read_only

HELP = "serve optuna-dashboard for the study (live trials, curves, notes, best-trial artifacts)"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ThreadedWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request: the page loads many files and polls the API at the same time."""

    daemon_threads = True


class ThreadedWSGIServer6(ThreadedWSGIServer):
    address_family = socket.AF_INET6


class QuietHandler(WSGIRequestHandler):
    """wsgiref logs every request, and the page polls every few seconds; keep the terminal readable."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help=HELP, description=HELP)
    add_storage_args(p)
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"default: {DEFAULT_PORT}; 0 = any free port (the printed URL shows which)",
    )
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface to bind (default: {DEFAULT_HOST}, this machine only; "
        "0.0.0.0 exposes the dashboard to the network)",
    )
    p.add_argument(
        "--artifacts",
        default=None,
        help="artifact folder (default: next to a SQLite database, e.g. study.db -> study-artifacts/)",
    )
    p.add_argument(
        "--allow-edits",
        action="store_true",
        help="let the dashboard delete and rename studies, edit notes, tell trials and delete artifacts "
        "(default: read-only; every such request is refused with 403)",
    )
    p.set_defaults(run=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to a public interface


def bind(host: str, port: int, app) -> WSGIServer:
    """The server, bound now so a taken port or a bad host is a one-line error before anything prints."""
    try:
        server_class = ThreadedWSGIServer6 if ":" in host else ThreadedWSGIServer
        return make_server(host, port, app, server_class=server_class, handler_class=QuietHandler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"--port: port {port} on {host} is already in use; pick another with --port") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise UsageError(f"--port: not allowed to bind port {port} (ports below 1024 need root)") from None
        if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host: cannot bind {host!r} (not an address of this machine)") from None
        raise UsageError(f"--host/--port: cannot bind {host}:{port} ({e.strerror or e})") from None


def make_app(url: str, artifacts: str | None, storage=None):
    """optuna-dashboard's WSGI app on the study database, through Optuna's trial cache.

    The page polls the study every few seconds and the dashboard re-reads every trial once its own cache
    expires (10 s at 500 trials and more): 28 s a poll at 10,000 trials on a plain RDBStorage. Optuna's
    _CachedStorage, which workers use too, keeps finished trials (which never change) and re-reads only
    the running ones and the new ones.
    """
    import optuna_dashboard

    from storage.artifacts import artifact_dir, artifact_store
    from storage.optuna_private import cached
    from storage.study import open_storage

    storage = storage or open_storage(url, create=False)
    return optuna_dashboard.wsgi(cached(storage), artifact_store=artifact_store(artifact_dir(url, artifacts)))


def run(args: argparse.Namespace) -> int:
    from storage.study import load_study, open_storage, quiet_optuna, study_names
    from storage.url import redact

    quiet_optuna()
    storage = open_storage(args.storage, create=False)  # fails on a missing database instead of creating one
    # With several studies and no --study, the dashboard opens on its list of studies.
    study = load_study(storage, args.study) if args.study or len(study_names(storage)) == 1 else None
    app = make_app(args.storage, args.artifacts, storage)
    server = bind(args.host, args.port, app if args.allow_edits else read_only(app))
    if not is_loopback(args.host):
        can = "read, edit and delete" if args.allow_edits else "read"
        print(
            f"alexsearch dashboard: warning: binding {args.host}, so anyone who can reach this machine can "
            f"{can} the study; prefer the default 127.0.0.1 with an SSH tunnel",
            file=sys.stderr,
        )
    shown = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{server.server_port}/dashboard"
    if study is not None:
        url += f"/studies/{storage.get_study_id_from_name(study.study_name)}"
    print(
        f"dashboard for {redact(args.storage)}" + (f", study {study.study_name!r}" if study else "") + f": {url}",
        flush=True,
    )
    mode = "edits allowed" if args.allow_edits else "read-only (--allow-edits to edit)"
    print(f"{mode}; press Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("alexsearch dashboard: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
