"""The test databases: PostgreSQL throw-away databases, and a fast key-file KDF for tests.

PostgreSQL tests read LABVAULT_TEST_POSTGRES_URL (a server URL; each test gets databases of
its own). Without it they are skipped on a developer machine and fail under CI.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from labvault.crypto.keys import Argon2Params

POSTGRES_URL = os.environ.get("LABVAULT_TEST_POSTGRES_URL")
FAST_KDF = Argon2Params(memory_cost_kib=8 * 1024, iterations=1, lanes=1)


def require_postgres() -> str:
    if not POSTGRES_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("LABVAULT_TEST_POSTGRES_URL must be set under CI")
        pytest.skip("LABVAULT_TEST_POSTGRES_URL not set")
    return POSTGRES_URL


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates throw-away databases on the test server and drops them afterwards."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    def url(self, name: str) -> str:
        return make_url(self.server_url).set(drivername="postgresql+psycopg",
                                             database=name).render_as_string(False)

    def create(self, prefix: str = "lvtest", template: str | None = None) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_libpq(self.server_url), autocommit=True) as conn:
            tpl = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tpl}')
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        with psycopg.connect(_libpq(self.server_url), autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def break_audit_chain(vault) -> None:
    """Make the audit chain refuse every insert, as a database gone away would (a trigger)."""
    with vault._records.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END"))
        else:
            conn.execute(text("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'audit store unavailable'; END $$ "
                              "LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION no_audit()"))


def mend_audit_chain(vault) -> None:
    with vault._records.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER no_audit" + ("" if conn.dialect.name == "sqlite"
                                                     else " ON audit_event")))
