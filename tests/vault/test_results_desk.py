"""`vault.results`: orders entered for stored patients, and their biological validation, on
SQLite and PostgreSQL: appended after what the patient has, sealed, audited, refused to the
roles without the right."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict

import pytest
from sqlalchemy import select, text

from labvault import AccessDenied, InvalidRecord, NotFound, Principal, Role
from labvault.domain.records import (
    AbnormalFlag,
    Comment,
    Order,
    Prescriber,
    Result,
    ResultStatus,
)
from labvault.store.tables import lab_order, patient_site, result

P, F, X = ResultStatus.PRELIMINARY, ResultStatus.FINAL, ResultStatus.CANCELLED
FINESS = "750000010"  # a valid FINESS no synthetic lab uses (Luhn over nine digits)
RPPS = "10000000009"
VALUE = "7391.25"
LABEL = "Glycemie-a-jeun-Zeugma"
COMMENT = "Prelevement hemolyse Quetzal"


def person(role: Role, patient_id: uuid.UUID | None = None) -> Principal:
    return Principal(f"account:{role.value}-1", role, "test", "care", request_id=uuid.uuid4().hex,
                     patient_id=patient_id)


def new_order(*statuses: ResultStatus, finess: str = FINESS) -> Order:
    results = tuple(
        Result("LN", f"1234{i}-{i}", LABEL, f"{VALUE}{i}", unit="mmol/L",
               reference_range="3.9-5.8", abnormal_flag=AbnormalFlag.HIGH, status=s)
        for i, s in enumerate(statuses or (P, P, P)))
    return Order(lab_finess=finess, prescriber=Prescriber("Martin", "Claire", rpps=RPPS),
                 lab_file_number="2026-000123", results=results, comments=(Comment(COMMENT),))


def events(vault, operator, pid: uuid.UUID, action: str):
    return [le.event for le in vault.audit_log.events(operator, limit=10_000, patient_id=pid)
            if le.event.action == action]


@pytest.fixture
def target(records):
    return next(r for r in records if r.orders)


def test_luhn_constants_are_valid():
    from labvault.domain.identifiers import validate_finess, validate_rpps

    validate_finess(FINESS)
    validate_rpps(RPPS)


def test_add_order_appends_after_the_existing_orders(vault, operator, target):
    tech = person(Role.TECHNICIAN)
    order = new_order()
    assert vault.results.add_order(tech, target.id, order) == order.id
    got = vault.get_record(operator, target.id)
    assert got.patient == target.patient
    assert got.orders[:len(target.orders)] == target.orders  # untouched
    assert got.orders[len(target.orders):] == (order,)
    assert [r.value for r in got.orders[-1].results] == [f"{VALUE}{i}" for i in range(3)]
    assert all(r.status is P for r in got.orders[-1].results)


def test_positions_continue_over_several_orders(vault, operator, target):
    tech = person(Role.TECHNICIAN)
    first, second = new_order(P, P), new_order(P, P, P, P)
    vault.results.add_order(tech, target.id, first)
    vault.results.add_order(tech, target.id, second)
    got = vault.get_record(operator, target.id)
    assert got.orders == (*target.orders, first, second)
    with vault._records.engine.connect() as conn:
        orders = conn.execute(select(lab_order.c.position).where(
            lab_order.c.patient_id == target.id).order_by(lab_order.c.position)).scalars().all()
        results = conn.execute(select(result.c.position).where(
            result.c.patient_id == target.id)).scalars().all()
    assert orders == list(range(len(target.orders) + 2))
    assert len(set(results)) == len(results) == target.result_count() + 6


def test_an_order_for_a_patient_without_orders(vault, operator, clock):
    from labvault.synthetic import SyntheticLab

    lone = SyntheticLab(seed=5, results_per_patient=0).record()
    assert lone.orders == ()
    vault.put_patient(operator, lone)
    order = new_order(P)
    vault.results.add_order(person(Role.BIOLOGIST), lone.id, order)
    assert vault.get_record(operator, lone.id).orders == (order,)


def test_stored_rows_hold_no_value(vault, target):
    vault.results.add_order(person(Role.TECHNICIAN), target.id, new_order())
    with vault._records.engine.connect() as conn:
        rows = [tuple(r) for t in ("result", "lab_order", "comment")
                for r in conn.execute(text(f"SELECT * FROM {t}"))]
    blob = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                    for row in rows for v in row)
    for value in (VALUE, LABEL, COMMENT, "Claire", "2026-000123", "mmol/L", "3.9-5.8"):
        assert value.encode() not in blob


def test_roles_without_the_right_are_refused_and_audited(vault, operator, target):
    before = vault.get_record(operator, target.id)
    for who in (person(Role.SECRETARY), person(Role.PATIENT, patient_id=target.id),
                person(Role.ADMIN), person(Role.DPO)):
        with pytest.raises(AccessDenied):
            vault.results.add_order(who, target.id, new_order())
    denied = [e for e in events(vault, operator, target.id, "vault:result:write")
              if e.outcome == "denied"]
    assert [e.role for e in denied] == ["secretary", "patient", "admin", "dpo"]
    assert vault.get_record(operator, target.id) == before


def test_results_entered_final_need_the_validation_right(vault, operator, target):
    with pytest.raises(AccessDenied):
        vault.results.add_order(person(Role.TECHNICIAN), target.id, new_order(P, F))
    [refused] = events(vault, operator, target.id, "vault:result:validate")
    assert refused.outcome == "denied" and refused.role == "technician"
    vault.results.add_order(person(Role.TECHNICIAN), target.id, new_order(P, X))  # cancelled ok
    order = new_order(F)
    vault.results.add_order(person(Role.BIOLOGIST), target.id, order)
    assert vault.get_record(operator, target.id).orders[-1] == order


def test_unknown_or_erased_patient_is_not_found_and_audited(vault, operator, target):
    tech = person(Role.TECHNICIAN)
    ghost = uuid.uuid4()
    with pytest.raises(NotFound):
        vault.results.add_order(tech, ghost, new_order())
    [miss] = events(vault, operator, ghost, "vault:result:write")
    assert miss.outcome == "not_found" and miss.patient_ids == (ghost,)
    vault.erase_patient(operator, target.id)
    with pytest.raises(NotFound):
        vault.results.add_order(tech, target.id, new_order())
    assert events(vault, operator, target.id, "vault:result:write")[-1].outcome == "not_found"


def test_invalid_order_is_refused_before_anything_is_written(vault, operator, target):
    with pytest.raises(InvalidRecord) as info:
        vault.results.add_order(person(Role.TECHNICIAN), target.id,
                                new_order(finess="750000011"))
    assert info.value.field == "order.lab_finess" and "750000011" not in str(info.value)
    assert events(vault, operator, target.id, "vault:result:write") == []
    assert vault.get_record(operator, target.id).orders == target.orders


def test_write_event_names_the_patient_and_no_value(vault, operator, target):
    tech = person(Role.TECHNICIAN)
    order = new_order()
    vault.results.add_order(tech, target.id, order)
    [event] = events(vault, operator, target.id, "vault:result:write")
    assert event.outcome == "allowed" and event.patient_ids == (target.id,)
    assert event.actor == tech.actor_id and event.request_id == tech.request_id
    assert event.categories == ("orders", "results", "comments")
    assert event.detail == {"results": 3, "order": str(order.id)}
    dumped = json.dumps(asdict(event), default=str)
    for value in (VALUE, LABEL, COMMENT, FINESS, RPPS, target.patient.last_name):
        assert value not in dumped


def test_validation_makes_only_that_orders_preliminary_results_final(vault, operator, target):
    tech, bio = person(Role.TECHNICIAN), person(Role.BIOLOGIST)
    first, second = new_order(P, X, P), new_order(P, P)
    vault.results.add_order(tech, target.id, first)
    vault.results.add_order(tech, target.id, second)
    assert vault.results.validate_order(bio, target.id, first.id) == 2
    got = vault.get_record(operator, target.id)
    assert got.orders[:len(target.orders)] == target.orders
    one, two = got.orders[-2:]
    assert [r.status for r in one.results] == [F, X, F]
    assert [r.status for r in two.results] == [P, P]
    # Only the status changed: every other field of the result is as entered.
    assert [asdict(r) | {"status": None} for r in one.results] == [
        asdict(r) | {"status": None} for r in first.results]
    assert vault.results.validate_order(bio, target.id, first.id) == 0
    allowed = [e for e in events(vault, operator, target.id, "vault:result:validate")
               if e.outcome == "allowed"]
    assert [e.detail for e in allowed] == [{"order": str(first.id), "validated": 2},
                                           {"order": str(first.id), "validated": 0}]
    assert all(e.patient_ids == (target.id,) and e.categories == ("results",) for e in allowed)


def test_validation_needs_the_biologist_and_the_right_patient(vault, operator, records, target):
    order = new_order()
    vault.results.add_order(person(Role.TECHNICIAN), target.id, order)
    for who in (person(Role.TECHNICIAN), person(Role.SECRETARY),
                person(Role.PATIENT, patient_id=target.id)):
        with pytest.raises(AccessDenied):
            vault.results.validate_order(who, target.id, order.id)
    other = next(r for r in records if r.id != target.id)
    bio = person(Role.BIOLOGIST)
    for pid, oid in ((other.id, order.id), (target.id, uuid.uuid4())):
        with pytest.raises(NotFound):
            vault.results.validate_order(bio, pid, oid)
        assert events(vault, operator, pid, "vault:result:validate")[-1].outcome == "not_found"
    assert {r.status for r in vault.get_record(operator, target.id).orders[-1].results} == {P}


def test_the_order_links_the_patient_to_its_lab_site(vault, operator, target):
    def sites():
        with vault._records.engine.connect() as conn:
            return set(conn.execute(select(patient_site.c.patient_id, patient_site.c.finess)
                                    .where(patient_site.c.patient_id == target.id)).all())

    assert (target.id, FINESS) not in sites()
    vault.results.add_order(person(Role.TECHNICIAN), target.id, new_order())
    vault.results.add_order(person(Role.TECHNICIAN), target.id, new_order())  # once only
    assert (target.id, FINESS) in sites()
