"""The vault's import desk on both backends: exactly-once units, matching, quarantine, erasure.

Units are built straight from synthetic records (one unit per order, as an HL7 v2 export
sends them), so these tests exercise the desk without any parser.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, insert, select

from labvault.access.principal import Principal, Role
from labvault.domain.records import PatientRecord
from labvault.errors import AccessDenied, ConfigurationError, KeyUnavailable
from labvault.ingest.base import Parsed, Position, Rejected
from labvault.store.tables import import_unit, lab_order, quarantine
from labvault.synthetic import SyntheticLab

PLAN = json.dumps({"labvault_plan": 1, "created_at": "2026-03-02T08:30:00+00:00", "created_by": "t",
                   "sources": [{"index": 0, "name": "x.hl7", "format": "hl7v2", "size": 0,
                                "sha256": "", "units": 0}]}).encode()


def units_from(records, name="export.hl7", start=1):
    seq = start - 1
    for rec in records:
        parts = [(o,) for o in rec.orders] or [()]
        for orders in parts:
            seq += 1
            body = f"{rec.patient.id}/{seq}".encode()
            yield Parsed(seq, Position(name, seq), PatientRecord(rec.patient, orders),
                         hashlib.sha256(body).digest(), source_patient_id=rec.patient.id.hex[:10])


@pytest.fixture
def migration(vault, operator, clock):
    mid = uuid.uuid4()
    vault.imports.begin(operator, mid, PLAN, clock.now() + timedelta(days=30))
    return mid


def test_units_are_stored_once_per_patient_and_reconcile(vault, operator, migration):
    records = list(SyntheticLab(3).records(30))
    units = list(units_from(records))
    counts = vault.imports.import_units(operator, migration, 0, units[:40])
    counts += vault.imports.import_units(operator, migration, 0, units[40:])
    assert counts["new"] == 30
    assert counts["new"] + counts["stored"] == len(units)
    assert counts["results"] == sum(r.result_count() for r in records)
    assert vault.count_patients(operator) == 30
    # every order of a patient ended under one patient, in source order
    for rec in records:
        (pid,) = vault.find_patients(operator, nir=rec.patient.nir)
        got = vault.get_record(operator, pid)
        assert [o.lab_file_number for o in got.orders] == [o.lab_file_number for o in rec.orders]
        assert [len(o.results) for o in got.orders] == [len(o.results) for o in rec.orders]
    checks = vault.imports.reconcile(operator, migration, 0, units)
    assert {c.status for c in checks} == {"match"}
    assert vault.imports.progress(operator, migration) == {0: len(units)}


def test_duplicate_units_are_skipped_and_counted(vault, operator, migration):
    units = list(units_from(SyntheticLab(4).records(5)))
    again = [dataclasses.replace(u, seq=len(units) + i + 1) for i, u in enumerate(units[:3])]
    first = vault.imports.import_units(operator, migration, 0, units)
    second = vault.imports.import_units(operator, migration, 0, again)
    assert second["duplicate"] == 3 and second["new"] + second["stored"] == 0
    assert vault.count_patients(operator) == 5
    assert first["new"] == 5
    checks = vault.imports.reconcile(operator, migration, 0, units + again)
    assert [c.status for c in checks] == ["match"] * len(units) + ["duplicate"] * 3


def test_rejected_and_invalid_units_are_quarantined_sealed(vault, operator, migration, settings):
    rec = next(SyntheticLab(5).records(1))
    bad_nir = dataclasses.replace(rec.patient, nir=rec.patient.nir[:-2] + (
        "00" if rec.patient.nir[-2:] != "00" else "01"), ins=None)
    units = [
        Rejected(1, Position("x.hl7", 1, "message 1"), "PID-7", "unknown date format",
                 b"PID|||" + rec.patient.last_name.encode() + b"^" + rec.patient.first_names.encode()),
        Parsed(2, Position("x.hl7", 9), PatientRecord(bad_nir, rec.orders[:1]),
               hashlib.sha256(b"2").digest()),
    ]
    counts = vault.imports.import_units(operator, migration, 0, units)
    assert counts["quarantined"] == 2
    entries = list(vault.imports.quarantine(operator, migration))
    assert [(e.seq, e.field) for e in entries] == [(1, "PID-7"), (2, "patient.nir")]
    assert all(e.raw is None for e in entries)  # no bytes without the permission asking for them
    with_bytes = list(vault.imports.quarantine(operator, migration, with_bytes=True))
    assert rec.patient.last_name.encode() in with_bytes[0].raw.reveal()
    assert rec.patient.last_name not in repr(with_bytes[0])
    # sealed at rest
    with vault._records.engine.connect() as conn:
        raws = [bytes(r.raw.blob) for r in conn.execute(select(quarantine.c.raw))]
    assert all(rec.patient.last_name.encode() not in r for r in raws)
    # a secretary may not read quarantined bytes
    secretary = Principal("s.martin", Role.SECRETARY, "127.0.0.1", "test")
    with pytest.raises(AccessDenied):
        list(vault.imports.quarantine(secretary, migration, with_bytes=True))


def test_identity_conflict_is_quarantined_not_attached(vault, operator, migration):
    rec = next(r for r in SyntheticLab(6).records(10) if len(r.orders) >= 2)
    first, second = list(units_from([rec]))[:2]
    other_birth = dataclasses.replace(rec.patient,
                                      birth_date=rec.patient.birth_date - timedelta(days=400))
    second = dataclasses.replace(second, record=PatientRecord(other_birth, second.record.orders))
    counts = vault.imports.import_units(operator, migration, 0, [first, second])
    assert counts["new"] == 1 and counts["quarantined"] == 1
    (entry,) = vault.imports.quarantine(operator, migration)
    assert entry.field == "patient.birth_date"
    (pid,) = vault.find_patients(operator, nir=rec.patient.nir)
    assert len(vault.get_record(operator, pid).orders) == 1


def test_matching_by_legacy_code_when_there_is_no_nir(vault, operator, migration):
    rec = next(r for r in SyntheticLab(7).records(10) if len(r.orders) >= 2)
    anonymous = dataclasses.replace(rec.patient, nir=None, ins=None)
    units = [dataclasses.replace(u, record=PatientRecord(anonymous, u.record.orders))
             for u in units_from([rec])]
    counts = vault.imports.import_units(operator, migration, 0, units[:1])
    counts += vault.imports.import_units(operator, migration, 0, units[1:])
    assert counts["new"] == 1 and counts["stored"] == len(units) - 1
    assert vault.count_patients(operator) == 1


def test_reconcile_reports_missing_mismatch_and_extra(vault, operator, migration):
    units = list(units_from(SyntheticLab(8).records(6)))
    vault.imports.import_units(operator, migration, 0, units)
    engine = vault._records.engine
    victim = units[2].record.orders[0].id
    with engine.begin() as conn:
        conn.execute(delete(lab_order).where(lab_order.c.id == victim))
        conn.execute(delete(import_unit).where(import_unit.c.seq == 4))
        conn.execute(insert(import_unit).values(
            migration_id=migration, file_index=0, seq=len(units) + 1, outcome="stored",
            created_at=datetime.now(UTC)))
    checks = vault.imports.reconcile(operator, migration, 0, units)
    by_seq = {c.seq: c for c in checks}
    assert by_seq[3].status == "mismatch" and by_seq[3].detail == "orders (count)"
    assert by_seq[4].status == "missing"
    assert sum(c.status == "match" for c in checks) == len(units) - 2
    assert vault.imports.extras(operator, migration, {0: len(units)}) == 1


def test_staging_seals_the_source_and_erasure_destroys_the_key(vault, operator, migration,
                                                               tmp_path):
    source = tmp_path / "export.hpr"
    payload = "P|1||DUPONT^Hélène\r".encode("latin-1") * 10_000
    source.write_bytes(payload)
    sha = hashlib.sha256(payload).digest()
    assert vault.imports.stage(operator, migration, 0, source, sha) is True
    assert vault.imports.stage(operator, migration, 0, source, sha) is False  # idempotent
    area = vault.imports._area(migration)
    (staged,) = area.glob("*.sealed")
    assert b"DUPONT" not in staged.read_bytes()
    with vault.imports.open_staged(operator, migration, 0) as f:
        assert f.read() == payload
    gone = vault.imports.erase(operator, migration)
    assert gone.key_destroyed and gone.files_removed == 1
    assert not area.exists()
    with pytest.raises(KeyUnavailable):
        vault.imports.import_units(operator, migration, 0, [])
    assert vault.imports.info(operator, migration).status == "erased"
    with pytest.raises(ConfigurationError, match="erased"):
        vault.imports.begin(operator, migration, PLAN, datetime.now(UTC))


def test_stage_refuses_a_source_that_changed_since_the_plan(vault, operator, migration, tmp_path):
    source = tmp_path / "export.hl7"
    source.write_bytes(b"MSH|^~\\&|\r")
    with pytest.raises(ConfigurationError, match="changed since the plan"):
        vault.imports.stage(operator, migration, 0, source, hashlib.sha256(b"other").digest())
    assert not list(vault.imports._area(migration).glob("*"))


def test_a_changed_plan_cannot_resume_a_migration(vault, operator, migration, clock):
    with pytest.raises(ConfigurationError, match="plan file changed"):
        vault.imports.begin(operator, migration, b"{}", clock.now())


def test_staging_past_its_deadline_is_erased(vault, operator, migration, clock, tmp_path):
    source = tmp_path / "s.csv"
    source.write_bytes(b"a;b\n")
    vault.imports.stage(operator, migration, 0, source, hashlib.sha256(b"a;b\n").digest())
    assert vault.imports.erase_expired(operator) == []
    clock.advance(timedelta(days=30, seconds=1))
    (gone,) = vault.imports.erase_expired(operator)
    assert gone.migration_id == migration and gone.files_removed == 1
    assert vault.imports.erase_expired(operator) == []
    reports = vault.imports.reports(operator, migration)
    assert reports[-1]["kind"] == "erase" and reports[-1]["body"]["key_destroyed"] is True


def test_key_rotation_rewraps_staging_keys(vault, operator, migration, tmp_path):
    source = tmp_path / "s.txt"
    source.write_bytes(b"staged")
    vault.imports.stage(operator, migration, 0, source, hashlib.sha256(b"staged").digest())
    rotation = vault.rotate_keys(operator)
    assert rotation.retired == (1,)
    vault.imports._staging_keys.clear()
    with vault.imports.open_staged(operator, migration, 0) as f:
        assert f.read() == b"staged"


def test_a_staged_file_tampered_with_does_not_open(vault, operator, migration, tmp_path):
    from labvault.errors import InvalidCiphertext

    source = tmp_path / "s.txt"
    source.write_bytes(b"x" * 5000)
    vault.imports.stage(operator, migration, 0, source, hashlib.sha256(b"x" * 5000).digest())
    (staged,) = vault.imports._area(migration).glob("*.sealed")
    blob = bytearray(staged.read_bytes())
    blob[100] ^= 1
    staged.write_bytes(bytes(blob))
    with pytest.raises(InvalidCiphertext), vault.imports.open_staged(operator, migration, 0) as f:
        io.BufferedReader(f).read()
