"""The migration's safety rules: what is refused, kept, quarantined or left alone, and why."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from labvault import Settings, Vault, ingest
from labvault.domain.records import PatientRecord
from labvault.errors import ConfigurationError, MigrationBusy
from labvault.ingest.base import Parsed, Position
from labvault.migrate import attachments, certificate, make_plan, run, verify
from labvault.synthetic import SyntheticLab
from labvault.vault import imports as desk_module

PLAN = json.dumps({"labvault_plan": 1, "created_at": "2026-03-02T08:30:00+00:00", "created_by": "t",
                   "sources": [{"index": 0, "name": "x.hl7", "format": "hl7v2", "size": 0,
                                "sha256": "", "units": 0}]}).encode()


@pytest.fixture
def embedded(tmp_path, clock):
    v = Vault.init(Settings.embedded(tmp_path / "vault"), clock=clock)
    yield v
    v.close()


def _units(records, start=1):
    seq = start - 1
    for rec in records:
        for order in rec.orders:
            seq += 1
            yield Parsed(seq, Position("x.hl7", seq), PatientRecord(rec.patient, (order,)),
                         hashlib.sha256(f"{seq}".encode()).digest(),
                         source_patient_id=rec.patient.id.hex[:12])


def _begin(vault, operator, clock) -> uuid.UUID:
    mid = uuid.uuid4()
    vault.imports.begin(operator, mid, PLAN, clock.now() + timedelta(days=30))
    return mid


def test_a_symlinked_attachment_is_never_picked_up(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    secret = tmp_path / "master.key"
    secret.write_text("not a report")
    (folder / "CR.txt").symlink_to(secret)
    (folder / "OK.txt").write_text("report")
    source = folder / "results.hpr"
    source.write_text("")
    assert attachments.locate(source, "CR.txt") is None
    assert attachments.locate(source, "../master.key") is None
    assert attachments.locate(source, "OK.txt") == folder.resolve() / "OK.txt"


def test_a_symlinked_source_is_refused_at_staging(embedded, operator, clock, tmp_path) -> None:
    real = tmp_path / "real.hl7"
    real.write_bytes(b"MSH|^~\\&|\r")
    link = tmp_path / "link.hl7"
    link.symlink_to(real)
    mid = _begin(embedded, operator, clock)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        embedded.imports.stage(operator, mid, 0, link, hashlib.sha256(real.read_bytes()).digest())


def test_keys_of_rows_that_committed_are_kept(embedded, operator) -> None:
    rec = next(SyntheticLab(71).records(1))
    embedded.put_patient(operator, rec)
    ghost = uuid.uuid4()
    embedded._keystore.insert_many([dataclasses.replace(embedded._keystore.get(rec.id),
                                                        patient_id=ghost)], rec.patient.birth_date)
    embedded._drop_unused_keys([rec.id, ghost])
    assert embedded._keystore.get(rec.id) is not None  # its rows exist: the key stays
    assert embedded._keystore.get(ghost) is None  # no rows: an unused key goes


def test_an_erased_patient_is_not_matched_again_even_when_cached(embedded, operator,
                                                                  clock) -> None:
    rec = next(r for r in SyntheticLab(72).records(20) if len(r.orders) >= 2)
    anonymous = PatientRecord(dataclasses.replace(rec.patient, nir=None, ins=None), rec.orders)
    first, second = list(_units([anonymous]))[:2]
    mid = _begin(embedded, operator, clock)
    embedded.imports.import_units(operator, mid, 0, [first])
    (pid,) = [p for p in embedded._records.live([first.record.patient.id])]
    embedded.erase_patient(operator, pid)
    counts = embedded.imports.import_units(operator, mid, 0, [second])
    assert counts["quarantined"] == 1
    assert embedded.count_patients(operator) == 0


def test_a_batch_larger_than_the_patient_cache(embedded, operator, clock, monkeypatch) -> None:
    monkeypatch.setattr(desk_module, "_CACHE", 2)
    records = [r for r in SyntheticLab(73).records(30) if len(r.orders) >= 2][:6]
    units = list(_units(records))
    mid = _begin(embedded, operator, clock)
    counts = embedded.imports.import_units(operator, mid, 0, units)
    assert counts["new"] == 6 and counts["stored"] == len(units) - 6
    checks = embedded.imports.reconcile(operator, mid, 0, units)
    assert {c.status for c in checks} == {"match"}
    for rec in records:
        (pid,) = embedded.find_patients(operator, nir=rec.patient.nir)
        positions = [o.lab_file_number for o in embedded.get_record(operator, pid).orders]
        assert positions == [o.lab_file_number for o in rec.orders]


def _migrated(vault, operator, clock, tmp_path, n=8):
    records = list(SyntheticLab(74).records(n))
    source = tmp_path / "export.hl7"
    with source.open("wb") as f:
        ingest.writer_for("hl7v2")(records, f)
    plan = make_plan([source], created_by="t", now=clock.now())
    plan_path = tmp_path / "plan.json"
    plan.write(plan_path)
    run(vault, operator, plan_path)
    return records, plan, plan_path


def test_verification_after_a_patients_erasure_is_still_complete(embedded, operator, clock,
                                                                 tmp_path) -> None:
    records, _, plan_path = _migrated(embedded, operator, clock, tmp_path)
    (pid,) = embedded.find_patients(operator, nir=records[0].patient.nir)
    embedded.erase_patient(operator, pid)
    report = verify(embedded, operator, plan_path)
    assert report.complete
    assert report.count("erased_since") == len(records[0].orders)


def test_a_verification_that_skips_units_is_not_complete(embedded, operator, clock,
                                                         tmp_path) -> None:
    _, plan, plan_path = _migrated(embedded, operator, clock, tmp_path)
    session = embedded.imports.verification(operator, plan.migration_id)
    with embedded.imports.open_staged(operator, plan.migration_id, 0) as f:
        units = list(ingest.reader_for("hl7v2")(f, "export.hl7"))
    session.check(0, units[:-1])  # the last unit is never compared
    report = session.finish()
    assert report["mismatch"] == 0 and not report["covered"] and not report["complete"]
    assert not hasattr(embedded.imports, "sign")  # nothing signs a caller's bytes
    doc = certificate.build(embedded, operator, plan_path, clock.now())
    assert doc["certificate"]["reconciliation"]["complete"] is False


def test_expiry_leaves_a_running_migration_alone(embedded, operator, clock, tmp_path) -> None:
    _, plan, _ = _migrated(embedded, operator, clock, tmp_path)
    clock.advance(timedelta(days=31))
    with embedded.imports.exclusive(plan.migration_id):
        assert embedded.imports.erase_expired(operator) == []
        with pytest.raises(MigrationBusy):
            embedded.imports.erase(operator, plan.migration_id)
    (gone,) = embedded.imports.erase_expired(operator)
    assert gone.migration_id == plan.migration_id
    with pytest.raises(ConfigurationError, match="erased"):
        embedded.imports.set_status(operator, plan.migration_id, "imported")


def test_a_changed_csv_mapping_is_refused(embedded, operator, clock, tmp_path) -> None:
    from labvault.ingest import csv_mapping

    mapping = tmp_path / "mapping.toml"
    mapping.write_bytes(Path(csv_mapping.__file__).with_name("mappings")
                        .joinpath("labvault-flat.toml").read_bytes())
    source = tmp_path / "export.csv"
    with source.open("wb") as f:
        ingest.writer_for("csv")(list(SyntheticLab(75).records(3)), f)
    plan = make_plan([source], created_by="t", now=clock.now(), mapping=mapping)
    plan_path = tmp_path / "plan.json"
    plan.write(plan_path)
    with mapping.open("a") as f:
        f.write("\n# edited\n")
    with pytest.raises(ConfigurationError, match="mapping"):
        run(embedded, operator, plan_path)


def test_too_many_sources_or_staging_days_are_refused(tmp_path, clock) -> None:
    with pytest.raises(ConfigurationError, match="staging days"):
        make_plan([], created_by="t", now=clock.now(), staging_days=0)
