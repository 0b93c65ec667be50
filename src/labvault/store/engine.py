"""Engines for SQLite (embedded default) and PostgreSQL (production), chosen by one URL.

SQLite runs in WAL mode with foreign keys on and ``secure_delete`` on, so a deleted row (an
erased patient's data key) is overwritten on disk instead of lingering in a free page.
Every engine hides SQL parameters from its error messages: a failing statement never prints
the (sealed or not) values it carried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from labvault.errors import StoreError


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str) -> Engine:
    try:
        u = make_url(url)
    except ArgumentError:
        raise StoreError("the database URL is not valid") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = create_engine(u, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        return create_engine(u, hide_parameters=True, pool_pre_ping=True)
    raise StoreError(f"unsupported database backend {backend!r}: use sqlite or postgresql")


SQLITE_CACHE_KIB = 64 * 1024


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    # 64 MiB of page cache per connection (the default is 2 MiB): the random-UUID indexes of a
    # large vault otherwise miss the cache on nearly every insert.
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


@contextmanager
def guarded(action: str) -> Iterator[None]:
    """Turn a driver error into a `StoreError` that names the action and the SQLSTATE only.

    PostgreSQL quotes offending values in its messages (``invalid input syntax ... "..."``);
    those messages must not travel into logs or tracebacks.
    """
    try:
        yield
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        state = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
        kind = type(orig).__name__ if orig is not None else type(exc).__name__
        raise StoreError(f"{action} failed ({kind}{', ' + state if state else ''})") from None


def checkpoint(engine: Engine) -> None:
    """Fold SQLite's WAL into the main file and truncate it (no-op elsewhere)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
