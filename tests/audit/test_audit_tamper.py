"""Tamper evidence of the stored audit log, on SQLite and PostgreSQL.

A log of 10,000 events is written once per backend through the real `ChainedAuditLog` (real
vault calls first, then `append_many`), its checkpoints exported; every test tampers with a
fresh copy of the database by SQL, as someone with write access to it would, and `verify`
(the vault's desk, and the ``labvault audit verify`` command) must name the first position
and the kind of the change.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from labvault import FixedClock, Settings, Vault, local_operator
from labvault.audit.chain import CHECKPOINT, EPOCH, ChainWriter, TamperDetected, evolve
from labvault.audit.log import BODY_VERSION
from labvault.audit.sink import AuditEvent
from labvault.cli import app
from labvault.secret import Secret
from labvault.store.engine import make_engine
from labvault.synthetic import SyntheticLab
from labvault.vault.audit import VERIFIER_FILE, CheckpointExport, read_verifier_key

N = 10_000
TOTAL = N + 1  # and the checkpoint export's own event
START = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


class PostgresDatabases:
    """Throw-away databases on the test server for this module (dropped at its end)."""

    def __init__(self) -> None:
        server = os.environ.get("LABVAULT_TEST_POSTGRES_URL")
        if not server:
            if os.environ.get("CI") == "true":
                pytest.fail("LABVAULT_TEST_POSTGRES_URL must be set under CI")
            pytest.skip("LABVAULT_TEST_POSTGRES_URL not set")
        self.server = make_url(server)
        self.created: list[str] = []

    def _admin(self) -> psycopg.Connection:
        libpq = self.server.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(libpq, autocommit=True)

    def url(self, name: str) -> str:
        return self.server.set(drivername="postgresql+psycopg",
                               database=name).render_as_string(False)

    def create(self, prefix: str = "lvaudit", template: str | None = None) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template
                                                         else ""))
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Stored:
    backend: str
    settings: Settings
    dbs: PostgresDatabases | None
    export: dict
    patients: list[uuid.UUID]


def _events(first: int, count: int, patients: list[uuid.UUID]) -> list[AuditEvent]:
    return [AuditEvent(START + timedelta(seconds=i), f"biologist:{i % 40}", "biologist",
                       f"10.0.{i % 7}.{i % 200}", "result review", "vault:result:read",
                       "denied" if i % 97 == 0 else "allowed", (patients[i % len(patients)],),
                       {"n": i}, uuid.uuid4().hex, ("orders", "results"))
            for i in range(first, first + count)]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def stored(request, tmp_path_factory) -> Iterator[Stored]:
    base = tmp_path_factory.mktemp(f"audit-{request.param}") / "vault"
    dbs = None
    if request.param == "sqlite":
        settings = Settings.embedded(base)
    else:
        dbs = PostgresDatabases()
        data = dbs.create()
        settings = Settings(base, dbs.url(data), dbs.url(dbs.create(prefix=f"{data}_keys")),
                            base / "master.key")
    clock = FixedClock(START)
    vault = Vault.init(settings, clock=clock)
    try:
        operator = local_operator("automated test")
        records = list(SyntheticLab(11).records(6))
        vault.put_patients(operator, records)
        for r in records[:3]:
            vault.get_record(operator, r.id)
        chain = vault._audit.chain
        patients = [r.id for r in records]
        done = chain.head().seq
        while done < N:
            batch = min(2_000, N - done)
            chain.append_many(_events(done, batch, patients))
            done += batch
        assert chain.head().seq == N
        export = vault.audit_log.checkpoints(operator).to_json()
    finally:
        vault.close()
    yield Stored(request.param, settings, dbs, export, patients)
    if dbs is not None:
        dbs.drop_all()


@dataclass
class Copy:
    settings: Settings
    engine: Engine
    k0: Secret[bytes]
    export: CheckpointExport
    export_file: Path


@pytest.fixture
def log(stored: Stored, tmp_path) -> Iterator[Copy]:
    data_dir = tmp_path / "vault"
    shutil.copytree(stored.settings.data_dir, data_dir)
    if stored.dbs is None:
        settings = Settings.embedded(data_dir)
    else:
        name = stored.dbs.create(template=stored.settings.database_url.rsplit("/", 1)[1])
        settings = Settings(data_dir, stored.dbs.url(name), stored.settings.keystore_url,
                            data_dir / "master.key")
    settings.save()
    export_file = tmp_path / "checkpoints.json"
    export_file.write_text(json.dumps(stored.export))
    engine = make_engine(settings.database_url)
    yield Copy(settings, engine, read_verifier_key(data_dir / VERIFIER_FILE),
               CheckpointExport.from_json(stored.export), export_file)
    engine.dispose()


def sql(copy: Copy, statement: str, **params) -> None:
    with copy.engine.begin() as conn:
        conn.execute(text(statement), params)


def verify(copy: Copy, key: bool = True, checkpoints: bool = True, **kw):
    vault = Vault.open(copy.settings, clock=FixedClock(START + timedelta(days=1)))
    try:
        return vault.audit_log.verify(local_operator("automated test"),
                                      copy.k0 if key else None,
                                      checkpoints=copy.export if checkpoints else None, **kw)
    finally:
        vault.close()


def expect(copy: Copy, position: int, kind: str, **kw) -> None:
    with pytest.raises(TamperDetected) as caught:
        verify(copy, **kw)
    assert (caught.value.position, caught.value.kind) == (position, kind)
    out = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(copy.settings.data_dir),
                                   "--key", str(copy.settings.data_dir / VERIFIER_FILE),
                                   "--checkpoints", str(copy.export_file)])
    assert out.exit_code == 1
    assert f"at event {position} ({kind})" in " ".join(out.output.split())


def test_the_intact_log_verifies_with_and_without_the_key(log: Copy) -> None:
    report = verify(log)
    assert (report.checked, report.tags_checked) == (TOTAL, True)
    assert report.checkpoints == N // CHECKPOINT == report.exported_checkpoints
    assert verify(log, key=False).tags_checked is False
    part = verify(log, start=EPOCH + 5, end=3 * CHECKPOINT // 2)
    assert (part.checked, part.checkpoints) == (3 * CHECKPOINT // 2 - EPOCH - 4, 0)
    out = CliRunner().invoke(app, ["audit", "verify", "--data-dir", str(log.settings.data_dir),
                                   "--key", str(log.settings.data_dir / VERIFIER_FILE)])
    assert out.exit_code == 0
    assert "audit log intact" in out.output


COLUMNS = {  # column -> a one-character change of its stored value, in SQL
    "actor": "substr(actor, 1, 3) || 'X' || substr(actor, 5)",
    "role": "'biologisT'",
    "source": "'10.0.0.9'",
    "purpose": "purpose || '.'",
    "action": "'vault:result:reaD'",
    "outcome": "'allowed '",
    "patient_ids": "replace(patient_ids, '\"]', 'f\"]')",
    "detail": "'{\"n\": 1}'",
    "request_id": "'z' || substr(request_id, 2)",
    "categories": "'orders,result'",
}


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_one_changed_column_is_found_at_its_event(log: Copy, column: str) -> None:
    position = 4_321
    sql(log, f"UPDATE audit_event SET {column} = {COLUMNS[column]} WHERE seq = :s", s=position)
    expect(log, position, "modified")


def test_a_changed_time_hash_or_tag_is_found(log: Copy) -> None:
    sql(log, "UPDATE audit_event SET at = :at WHERE seq = 17", at=START + timedelta(hours=1))
    expect(log, 17, "modified")


@pytest.mark.parametrize(("column", "kind"), [("hash", "modified"), ("tag", "forged")])
def test_a_flipped_byte_of_the_hash_or_tag(log: Copy, column: str, kind: str) -> None:
    with log.engine.connect() as conn:
        value = bytearray(conn.execute(text(f"SELECT {column} FROM audit_event WHERE seq = 9000"))
                          .scalar())
    value[5] ^= 0x01
    sql(log, f"UPDATE audit_event SET {column} = :v WHERE seq = 9000", v=bytes(value))
    expect(log, 9000, kind)


def test_a_deleted_event_is_found(log: Copy) -> None:
    sql(log, "DELETE FROM audit_event WHERE seq = 2500")
    expect(log, 2500, "deleted")


def test_an_inserted_event_is_found(log: Copy) -> None:
    """Made to fit: later events moved up one place, the fake one hashed correctly."""
    with log.engine.connect() as conn:
        prev = conn.execute(text("SELECT hash FROM audit_event WHERE seq = 1999")).scalar()
    sql(log, "UPDATE audit_event SET seq = -seq WHERE seq >= 2000")
    sql(log, "UPDATE audit_event SET seq = 1 - seq WHERE seq < 0")
    fake = (AuditEvent(START, "biologist:1", "biologist", "10.0.0.1", "result review",
                       "vault:result:read", "allowed"))
    from labvault.audit.log import body_of, columns_of

    values = columns_of(fake)
    h = ChainWriter(Secret(b"\0" * 32), seq=1999, last_hash=prev).append(body_of(values))[0].hash
    sql(log, "INSERT INTO audit_event (at, actor, role, source, purpose, action, outcome, "
             "patient_ids, seq, hash, tag) VALUES (:at, :actor, :role, :source, :purpose, "
             ":action, :outcome, :patient_ids, 2000, :h, :h)",
        **{k: v for k, v in values.items() if k not in ("detail", "request_id", "categories")},
        h=h)
    expect(log, 2000, "inserted")


def test_an_event_without_a_position_is_found(log: Copy) -> None:
    sql(log, "INSERT INTO audit_event (at, actor, role, source, purpose, action, outcome, "
             "patient_ids) VALUES (:at, 'x', 'y', 'z', 'w', 'v', 'allowed', '[]')", at=START)
    expect(log, TOTAL + 1, "inserted")


def test_two_swapped_events_are_found(log: Copy) -> None:
    sql(log, "UPDATE audit_event SET seq = -1 WHERE seq = 1200")
    sql(log, "UPDATE audit_event SET seq = 1200 WHERE seq = 6100")
    sql(log, "UPDATE audit_event SET seq = 6100 WHERE seq = -1")
    expect(log, 1200, "reordered")


def test_truncation_after_a_checkpoint_is_found_with_the_exported_copy(log: Copy) -> None:
    cut = CHECKPOINT
    sql(log, "DELETE FROM audit_event WHERE seq > :c", c=cut)
    sql(log, "DELETE FROM audit_checkpoint WHERE last > :c", c=cut)
    with log.engine.connect() as conn:
        last = conn.execute(text("SELECT hash FROM audit_event WHERE seq = :c"), {"c": cut}).scalar()
    sql(log, "UPDATE audit_head SET seq = :c, last_hash = :h", c=cut, h=last)
    # Without the exported copy, the log looks whole: that is what the copy is for.
    assert verify(log, checkpoints=False).checked == cut
    expect(log, cut + 1, "truncated")


def test_the_past_rewritten_with_the_stolen_current_key_is_found(log: Copy) -> None:
    """The thief holds the key file (master key and signing key): they unwrap today's epoch
    key, rewrite event 10, re-chain and re-tag everything after it, re-sign the checkpoints
    and move the head. Only k0 and the exported checkpoints still tell."""
    vault = Vault.open(log.settings, clock=FixedClock(START))
    try:
        chain = vault._audit.chain
        head = chain.head()
        with log.engine.connect() as conn:
            wrapped = conn.execute(text("SELECT epoch_key FROM audit_head")).scalar()
        today = chain._epoch_key(head.kek_version, bytes(wrapped), (head.seq - 1) // EPOCH)
        assert today.reveal() != log.k0.reveal()
        expected = log.k0.reveal()
        for _ in range((head.seq - 1) // EPOCH):
            expected = evolve(expected)
        assert today.reveal() == expected  # the stored key is indeed today's
        position = 10
        sql(log, "UPDATE audit_event SET outcome = 'denied' WHERE seq = :p", p=position)
        events = list(chain.iter_chained(position))
        writer = ChainWriter(today, seq=position - 1, last_hash=chain.stored_hash(position - 1),
                             signer=chain._signer)
        with log.engine.begin() as conn:
            for ev in events:
                new, _ = writer.append(ev.body)
                conn.execute(text("UPDATE audit_event SET hash = :h, tag = :t WHERE seq = :s"),
                             {"h": new.hash, "t": new.tag, "s": ev.seq})
            conn.execute(text("UPDATE audit_head SET last_hash = :h"), {"h": writer.last_hash})
        assert events[0].body.startswith(BODY_VERSION.encode())
    finally:
        vault.close()
    with pytest.raises(TamperDetected) as caught:
        verify(log, checkpoints=False)  # k0: the old epoch's tag cannot be made any more
    assert (caught.value.position, caught.value.kind) == (position, "forged")
    with pytest.raises(TamperDetected) as caught:
        verify(log, key=False)  # without k0, the exported checkpoint still disagrees
    assert (caught.value.position, caught.value.kind) == (1, "checkpoint")
    expect(log, position, "forged")


# -- the patient index behind who-read reports ---------------------------------------------------
def _pid(copy: Copy, patient: uuid.UUID):
    return patient.hex if copy.engine.dialect.name == "sqlite" else patient


def _named(copy: Copy, seq: int) -> uuid.UUID:
    with copy.engine.connect() as conn:
        ids = conn.execute(text("SELECT patient_ids FROM audit_event WHERE seq = :s"),
                           {"s": seq}).scalar()
    return uuid.UUID(json.loads(ids)[0])


def who_read(copy: Copy, patient: uuid.UUID) -> list[int]:
    vault = Vault.open(copy.settings, clock=FixedClock(START + timedelta(days=1)))
    try:
        return [a.seq for a in vault.audit_log.who_read(local_operator("automated test"),
                                                        patient)]
    finally:
        vault.close()


def test_a_deleted_index_row_is_found(log: Copy) -> None:
    """A biologist's read hidden from the who-read report, the log itself untouched."""
    position = 5_003
    patient = _named(log, position)
    assert position in who_read(log, patient)
    sql(log, "DELETE FROM audit_event_patient WHERE seq = :s", s=position)
    assert position not in who_read(log, patient)
    expect(log, position, "index")
    with pytest.raises(TamperDetected) as caught:
        verify(log, key=False, checkpoints=False)
    assert (caught.value.position, caught.value.kind) == (position, "index")
    part = verify(log, start=position + 1)  # the range leaves the event out
    assert part.checked == part.last - position


def test_an_added_or_altered_index_row_is_found(log: Copy, stored: Stored) -> None:
    other = next(p for p in stored.patients if p != _named(log, 7_001))
    sql(log, "UPDATE audit_event_patient SET patient_id = :p WHERE seq = 7001",
        p=_pid(log, other))
    sql(log, "INSERT INTO audit_event_patient (patient_id, seq) VALUES (:p, 8001)",
        p=_pid(log, next(p for p in stored.patients if p != _named(log, 8_001))))
    expect(log, 7_001, "index")
    # who-read checks what the index gives against the event's own chained patient ids.
    with pytest.raises(TamperDetected) as caught:
        who_read(log, other)
    assert (caught.value.position, caught.value.kind) == (7_001, "index")


def test_the_first_difference_is_named_index_or_chain(log: Copy) -> None:
    sql(log, "DELETE FROM audit_event_patient WHERE seq = 3001")
    sql(log, "UPDATE audit_event SET purpose = 'x' WHERE seq = 4001")
    expect(log, 3_001, "index")
    sql(log, "UPDATE audit_event SET purpose = 'y' WHERE seq = 2001")
    expect(log, 2_001, "modified")
