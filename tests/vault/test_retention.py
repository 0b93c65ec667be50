"""Retention on SQLite and PostgreSQL, with a fixed clock: records past their term are
crypto-shredded (the patient re-keyed, the old data key gone from the key store, so a copy of
the database taken before cannot open them), inactive patients and old staging areas erased,
a signed certificate lists them; a dry run changes nothing; the schedule runs once a day."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from sqlalchemy import select, update
from typer.testing import CliRunner

from labvault import AccessDenied, InvalidCiphertext, KeyUnavailable, Principal, Role
from labvault.access.permissions import Permission
from labvault.crypto.envelope import Sealed, dek_context, pending_key_context, staging_key_context
from labvault.crypto.signing import public_pem
from labvault.domain.records import Attachment, Comment, Order, Patient, PatientRecord, Result, Sex
from labvault.errors import MigrationBusy, StepUpRequired, StoreError
from labvault.retention_commands import RetentionSchedule, retention_app
from labvault.store.tables import (
    SealedBytes,
    attachment,
    comment,
    data_key,
    erasure_certificate,
    lab_order,
    patient,
    patient_site,
    pending_data_key,
    result,
    staging_key,
)
from labvault.vault.core import _result_ref
from labvault.vault.retention import RetentionDesk
from labvault.vault.retention_policy import RetentionPolicy, check

FINESS, OLD_FINESS = "750000010", "750000028"
OLD = datetime(2012, 5, 4, 9, 0, tzinfo=UTC)  # past every ten-year term on 2026-04-02
RECENT = datetime(2025, 6, 1, 7, 45, tzinfo=UTC)
POLICY = RetentionPolicy()
TABLES = (patient, lab_order, result, comment, attachment)


def person(last: str, born: date) -> Patient:
    return Patient(last_name=last, first_names="Zéphyrine", birth_date=born, sex=Sex.FEMALE)


def order(at: datetime, finess: str = FINESS, results: int = 2, report: bool = False) -> Order:
    res = tuple(Result("LN", f"2345{i}-7", f"Ferritine-Quokka-{i}", f"{812 + i}.5", unit="µg/L",
                       observed_at=at, comments=(Comment(f"Hémolyse-Wombat-{i}"),),
                       attachments=(Attachment("cr-quokka.pdf", "application/pdf",
                                               b"%PDF-quokka" * 20),) if report and i == 0 else ())
                for i in range(results))
    return Order(lab_finess=finess, sampled_at=at, requested_at=at, lab_file_number="F-881",
                 results=res, comments=(Comment("Jeûne-Ornithorynque"),))


@pytest.fixture
def lab(vault, operator, clock):
    recs = {
        "active": PatientRecord(person("Vasquez-Tumulte", date(1970, 1, 2)),
                                (order(OLD, OLD_FINESS, report=True), order(RECENT, results=1))),
        "inactive": PatientRecord(person("Orbigny-Luth", date(1960, 3, 4)), (order(OLD),)),
        "minor": PatientRecord(person("Quillard-Ebbe", date(2010, 7, 8)), (order(OLD),)),
        "fresh": PatientRecord(person("Morvandiau-Kiss", date(1990, 9, 9)), (order(RECENT),)),
    }
    vault.put_patients(operator, list(recs.values()))
    migration = uuid.uuid4()
    vault.imports.begin(operator, migration, b'{"created_at": "x", "created_by": "t", '
                        b'"sources": []}', clock.now() + timedelta(days=60))
    clock.advance(timedelta(days=31))  # the staging area is past staging_days, not its deadline
    active = recs["active"]  # findings sealed on a kept result, as the storage path does
    pid = active.id
    cipher = vault._cipher_for(pid, vault._keystore.get(pid))
    with vault._records.engine.begin() as conn:
        pos = conn.execute(select(result.c.position).where(result.c.id == active.orders[1]
                                                           .results[0].id)).scalar_one()
        ref = _result_ref(active.orders[1].results[0].id, pid, active.orders[1].id, pos)
        conn.execute(update(result).where(result.c.id == active.orders[1].results[0].id).values(
            findings=stored(cipher.seal("result", "findings", ref, b"\x05\x00"))))
    return recs, migration


def stored(sealed: Sealed) -> Sealed | bytes:
    """``findings`` as its column takes it (sealed bytes, or a `SealedBytes` column)."""
    return sealed if isinstance(result.c.findings.type, SealedBytes) else sealed.blob


def as_sealed(value: Sealed | bytes) -> Sealed:
    return value if isinstance(value, Sealed) else Sealed(value)


def snapshot(vault) -> dict[str, list]:
    out = {}
    with vault._records.engine.connect() as conn:
        for t in (*TABLES, patient_site, erasure_certificate):
            out[t.name] = sorted(map(tuple, conn.execute(select(t))), key=repr)
    with vault._keystore.engine.connect() as conn:
        for t in (data_key, staging_key, pending_data_key):
            out[t.name] = sorted(map(tuple, conn.execute(select(t))), key=repr)
    return out


def expired_ids(rec: PatientRecord) -> dict[str, set[str]]:
    o = rec.orders[0]
    return {"orders": {str(o.id)}, "results": {str(r.id) for r in o.results},
            "comments": {str(c.id) for c in o.comments} | {str(c.id) for r in o.results
                                                          for c in r.comments},
            "attachments": {str(a.id) for r in o.results for a in r.attachments}}


def test_dry_run_then_run_crypto_shreds_expired_records_with_a_certificate(vault, operator, lab,
                                                                   backend, settings, tmp_path):
    recs, migration = lab
    active, pid = recs["active"], recs["active"].id
    # A dry run lists what would go (internal ids, counts) and changes nothing.
    before = snapshot(vault)
    dry = RetentionDesk(vault).run(operator, POLICY, dry_run=True)
    assert dry.dry_run and dry.certificate_id is None
    plan = dry.plan.as_dict()
    assert plan["patients"] == [str(recs["inactive"].id)]
    (records,) = plan["records"]
    assert records["patient"] == str(pid)
    assert {k: set(records[k]) for k in expired_ids(active)} == expired_ids(active)
    assert plan["staging"] == [str(migration)]
    assert plan["counts"] == {"patients": 1, "rekeyed_patients": 1, "orders": 1, "results": 2,
                              "comments": 3, "attachments": 1, "staging_areas": 1,
                              "unreadable": 0, "unclassified_results": 0}
    assert snapshot(vault) == before
    assert "Vasquez" not in json.dumps(plan) and "812.5" not in json.dumps(plan)

    old_key = vault._keystore.get(pid)
    gone = active.orders[0].results[1]
    with vault._records.engine.connect() as conn:  # a backup of the data, taken before the run
        backup = conn.execute(select(result).where(result.c.id == gone.id)).one()
    if backend == "sqlite":
        copy = tmp_path / "backup"
        copy.mkdir()
        for f in settings.data_dir.glob("labvault.sqlite*"):
            shutil.copy(f, copy / f.name)

    run = RetentionDesk(vault).run(operator, POLICY)

    got = vault.get_record(operator, pid)
    assert got.patient == active.patient
    assert got.orders == (active.orders[1],)  # the recent order, whole; the old one gone
    for kind in ("inactive",):
        with pytest.raises(KeyUnavailable):
            vault.get_record(operator, recs[kind].id)
        assert vault._keystore.get(recs[kind].id) is None
    for kind in ("minor", "fresh"):  # under 28, and recent: untouched
        assert vault.get_record(operator, recs[kind].id) == recs[kind]
    assert vault.imports.info(operator, migration).erased_at is not None

    # The old data key is gone: the key store holds a new one, of the next version.
    new_key = vault._keystore.get(pid)
    assert (new_key.dek_version, old_key.dek_version) == (2, 1)
    assert new_key.wrapped != old_key.wrapped
    with vault._keystore.engine.connect() as conn:
        assert all(bytes(w) != old_key.wrapped for w in conn.execute(select(data_key.c.wrapped))
                   .scalars())
    if backend == "sqlite":  # nor in the key store's files (freed pages zeroed, WAL truncated)
        for f in settings.data_dir.glob("keys.sqlite*"):
            assert old_key.wrapped not in f.read_bytes()
    # The backup's copy of an expired result opened under the old key before; no key opens it now.
    ref = _result_ref(gone.id, pid, backup.order_id, backup.position)
    assert vault._cipher_for(pid, old_key).open("result", "label", ref, backup.label)  # sanity
    with pytest.raises(InvalidCiphertext):
        vault._cipher_for(pid, new_key).open("result", "label", ref, backup.label)
    if backend == "sqlite":
        from sqlalchemy import create_engine
        engine = create_engine(f"sqlite:///{copy / 'labvault.sqlite'}")
        with engine.connect() as conn:
            label = conn.execute(select(result.c.label).where(result.c.id == gone.id)).scalar_one()
        engine.dispose()
        with pytest.raises(InvalidCiphertext):
            vault._cipher_for(pid, new_key).open("result", "label", ref, label)
    # The kept rows were sealed again, findings included, and open under the new key only.
    kept = active.orders[1].results[0]
    with vault._records.engine.connect() as conn:
        row = conn.execute(select(result).where(result.c.id == kept.id)).one()
        sites = set(conn.execute(select(patient_site.c.finess)
                                 .where(patient_site.c.patient_id == pid)).scalars())
    kref = _result_ref(kept.id, pid, row.order_id, row.position)
    assert vault._cipher_for(pid, new_key).open("result", "findings", kref,
                                                as_sealed(row.findings)) == b"\x05\x00"
    assert row.label.key_version == 2 and as_sealed(row.findings).key_version == 2
    assert sites == {FINESS}  # the care link of the erased order's site went with it

    # The certificate lists them, verifies under the lab's key, and is stored.
    doc = run.document
    body = check(doc, vault.signing_public_key())
    assert [p["patient"] for p in body["patients_erased"]] == [str(recs["inactive"].id)]
    (erased,) = body["records_erased"]
    assert {k: set(erased[k]) for k in expired_ids(active)} == expired_ids(active)
    assert (erased["old_key_version"], erased["new_key_version"]) == (1, 2)
    assert body["staging_erased"][0]["migration"] == str(migration)
    assert body["policy"] == POLICY.as_dict() and body["run_at"] == run.plan.at.isoformat()
    assert RetentionDesk(vault).certificate(operator, run.certificate_id) == doc
    forged = json.loads(json.dumps(doc))
    forged["certificate"]["records_erased"][0]["results"].pop()
    with pytest.raises(InvalidSignature):
        check(forged)
    assert "Vasquez" not in json.dumps(doc) and "Ferritine" not in json.dumps(doc)
    actions = [(le.event.action, le.event.detail.get("step"))
               for le in vault.audit_log.events(operator, limit=10_000, patient_id=pid)]
    assert (str(Permission.RETENTION_RUN), "rekey") in actions
    # Nothing left past its term: the next run erases nothing.
    again = RetentionDesk(vault).run(operator, POLICY)
    assert set(again.plan.counts().values()) == {0}


def test_an_interrupted_rekey_is_finished_by_the_next_run(vault, operator, lab, monkeypatch):
    recs, _ = lab
    active, pid = recs["active"], recs["active"].id
    desk = RetentionDesk(vault)

    def crash(*_a, **_k):
        raise StoreError("replacing a data key failed (OperationalError)")

    monkeypatch.setattr(desk._store, "swap_key", crash)
    first = desk.run(operator, POLICY)
    (skipped,) = first.document["certificate"]["skipped"]
    assert (skipped["patient"], skipped["reason"]) == (str(pid), "StoreError")
    assert set(skipped["results"]) == expired_ids(active)["results"]
    # The rows are under the pending key, the store still has the old one: reads fail...
    with pytest.raises(InvalidCiphertext):
        vault.get_record(operator, pid)
    # ...while a writer adds an order under the old key.
    late = order(RECENT, results=1)
    vault.results.add_order(operator, pid, late)
    monkeypatch.undo()

    second = RetentionDesk(vault).run(operator, POLICY)
    assert second.document["certificate"]["rekeys_resumed"] == [str(pid)]
    got = vault.get_record(operator, pid)
    assert got.orders == (active.orders[1], late)
    assert vault._keystore.get(pid).dek_version == 2
    assert check(second.document)["records_erased"] == []
    assert vault._keystore.pending_patients() == []


def interrupt_rekey(vault, operator, monkeypatch) -> None:
    """A run whose key swap fails: the patient's rows are left under the pending key."""
    desk = RetentionDesk(vault)

    def crash(*_a, **_k):
        raise StoreError("replacing a data key failed (OperationalError)")

    with monkeypatch.context() as m:
        m.setattr(desk._store, "swap_key", crash)
        desk.run(operator, POLICY)


def test_a_pending_key_survives_key_rotation_and_the_rekey_completes(vault, operator, lab,
                                                                      monkeypatch, backend,
                                                                      settings):
    recs, _ = lab
    active, pid = recs["active"], recs["active"].id
    interrupt_rekey(vault, operator, monkeypatch)
    keys = vault._keystore
    assert keys.pending_patients() == [pid]
    with keys.engine.connect() as conn:
        assert list(conn.execute(select(staging_key))) == []  # the migration's went with its area
    version, wrapped = keys.get_pending(pid)
    assert version == 1
    pending = vault._keys.unwrap(version, wrapped, pending_key_context(pid)).reveal()
    for other in (dek_context(pid), staging_key_context(pid)):  # its own context only
        with pytest.raises(InvalidCiphertext):
            vault._keys.unwrap(version, wrapped, other)

    # A rotation that misses the pending key (stored after it listed them) keeps its version.
    with monkeypatch.context() as m:
        m.setattr(keys, "pending_by_version", lambda _v: [])
        first = vault.rotate_keys(operator)
    assert (first.new_version, first.retired) == (2, ())
    assert keys.pending_count_by_version() == {1: 1} and set(keys.count_by_version()) == {2}
    # The next one rewraps it under the new version, and retires both old ones.
    second = vault.rotate_keys(operator)
    assert (second.new_version, second.retired) == (3, (1, 2))
    assert set(vault._keys.versions()) == {3}
    version, rewrapped = keys.get_pending(pid)
    assert version == 3 and rewrapped != wrapped
    assert vault._keys.unwrap(3, rewrapped, pending_key_context(pid)).reveal() == pending

    # The re-key then completes under the rewrapped key.
    run = RetentionDesk(vault).run(operator, POLICY)
    assert run.document["certificate"]["rekeys_resumed"] == [str(pid)]
    assert vault.get_record(operator, pid).orders == (active.orders[1],)
    stored = keys.get(pid)
    assert (stored.dek_version, stored.kek_version) == (2, 3)
    assert vault._keys.unwrap(3, stored.wrapped, dek_context(pid)).reveal() == pending
    assert keys.pending_patients() == [] and keys.pending_count_by_version() == {}
    if backend == "sqlite":  # neither wrapping of the pending key is left in the files
        for f in settings.data_dir.glob("keys.sqlite*"):
            assert wrapped not in f.read_bytes() and rewrapped not in f.read_bytes()
    third = vault.rotate_keys(operator)
    assert third.retired == (3,)


def test_erasing_a_patient_mid_rekey_destroys_the_pending_key_too(vault, operator, lab,
                                                                  monkeypatch):
    recs, _ = lab
    pid = recs["active"].id
    interrupt_rekey(vault, operator, monkeypatch)
    assert vault._keystore.pending_patients() == [pid]
    assert vault.erase_patient(operator, pid).key_destroyed
    assert vault._keystore.get(pid) is None and vault._keystore.pending_patients() == []


def test_roles_and_bulk_step_up(vault, operator, lab, clock):
    tech = Principal("account:tech-1", Role.TECHNICIAN, "test", "care", request_id="r")
    with pytest.raises(AccessDenied):
        RetentionDesk(vault).run(tech, POLICY, dry_run=True)
    dpo = Principal("account:dpo-1", Role.DPO, "test", "retention", request_id="r")
    assert RetentionDesk(vault).run(dpo, POLICY, dry_run=True).plan.counts()["patients"] == 1
    vault.put_patients(operator, [PatientRecord(person(f"Ancien-{i}", date(1950, 1, 1)),
                                                (order(OLD, results=1),)) for i in range(21)])
    with pytest.raises(StepUpRequired):
        RetentionDesk(vault).run(dpo, POLICY)
    with vault.imports.importing(uuid.uuid4()), pytest.raises(MigrationBusy):
        RetentionDesk(vault).run(operator, POLICY)  # not while a migration imports
    assert vault.get_record(operator, lab[0]["inactive"].id) == lab[0]["inactive"]  # untouched
    fresh = Principal("account:dpo-1", Role.DPO, "test", "retention", request_id="r",
                      mfa_at=clock.now())
    assert RetentionDesk(vault).run(fresh, POLICY).document["certificate"]["counts"][
        "patients"] == 22


def test_the_schedule_runs_once_a_day(vault, lab, clock):
    schedule = RetentionSchedule(RetentionDesk(vault), POLICY)
    first = schedule.tick(clock.now())
    assert first is not None and first.plan.counts()["patients"] == 1
    clock.advance(timedelta(hours=23))
    assert schedule.tick(clock.now()) is None
    clock.advance(timedelta(hours=1))
    second = schedule.tick(clock.now())
    assert second is not None and second.certificate_id == first.certificate_id + 1
    assert check(second.document)["issued_by"].startswith("local-operator:")


def test_commands_run_export_and_check(vault, lab, settings, tmp_path):
    data = ["--data-dir", str(settings.data_dir)]
    runner = CliRunner()
    dry = runner.invoke(retention_app, ["run", "--dry-run", *data])
    assert dry.exit_code == 0, dry.output
    assert f"patient {lab[0]['inactive'].id}" in dry.output
    out = tmp_path / "erasure.json"
    done = runner.invoke(retention_app, ["run", "--yes", "--out", str(out), *data])
    assert done.exit_code == 0, done.output
    for f in (out, out.with_suffix(".html")):
        assert f.stat().st_mode & 0o777 == 0o600
    html = out.with_suffix(".html").read_text()
    assert str(lab[0]["inactive"].id) in html and "Vasquez" not in html + done.output + dry.output
    key = tmp_path / "lab.pem"
    key.write_text(public_pem(vault.signing_public_key()))
    ok = runner.invoke(retention_app, ["check", str(out), "--public-key", str(key)])
    assert ok.exit_code == 0 and "signed by the trusted key" in ok.output
    doc = json.loads(out.read_text())
    again = tmp_path / "again.json"
    exported = runner.invoke(retention_app, ["certificate", str(doc["id"]), "--out", str(again),
                                             *data])
    assert exported.exit_code == 0 and json.loads(again.read_text()) == doc
    doc["certificate"]["counts"]["patients"] = 0
    out.write_text(json.dumps(doc))
    bad = runner.invoke(retention_app, ["check", str(out)])
    assert bad.exit_code == 1
    assert os.stat(out).st_size > 0


def test_genetic_reports_are_kept_thirty_years_and_unclassified_results_too(vault, operator,
                                                                            clock):
    genetic = Result("LN", "51969-4", "Analyse génétique BRCA1", "variant classe 3",
                     observed_at=OLD, comments=(Comment("Conseil génétique proposé"),),
                     attachments=(Attachment("cr-genetique.pdf", "application/pdf",
                                             b"%PDF-brca" * 20),))
    plain = Result("LN", "2345-7", "Glucose", "5.1", observed_at=OLD)
    unknown = Result("LN", "2951-2", "Sodium", "140", observed_at=OLD)
    rec = PatientRecord(person("Kerbrat-Sillon", date(1975, 2, 3)), (
        Order(lab_finess=FINESS, sampled_at=OLD, results=(genetic, plain, unknown),
              comments=(Comment("Indication : recherche BRCA1"),)),
        Order(lab_finess=FINESS, sampled_at=RECENT, results=(Result("LN", "2345-7", "Glucose",
                                                                   "5.0", observed_at=RECENT),))))
    vault.put_patients(operator, [rec])
    with vault._records.engine.begin() as conn:  # stored before classification existed
        conn.execute(update(result).where(result.c.id == unknown.id).values(findings=None))
    plan = RetentionDesk(vault).run(operator, POLICY, dry_run=True).plan
    (expired,) = plan.records
    assert set(expired.results) == {plain.id}  # fourteen years: past ten, not thirty
    assert expired.comments == () and expired.attachments == () and expired.orders == ()
    assert plan.counts()["unclassified_results"] == 1
    ten = RetentionPolicy.from_config({"genetic_years": 10})
    run = RetentionDesk(vault).run(operator, ten)
    (expired,) = run.plan.records
    assert set(expired.results) == {genetic.id, plain.id, unknown.id}
    assert set(expired.comments) == {genetic.comments[0].id, rec.orders[0].comments[0].id}
    assert set(expired.attachments) == {genetic.attachments[0].id}
    assert run.document["certificate"]["policy"]["genetic_years"] == 10
    kept = vault.get_record(operator, rec.id)
    assert [r.id for o in kept.orders for r in o.results] == [rec.orders[1].results[0].id]
    # A patient not seen for fourteen years is erased whole, unless a genetic report of theirs
    # is still within its thirty years: then only what is past its own term goes.
    quiet = PatientRecord(person("Le Goff-Ravel", date(1950, 6, 7)), (
        Order(lab_finess=FINESS, sampled_at=OLD,
              results=(dataclasses.replace(genetic, id=uuid.uuid4(), comments=(),
                                           attachments=()),
                       dataclasses.replace(plain, id=uuid.uuid4()))),))
    gone = PatientRecord(person("Ropars-Heuzé", date(1950, 6, 7)), (
        Order(lab_finess=FINESS, sampled_at=OLD,
              results=(dataclasses.replace(plain, id=uuid.uuid4()),)),))
    vault.put_patients(operator, [quiet, gone])
    plan = RetentionDesk(vault).run(operator, POLICY, dry_run=True).plan
    assert plan.patients == (gone.id,)
    (expired,) = [e for e in plan.records if e.patient_id == quiet.id]
    assert set(expired.results) == {quiet.orders[0].results[1].id} and expired.orders == ()


def test_policy_is_read_from_the_retention_section():
    from labvault.breach.config import BreachConfig
    from labvault.errors import ConfigurationError

    policy = RetentionPolicy.from_config(BreachConfig.from_mapping(
        {"retention": {"results_years": 30, "keep_until_age": 0}})["retention"])
    assert (policy.results_years, policy.orders_years, policy.keep_until_age) == (30, 10, 0)
    with pytest.raises(ConfigurationError, match=r"retention\.staging_days"):
        RetentionPolicy.from_config({"staging_days": 0})
