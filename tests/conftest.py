"""Shared fixtures: every vault test runs on SQLite and on PostgreSQL.

PostgreSQL tests read LABVAULT_TEST_POSTGRES_URL (a server URL; each test gets databases of
its own). Without it they are skipped on a developer machine and fail under CI.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api_support import PASSWORD, Login, enrol
from db_support import PostgresDatabases, require_postgres
from labvault import FixedClock, Settings, Vault, local_operator
from labvault.access.permissions import Permission
from labvault.access.principal import Role
from labvault.api import ApiConfig, create_app
from labvault.store import schema
from labvault.store.engine import make_engine
from labvault.synthetic import SyntheticLab


@pytest.fixture
def pg() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases(require_postgres())
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def pg_schema_templates() -> Iterator[tuple[str, str]]:
    """A data and a keys database at the current schema, migrated once per session: each test's
    databases are copies (CREATE DATABASE ... TEMPLATE), so its vault opens on a schema already
    at head instead of running every migration again. What the vault then writes is the test's."""
    dbs = PostgresDatabases(require_postgres())
    try:
        data = dbs.create(prefix="lvtpl")
        keys = dbs.create(prefix=f"{data}_keys")
        for name, which in ((data, "data"), (keys, "keys")):
            engine = make_engine(dbs.url(name))
            try:
                schema.upgrade(engine, which)
            finally:
                engine.dispose()  # a template must have no connection when it is copied
        yield data, keys
    finally:
        dbs.drop_all()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, tmp_path, request: pytest.FixtureRequest) -> Settings:
    data_dir = tmp_path / "vault"
    if backend == "sqlite":
        return Settings.embedded(data_dir)
    dbs: PostgresDatabases = request.getfixturevalue("pg")
    data_template, keys_template = request.getfixturevalue("pg_schema_templates")
    data = dbs.create(template=data_template)
    keys = dbs.create(prefix=f"{data}_keys", template=keys_template)
    return Settings(data_dir, dbs.url(data), dbs.url(keys), data_dir / "master.key")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 2, 8, 30, tzinfo=UTC))


@pytest.fixture
def vault(settings: Settings, clock: FixedClock) -> Iterator[Vault]:
    v = Vault.init(settings, clock=clock)
    yield v
    v.close()


@pytest.fixture
def operator():
    return local_operator("automated test")


# -- the HTTP API: the app in-process and real accounts enrolled through the account service --
@pytest.fixture
def records(vault: Vault, operator):
    recs = list(SyntheticLab(seed=11, results_per_patient=3).records(6))
    vault.put_patients(operator, recs)
    return recs


@pytest.fixture
def client(vault: Vault) -> Iterator[TestClient]:
    app = create_app(vault, ApiConfig(docs=True))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def login(vault: Vault, operator, clock: FixedClock, client: TestClient
          ) -> Callable[..., Login]:
    """Enrol an account of a role and log it in through the API (password, then TOTP)."""

    def make(role: Role, patient_id: uuid.UUID | None = None) -> Login:
        account_id, email, totp = enrol(vault, operator, clock, role, patient_id=patient_id)
        r = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        r = client.post("/auth/mfa", json={"challenge": r.json()["challenge"],
                                           "code": totp.at(clock.now())})
        assert r.status_code == 200, r.text
        clock.advance(timedelta(seconds=31))
        return Login(account_id, email, totp, r.json()["token"], role)

    return make


@pytest.fixture
def service_token(vault: Vault, operator) -> Callable[[list[Permission]], str]:
    def make(scopes: list[Permission], days: int = 30) -> str:
        account_id, _ = vault.accounts.create_account(
            operator, email=f"svc-{uuid.uuid4().hex[:8]}@lab.example",
            display_name="Analyser gateway", roles=[Role.SERVICE])
        _, token = vault.accounts.issue_token(operator, account_id, scopes=scopes,
                                              ttl=timedelta(days=days), label="gateway")
        return token.reveal()

    return make
