"""A WSGI layer that makes optuna-dashboard read-only: the people who watch a study are often not its owners.

optuna-dashboard changes a study only through requests other than GET and HEAD (delete or rename a study,
delete a trial's artifact, edit a note, tell or skip a trial, set user attrs, upload an artifact, migrate
the schema); its GET routes only read (checked against optuna-dashboard 0.21's routes). So every other
method is answered 403 with a reason, which the dashboard's page shows the user as the error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

READ_METHODS = ("GET", "HEAD")
REASON = (
    "this dashboard is read-only: it cannot delete or edit studies, trials, notes or artifacts; "
    "whoever owns the study can start it with `alexsearch dashboard --allow-edits`"
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_only(app: WSGIApp) -> WSGIApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": REASON}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return guarded
