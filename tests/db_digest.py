"""A fingerprint of a SQLite database's content, to prove a command left it unchanged."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path


def digest(db: Path) -> str:
    """SHA-256 of the database's SQL dump, read through SQLite (WAL included).

    Not of the file bytes: open()+close() on a database file drops this process's SQLite locks on it
    (sqlite.org/howtocorrupt.html, 2.2), and the bytes also move when SQLite checkpoints its WAL.
    """
    con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()
