"""The vault on SQLite and PostgreSQL: round trips, tampering, erasure, rotation, the gate."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import inspect, select, text, update

from labvault import (
    AccessDenied,
    AuditUnavailable,
    InvalidCiphertext,
    InvalidRecord,
    KeyUnavailable,
    NotFound,
    Principal,
    Role,
    Settings,
    Vault,
)
from labvault.store.engine import checkpoint
from labvault.store.tables import patient, result
from labvault.synthetic import SyntheticLab


@pytest.fixture
def records():
    return list(SyntheticLab(seed=7).records(40))


@pytest.fixture
def loaded(vault, operator, records):
    vault.put_patients(operator, records, batch_size=16)
    return records


def _engine(vault: Vault):
    return vault._records.engine


def test_round_trip_every_field(vault, operator, loaded):
    for record in loaded:
        assert vault.get_record(operator, record.id) == record
    assert vault.get_patient(operator, loaded[0].id) == loaded[0].patient


def test_find_by_nir_in_any_spelling(vault, operator, loaded):
    target = next(r for r in loaded if r.patient.nir)
    nir = target.patient.nir
    spaced = f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
    assert vault.find_patients(operator, nir=nir) == [target.id]
    assert vault.find_patients(operator, nir=spaced) == [target.id]
    assert vault.find_patients(operator, nir=nir[:-2] + ("00" if nir[-2:] != "00" else "01")) == []


def test_find_by_name_and_birth_date_ignores_accents_and_case(vault, operator, clock):
    lab = SyntheticLab(seed=1)
    base = lab.record()
    record = replace(base, patient=replace(base.patient, last_name="Lefèvre-Hélie"))
    vault.put_patient(operator, record)
    born = record.patient.birth_date
    for spelling in ("Lefèvre-Hélie", "LEFEVRE HELIE", "lefevre  helie", "Lefevre-helie"):
        assert vault.find_patients(operator, last_name=spelling, birth_date=born) == [record.id]
    assert vault.find_patients(operator, last_name="Lefèvre", birth_date=born) == []
    assert vault.find_patients(operator, last_name="Lefèvre-Hélie",
                               birth_date=date(1900, 1, 1)) == []


def _sealed(vault, table, column, record_id):
    with _engine(vault).connect() as conn:
        return conn.execute(select(table.c[column]).where(table.c.id == record_id)).scalar_one()


def _write(vault, table, column, record_id, sealed):
    with _engine(vault).begin() as conn:
        conn.execute(update(table).where(table.c.id == record_id).values({column: sealed}))


def test_ciphertext_swapped_between_rows_fails(vault, operator, loaded):
    a, b = loaded[0], loaded[1]
    _write(vault, patient, "last_name", b.id, _sealed(vault, patient, "last_name", a.id))
    with pytest.raises(InvalidCiphertext):
        vault.get_patient(operator, b.id)
    assert vault.get_patient(operator, a.id) == a.patient


def test_ciphertext_swapped_between_columns_fails(vault, operator, loaded):
    a = loaded[0]
    _write(vault, patient, "first_names", a.id, _sealed(vault, patient, "last_name", a.id))
    with pytest.raises(InvalidCiphertext):
        vault.get_patient(operator, a.id)


def test_ciphertext_swapped_between_results_of_one_patient_fails(vault, operator, loaded):
    rec = next(r for r in loaded if r.result_count() >= 2)
    r1, r2 = [r for o in rec.orders for r in o.results][:2]
    _write(vault, result, "value", r2.id, _sealed(vault, result, "value", r1.id))
    with pytest.raises(InvalidCiphertext):
        vault.get_record(operator, rec.id)


def test_tampered_ciphertext_fails(vault, operator, loaded):
    a = loaded[0]
    blob = bytearray(_sealed(vault, patient, "nir", a.id).blob)
    blob[-1] ^= 0x01
    from labvault.crypto.envelope import Sealed
    _write(vault, patient, "nir", a.id, Sealed(bytes(blob)))
    with pytest.raises(InvalidCiphertext):
        vault.get_patient(operator, a.id)


def test_personal_columns_refuse_plaintext(vault):
    """Fail closed by type: a str or bytes written to a personal column never reaches the DB."""
    with pytest.raises(Exception) as info, _engine(vault).begin() as conn:
        conn.execute(patient.insert().values(id=uuid.uuid4(), created_at=None,
                                             last_name="Quatrebarbes"))
    assert "Quatrebarbes" not in str(info.value)
    assert "Sealed" in str(info.value)
    with pytest.raises(Exception), _engine(vault).begin() as conn:
        conn.execute(patient.insert().values(id=uuid.uuid4(), last_name=b"Quatrebarbes"))


def test_invalid_nir_is_refused_naming_field_not_value(vault, operator):
    base = SyntheticLab(seed=3).record()
    nir = base.patient.nir
    bad_key = f"{(int(nir[-2:]) + 1) % 100:02d}"
    bad = replace(base, patient=replace(base.patient, nir=nir[:-2] + bad_key, ins=None))
    with pytest.raises(InvalidRecord) as info:
        vault.put_patient(operator, bad)
    assert info.value.field == "patient.nir"
    assert nir[:-2] not in str(info.value)
    assert vault.find_patients(operator, nir=bad.patient.nir) == []
    assert vault._records.count() == 0


def test_denied_call_is_audited_and_returns_nothing(vault, operator, loaded):
    admin = Principal("admin:alice", Role.ADMIN, "127.0.0.1", "account review")
    with pytest.raises(AccessDenied):
        vault.get_record(admin, loaded[0].id)
    with pytest.raises(AccessDenied):
        vault.find_patients(admin, nir=loaded[0].patient.nir or "")
    events = vault._audit.events()
    denied = [e for e in events if e.outcome == "denied"]
    assert [e.actor for e in denied] == ["admin:alice", "admin:alice"]
    assert denied[0].patient_ids == (loaded[0].id,)


def test_every_read_is_audited_before_data(vault, operator, loaded):
    before = len(vault._audit.events())
    vault.get_record(operator, loaded[0].id)
    vault.find_patients(operator, nir=loaded[1].patient.nir or "X")
    events = vault._audit.events()[before:]
    assert [e.action for e in events] == ["vault:result:read", "vault:patient:search"]
    assert events[0].patient_ids == (loaded[0].id,)
    assert all(e.actor == operator.actor_id and e.purpose == operator.purpose for e in events)


def test_audit_unavailable_means_no_data(vault, operator, loaded):
    with _engine(vault).begin() as conn:
        conn.execute(text("DROP TABLE audit_event"))
    with pytest.raises(AuditUnavailable):
        vault.get_record(operator, loaded[0].id)
    with pytest.raises(AuditUnavailable):
        vault.find_patients(operator, nir=loaded[0].patient.nir or "X")


def _copy_data_database(settings: Settings, vault: Vault, tmp_path, pg_factory) -> Settings:
    """A copy of the data database as a backup would take it (not the key store)."""
    if settings.database_url.startswith("sqlite"):
        checkpoint(_engine(vault))
        src = settings.data_dir / "labvault.sqlite"
        dst = tmp_path / "backup" / "labvault.sqlite"
        dst.parent.mkdir()
        shutil.copy2(src, dst)
        return replace(settings, database_url=f"sqlite:///{dst}")
    dbs = pg_factory()
    source = settings.database_url.rsplit("/", 1)[1]
    _engine(vault).dispose()
    copy = dbs.create(prefix="lvbackup", template=source)
    return replace(settings, database_url=dbs.url(copy))


def test_erasure_makes_earlier_copies_unreadable(vault, operator, loaded, settings, clock,
                                                 tmp_path, request):
    victim, other = loaded[0], loaded[1]
    backup = _copy_data_database(settings, vault, tmp_path, lambda: request.getfixturevalue("pg"))
    erasure = vault.erase_patient(operator, victim.id)
    assert erasure.key_destroyed
    with pytest.raises(KeyUnavailable):
        vault.get_record(operator, victim.id)
    assert vault.find_patients(operator, nir=victim.patient.nir or "X") == []
    old = Vault.open(backup, clock=clock)
    try:
        # The copy still has the victim's ciphertext and blind index entries...
        assert old.find_patients(operator, nir=victim.patient.nir) == [victim.id]
        # ...but no key opens it any more; everyone else in the copy stays readable.
        with pytest.raises(KeyUnavailable):
            old.get_record(operator, victim.id)
        assert old.get_record(operator, other.id) == other
    finally:
        old.close()
    with pytest.raises(NotFound):
        vault.erase_patient(operator, uuid.uuid4())


def test_rotation_rewraps_every_key_and_retires_old_versions(vault, operator, loaded, settings):
    key_file_before = settings.key_file.read_bytes()
    rotation = vault.rotate_keys(operator)
    assert rotation.new_version == 2
    assert rotation.rewrapped == len(loaded)
    assert rotation.retired == (1,)
    assert vault.key_status(operator) == {2: len(loaded)}
    for record in loaded:
        assert vault.get_record(operator, record.id) == record
    # The ciphertext of the data was not touched, only the wrapped keys.
    assert settings.key_file.read_bytes() != key_file_before
    second = vault.rotate_keys(operator)
    assert (second.new_version, second.retired) == (3, (2,))
    reopened = Vault.open(settings)
    try:
        assert reopened.get_record(operator, loaded[-1].id) == loaded[-1]
    finally:
        reopened.close()


def test_rotation_leaves_data_ciphertext_unchanged(vault, operator, loaded):
    before = _sealed(vault, patient, "last_name", loaded[0].id)
    vault.rotate_keys(operator)
    assert _sealed(vault, patient, "last_name", loaded[0].id) == before


def test_iter_records_returns_every_live_patient(vault, operator, loaded):
    vault.erase_patient(operator, loaded[3].id)
    got = {r.id: r for r in vault.iter_records(operator, batch_size=7)}
    assert set(got) == {r.id for r in loaded} - {loaded[3].id}
    assert got[loaded[4].id] == loaded[4]


def test_keystore_is_a_separate_database(vault):
    data_tables = set(inspect(_engine(vault)).get_table_names())
    key_tables = set(inspect(vault._keystore.engine).get_table_names())
    assert "patient" in data_tables and "data_key" not in data_tables
    assert "data_key" in key_tables and "patient" not in key_tables


def test_erasing_an_unknown_patient_is_audited(vault, operator):
    ghost = uuid.uuid4()
    with pytest.raises(NotFound):
        vault.erase_patient(operator, ghost)
    last = vault._audit.events()[-1]
    assert (last.action, last.outcome, last.patient_ids) == ("vault:patient:erase", "not_found",
                                                             (ghost,))


def test_bulk_read_survives_an_interrupted_erasure(vault, operator, loaded):
    """Key destroyed, ciphertext not yet dropped (a crash in between): export skips it."""
    vault._keystore.destroy(loaded[2].id)
    got = [r.id for r in vault.iter_records(operator)]
    assert loaded[2].id not in got and len(got) == len(loaded) - 1
    assert any(e.outcome == "key_missing" and e.patient_ids == (loaded[2].id,)
               for e in vault._audit.events())
    vault.erase_patient(operator, loaded[2].id)  # finishing the erasure works
    with pytest.raises(KeyUnavailable):
        vault.get_record(operator, loaded[2].id)


def test_failed_write_leaves_no_orphan_key_and_can_be_retried(vault, operator, loaded):
    from labvault.errors import StoreError
    fresh = SyntheticLab(seed=99).record()
    clash = replace(fresh.orders[0], id=loaded[0].orders[0].id)  # an order id already stored
    bad = replace(fresh, orders=(clash, *fresh.orders[1:]))
    with pytest.raises(StoreError):
        vault.put_patient(operator, bad)
    assert vault._keystore.get(fresh.id) is None
    vault.put_patient(operator, fresh)
    assert vault.get_record(operator, fresh.id) == fresh


def test_key_store_sharing_the_data_database_is_refused(settings):
    from labvault.errors import ConfigurationError
    with pytest.raises(ConfigurationError):
        Vault.init(replace(settings, keystore_url=settings.database_url))


def _first_with_result_comment(records):
    for rec in records:
        results = [r for o in rec.orders for r in o.results]
        if len(results) >= 2 and any(r.comments for r in results):
            return rec, results
    raise AssertionError("the synthetic sample has no result comment")


def test_moving_a_comment_to_another_result_fails(vault, operator, loaded):
    """The clear parent ids are bound into the sealed fields' associated data."""
    from labvault.store.tables import comment as comment_table
    rec, results = _first_with_result_comment(loaded)
    commented = next(r for r in results if r.comments)
    other = next(r for r in results if r.id != commented.id)
    with _engine(vault).begin() as conn:
        conn.execute(update(comment_table).where(comment_table.c.id == commented.comments[0].id)
                     .values(result_id=other.id))
    with pytest.raises(InvalidCiphertext):
        vault.get_record(operator, rec.id)


def test_reordering_results_fails(vault, operator, loaded):
    rec = next(r for r in loaded if r.result_count() >= 2)
    first = rec.orders[0].results[0] if rec.orders[0].results else None
    target = first or next(r for o in rec.orders for r in o.results)
    with _engine(vault).begin() as conn:
        conn.execute(update(result).where(result.c.id == target.id).values(position=999))
    with pytest.raises(InvalidCiphertext):
        vault.get_record(operator, rec.id)
