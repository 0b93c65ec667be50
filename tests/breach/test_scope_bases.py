"""Special categories in a scope, from the findings sealed at storage time; scopes of a
compromised master key and of a leaked staging area."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from db_support import break_audit_chain, mend_audit_chain
from labvault import Vault, local_operator
from labvault.access.principal import Principal, Role
from labvault.audit.copy import JournalTampered
from labvault.breach import findings
from labvault.breach.classify import SpecialCategory, classify_record
from labvault.breach.scope import Selectors
from labvault.domain.records import Comment, PatientRecord, Result
from labvault.errors import InvalidRecord, NotFound
from labvault.ingest.base import Parsed, Position
from labvault.store.tables import comment, result
from labvault.synthetic import SyntheticLab

PLAN = json.dumps({"labvault_plan": 1, "created_at": "2026-03-02T08:30:00+00:00", "created_by": "t",
                   "sources": [{"index": 0, "name": "x.hl7", "format": "hl7v2", "size": 0,
                                "sha256": "", "units": 0}]}).encode()
HIV = Result(code_system="LN", code="31201-7", label="Sérologie VIH 1+2", value="négatif")
GLUCOSE = Result(code_system="LN", code="2345-7", label="Glucose", value="5.1")


def with_first_order(record: PatientRecord, results: tuple[Result, ...],
                     comments: tuple[Comment, ...] = ()) -> PatientRecord:
    first = dataclasses.replace(record.orders[0], results=results, comments=comments)
    return PatientRecord(record.patient, (first,))


@pytest.fixture
def lab(vault, operator):
    recs = list(SyntheticLab(seed=41, results_per_patient=1).records(6))
    recs[0] = with_first_order(recs[0], (dataclasses.replace(HIV, id=uuid.uuid4()),))
    recs[1] = with_first_order(recs[1], (dataclasses.replace(GLUCOSE, id=uuid.uuid4()),),
                               (Comment("Patiente enceinte de 12 SA, n° sécu "
                                        "2 84 05 75 056 123 64 à rappeler"),))
    recs[2] = with_first_order(recs[2], (dataclasses.replace(GLUCOSE, id=uuid.uuid4()),),
                               (Comment("Pas de cancer connu."),))
    vault.put_patients(operator, recs)
    return recs


def test_findings_are_sealed_at_storage_and_all_the_same_size(vault, lab) -> None:
    with vault._records.engine.connect() as conn:
        sealed = [bytes(r.blob) for r in conn.execute(select(result.c.findings)).scalars()]
        sealed += [bytes(r.blob) for r in conn.execute(select(comment.c.findings)).scalars()]
    assert sealed and len({len(s) for s in sealed}) == 1  # HIV test or glucose: same length
    assert findings.decode(findings.encode({SpecialCategory.HIV, SpecialCategory.CANCER},
                                           {"iban"})) == (
        {SpecialCategory.HIV, SpecialCategory.CANCER}, {"iban"})


def test_special_categories_follow_what_was_exposed_and_when(vault, lab, operator, clock,
                                                             dpo) -> None:
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "203.0.113.5", "care")
    vault.get_record(thief, lab[0].id)  # results: the HIV test is exposed
    vault.get_record(thief, lab[1].id)  # comments: pregnancy, and a NIR typed in
    vault.get_record(thief, lab[2].id)  # "pas de cancer": negated, nothing special
    vault.get_patient(thief, lab[3].id)  # identity only: no result was exposed
    clock.advance(timedelta(hours=1))  # an HIV test entered after the read was not exposed
    vault.results.add_order(operator, lab[2].id, dataclasses.replace(
        lab[2].orders[0], id=uuid.uuid4(), comments=(),
        results=(dataclasses.replace(HIV, id=uuid.uuid4()),)))
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="x")
    doc = vault.breach.scope(dpo, inc.id, Selectors(actor=thief.actor_id)).document
    got = {uuid.UUID(p["id"]): p for p in doc["patients"]}
    assert got[lab[0].id]["special"] == ["hiv"]
    assert got[lab[1].id]["special"] == ["pregnancy"]
    assert "nir" in got[lab[1].id]["categories"]
    assert got[lab[2].id]["special"] == [] and got[lab[3].id]["special"] == []
    assert {p["exposure"] for p in doc["patients"]} == {"decrypted"}
    assert doc["version"] == 2 and doc["basis"] == "audit"
    assert doc["totals"]["by_special"] == {"hiv": 1, "pregnancy": 1}
    assert doc["totals"]["records"] == {"results": 3, "comments": 2, "unclassified": 0}


def test_a_compromised_master_key_exposes_every_record_it_wraps(vault, lab, dpo,
                                                                clock) -> None:
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="compromised-key",
                                     description="x")
    doc = vault.breach.scope(dpo, inc.id, Selectors(key=1)).document
    assert {uuid.UUID(p["id"]) for p in doc["patients"]} == {r.id for r in lab}
    assert doc["basis"] == "key" and doc["totals"]["by_exposure"] == {"decrypted": len(lab)}
    expected = {str(r.id): sorted(c.value for c in classify_record(r).special) for r in lab}
    assert {p["id"]: p["special"] for p in doc["patients"]} == expected
    assert {"hiv", "pregnancy"} <= set(doc["totals"]["by_special"])
    with pytest.raises(InvalidRecord):
        vault.breach.scope(dpo, inc.id, Selectors(key=7))
    with pytest.raises(InvalidRecord):
        Selectors(key=1, source="10.0.0.0/8")


def test_a_leaked_staging_area_is_sealed_unless_its_key_leaked(vault, operator, lab, dpo,
                                                               clock) -> None:
    mid = uuid.uuid4()
    vault.imports.begin(operator, mid, PLAN, clock.now() + timedelta(days=30))
    staged = list(SyntheticLab(seed=42, results_per_patient=1).records(3))
    staged[0] = with_first_order(staged[0], (dataclasses.replace(HIV, id=uuid.uuid4()),))
    units = [Parsed(i + 1, Position("x.hl7", i + 1), r, hashlib.sha256(r.id.bytes).digest(),
                    source_patient_id=r.id.hex[:10]) for i, r in enumerate(staged)]
    vault.imports.import_units(operator, mid, 0, units)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="exposed-staging",
                                     description="x")
    sealed = vault.breach.scope(dpo, inc.id, Selectors(staging=str(mid))).document
    ids = {uuid.UUID(p["id"]) for p in sealed["patients"]}
    assert len(ids) == 3 and not ids & {r.id for r in lab}  # the lab's other patients: no
    assert sealed["totals"]["by_exposure"] == {"sealed": 3}
    assert {p["id"]: p["special"] for p in sealed["patients"]} == {
        str(r.id): sorted(c.value for c in classify_record(r).special) for r in staged}
    assert "hiv" in sealed["totals"]["by_special"] and sealed["quarantined_units"] == 0
    both = vault.breach.scope(dpo, inc.id, Selectors(staging=str(mid),
                                                     staging_key_compromised=True)).document
    assert both["totals"]["by_exposure"] == {"decrypted": 3}
    with pytest.raises(NotFound):
        vault.breach.scope(dpo, inc.id, Selectors(staging=str(uuid.uuid4())))


def test_rows_stored_before_classification_are_counted_then_classified(vault, lab, dpo,
                                                                       clock) -> None:
    with vault._records.engine.begin() as conn:  # as a vault upgraded from an earlier version
        conn.execute(result.update().values(findings=None))
        conn.execute(comment.update().values(findings=None))
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "203.0.113.5", "care")
    vault.get_record(thief, lab[0].id)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="x")
    before = vault.breach.scope(dpo, inc.id, Selectors(actor=thief.actor_id)).document
    assert before["patients"][0]["special"] == []
    assert before["totals"]["records"]["unclassified"] == before["totals"]["records"]["results"]
    rows = vault.breach.classify_stored(dpo)
    assert rows == sum(r.result_count() + sum(1 for o in r.orders for _ in o.comments)
                       + sum(len(x.comments) for o in r.orders for x in o.results) for r in lab)
    assert vault.breach.classify_stored(dpo) == 0  # nothing left: a rerun does nothing
    after = vault.breach.scope(dpo, inc.id, Selectors(actor=thief.actor_id)).document
    assert after["patients"][0]["special"] == ["hiv"]
    assert after["totals"]["records"]["unclassified"] == 0


def test_sources_tokens_and_times_are_matched_as_the_log_writes_them(vault, lab, operator,
                                                                     clock, dpo) -> None:
    # A dual-stack listener logs an IPv4 client as ::ffff:a.b.c.d; a selector in either form
    # finds it.
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "::ffff:203.0.113.66", "care")
    start = clock.now()
    clock.advance(timedelta(minutes=15))
    vault.results.add_order(operator, lab[4].id, dataclasses.replace(
        lab[4].orders[0], id=uuid.uuid4(), comments=(),
        results=(dataclasses.replace(HIV, id=uuid.uuid4()),)))
    clock.advance(timedelta(minutes=15))
    vault.get_record(thief, lab[4].id)  # reads the HIV test entered 15 minutes before
    clock.set(start - timedelta(hours=2))  # an event chained late keeps its earlier time
    vault.get_record(thief, lab[4].id)
    clock.set(start + timedelta(hours=1))
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="x")
    for source in ("203.0.113.0/24", "203.0.113.66", "::ffff:203.0.113.66"):
        (p,) = vault.breach.scope(dpo, inc.id, Selectors(source=source)).document["patients"]
        assert p["id"] == str(lab[4].id) and p["events"] == 2
        assert p["first"] < p["last"] and "hiv" in p["special"]  # first and last by time
    upper = Selectors(actor=thief.actor_id.upper().replace("ACCOUNT", "account"))
    assert upper.actor == thief.actor_id
    token = uuid.uuid4()
    assert Selectors(token=str(token).upper()).token == str(token)


def test_a_signed_scope_copied_onto_another_incident_is_refused(vault, lab, dpo, clock) -> None:
    from labvault.breach.config import BreachConfig
    from labvault.breach.desk import breach_store
    from labvault.crypto.signing import InvalidSignature

    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "203.0.113.5", "care")
    vault.get_patient(thief, lab[0].id)
    first = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="insider",
                                       description="x")
    other = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="insider",
                                       description="y")
    vault.breach.scope(dpo, first.id, Selectors(actor=thief.actor_id))
    store = breach_store(vault)
    (row,) = store.scopes(first.id)
    copied = {k: v for k, v in dataclasses.asdict(row).items() if k != "id"}
    store.insert_scope({**copied, "incident_id": other.id})
    with pytest.raises(InvalidSignature):
        vault.breach.regulator.draft(dpo, other.id, BreachConfig())


def test_a_scope_waits_for_the_events_only_the_file_copy_holds(vault, settings, lab, clock,
                                                               dpo) -> None:
    vault.close()
    copied = dataclasses.replace(settings, audit_copy="file:audit.jsonl")
    v = Vault.open(copied, clock=clock)
    try:
        thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "203.0.113.5", "care")
        v.get_record(thief, lab[0].id)  # chained
        break_audit_chain(v)  # the database goes away: the next read is kept in the file
        v.get_record(thief, lab[1].id)
        mend_audit_chain(v)
        inc = v.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="x")
        with pytest.raises(InvalidRecord, match="1 events the chain has not taken"):
            v.breach.scope(dpo, inc.id, Selectors(actor=thief.actor_id))
        assert v.breach.scope(dpo, inc.id, Selectors(key=1)).document["patients"]  # not the log
        v.audit_log.recover(local_operator("recovery"))
        doc = v.breach.scope(dpo, inc.id, Selectors(actor=thief.actor_id)).document
        assert {uuid.UUID(p["id"]) for p in doc["patients"]} == {lab[0].id, lab[1].id}
        journal = settings.data_dir / "audit.jsonl"
        lines = journal.read_bytes().splitlines(keepends=True)
        journal.write_bytes(b"".join(lines[:1] + lines[2:]))  # a line removed: fail closed
        with pytest.raises(JournalTampered):
            v.breach.scope(dpo, inc.id, Selectors(actor=thief.actor_id))
    finally:
        v.close()
