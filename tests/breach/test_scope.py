"""Breach scope from the audit log: exactly the patients the selected activity reached, with
the data categories it exposed, reproducible and signed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from labvault.access.principal import Principal, Role
from labvault.breach.scope import Selectors, canonical
from labvault.crypto.signing import InvalidSignature, verify
from labvault.errors import AccessDenied, InvalidRecord
from labvault.store.tables import incident
from labvault.synthetic import SyntheticLab

THIEF_SOURCE = "203.0.113.66"


@pytest.fixture
def lab(vault, operator):
    recs = list(SyntheticLab(seed=31, results_per_patient=2).records(30))
    vault.put_patients(operator, recs)
    return recs


def test_the_scope_is_exactly_what_the_thief_got(vault, lab, clock, dpo) -> None:
    victim = uuid.uuid4()
    thief = Principal(f"account:{victim}", Role.BIOLOGIST, THIEF_SOURCE, "care")
    owner = Principal(f"account:{victim}", Role.BIOLOGIST, "10.1.0.7", "care")
    colleague = Principal(f"account:{uuid.uuid4()}", Role.SECRETARY, "10.1.0.8", "care")
    read, searched = lab[:6], [r for r in lab[6:12] if r.patient.nir]
    clock.advance(timedelta(hours=1))
    start = clock.now()
    for r in read:
        vault.get_record(thief, r.id)
        clock.advance(timedelta(seconds=20))
    for r in searched:  # found, never opened: membership only
        vault.find_patients(thief, nir=r.patient.nir)
    vault.find_patients(thief, nir="1 84 12 75 123 456 78")  # a miss names nobody
    for r in lab[12:16]:  # the real owner's work and a colleague's: not the incident
        vault.get_patient(owner, r.id)
        vault.get_patient(colleague, r.id)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="Compte biologiste utilisé depuis l'étranger")
    assert inc.deadline_at == inc.detected_at + timedelta(hours=72)
    paris = start.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))  # any offset
    scope = vault.breach.scope(dpo, inc.id, Selectors(actor=f"account:{victim}",
                                                      source=THIEF_SOURCE, since=paris))
    got = {uuid.UUID(p["id"]): p["categories"] for p in scope.document["patients"]}
    assert set(got) == {r.id for r in read} | {r.id for r in searched}
    assert all(set(got[r.id]) >= {"identity", "results", "comments", "nir"} for r in read)
    assert all(got[r.id] == ["membership"] for r in searched)
    assert scope.document["totals"]["patients"] == len(got)
    assert scope.document["actors"] == [f"account:{victim}"]
    # Signed: the canonical document verifies with the vault's public key, a changed one not.
    verify(vault.signing_public_key(), scope.signature, scope.canonical)
    tampered = dict(scope.document, events=scope.document["events"] + 1)
    with pytest.raises(InvalidSignature):
        verify(vault.signing_public_key(), scope.signature, canonical(tampered))
    # No value in the document: ids and categories only.
    text = scope.canonical.decode()
    for r in lab:
        assert r.patient.last_name not in text and (not r.patient.nir or r.patient.nir not in text)


def test_the_same_selectors_over_the_same_log_give_the_same_document(vault, lab, clock,
                                                                     dpo) -> None:
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, THIEF_SOURCE, "care")
    for r in lab[:5]:
        vault.get_record(thief, r.id)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="test")
    first = vault.breach.scope(dpo, inc.id, Selectors(source=THIEF_SOURCE))
    for r in lab[5:9]:  # the thief goes on after the first scope
        vault.get_record(thief, r.id)
    again = vault.breach.scope(dpo, inc.id, Selectors(source=THIEF_SOURCE),
                               up_to_seq=first.document["audit"]["up_to_seq"])
    assert again.canonical == first.canonical and again.digest == first.digest
    later = vault.breach.scope(dpo, inc.id, Selectors(source=THIEF_SOURCE))
    assert later.document["totals"]["patients"] == 9


def test_a_leaked_token_is_scoped_by_its_id(vault, lab, operator, dpo) -> None:
    from labvault.access.permissions import Permission

    account_id, _ = vault.accounts.create_account(
        operator, email="gw@lab.example", display_name="Gateway", roles=[Role.SERVICE])
    token_id, token = vault.accounts.issue_token(operator, account_id,
                                                 scopes=[Permission.PATIENT_READ],
                                                 ttl=timedelta(days=1), label="gw")
    as_token = vault.accounts.authenticate_token(token, source="198.51.100.9", purpose="feed",
                                                 request_id="r")
    for r in lab[:3]:
        vault.get_patient(as_token, r.id)
    inc = vault.breach.open_incident(dpo, detected_at=vault._clock.now(), vector="leaked-token",
                                     description="token leaked")
    scope = vault.breach.scope(dpo, inc.id, Selectors(token=str(token_id)))
    assert {p["id"] for p in scope.document["patients"]} == {str(r.id) for r in lab[:3]}
    assert {c for p in scope.document["patients"] for c in p["categories"]} == {
        "identity", "contact", "nir", "insurance"}


def test_incidents_are_the_dpos_and_their_description_is_sealed(vault, lab, clock, dpo) -> None:
    secretary = Principal(f"account:{uuid.uuid4()}", Role.SECRETARY, "10.1.0.8", "care")
    with pytest.raises(AccessDenied):
        vault.breach.open_incident(secretary, detected_at=clock.now(), vector="insider",
                                   description="x")
    with pytest.raises(InvalidRecord):
        vault.breach.open_incident(dpo, detected_at=clock.now(), vector="aliens",
                                   description="x")
    with pytest.raises(InvalidRecord):
        Selectors()
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="insider",
                                     description="Mme Dupont a consulté le dossier de sa voisine")
    with vault._records.engine.connect() as conn:
        raw = conn.execute(select(incident.c.description)).scalar_one()
    assert b"Dupont" not in raw.blob
    (listed,) = vault.breach.incidents(dpo)
    assert listed.description.reveal().startswith("Mme Dupont") and "Dupont" not in repr(listed)
    events = [(e.outcome, e.detail.get("what"))
              for e in vault._audit.events("breach:incident:manage")]
    assert events == [("denied", None), ("allowed", "open"), ("allowed", "list")]
    assert inc.status == "open"


def test_breach_commands(tmp_path) -> None:
    import json as json_
    import stat

    from typer.testing import CliRunner

    from labvault import FixedClock, Settings, Vault, local_operator
    from labvault.cli import app

    data_dir = tmp_path / "vault"
    clock = FixedClock(__import__("datetime").datetime(2026, 3, 2, 8, 0,
                                                       tzinfo=__import__("datetime").UTC))
    vault = Vault.init(Settings.embedded(data_dir), clock=clock)
    try:
        recs = list(SyntheticLab(seed=5, results_per_patient=1).records(8))
        vault.put_patients(local_operator("test"), recs)
        thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, THIEF_SOURCE, "care")
        for r in recs[:3]:
            vault.get_record(thief, r.id)
    finally:
        vault.close()
    runner = CliRunner()

    def lv(*args: str):
        result = runner.invoke(app, [*args, "-d", str(data_dir)],
                               env={"COLUMNS": "200", "LABVAULT_HOME": ""})
        assert all(r.patient.last_name not in result.output for r in recs)
        return result

    r = lv("breach", "open", "--vector", "stolen-credentials", "--description", "compte volé",
           "--detected-at", "2026-03-02T10:00:00+01:00")
    assert r.exit_code == 0, r.output
    assert "before 2026-03-05 09:00 UTC" in r.output  # 72 h after 10:00 in Paris
    incident_id = r.output.split()[1]
    naive = lv("breach", "open", "--vector", "insider", "--description", "x",
               "--detected-at", "2026-03-02T10:00:00")  # whose 10:00? refused
    assert naive.exit_code == 2 and "needs its offset" in naive.output
    r = lv("breach", "list")
    assert incident_id in r.output and "stolen-credentials" in r.output
    out = tmp_path / "scope.json"
    r = lv("breach", "scope", incident_id, "--source", "203.0.113.0/24", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "3 patients reached by 3 events" in r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    saved = json_.loads(out.read_text())
    assert {p["id"] for p in saved["document"]["patients"]} == {str(r.id) for r in recs[:3]}
    assert lv("breach", "scope", incident_id, "--out", str(out)).exit_code == 2  # no selector
    r = lv("breach", "classify-stored")  # every row was classified when stored
    assert r.exit_code == 0 and "0 results and comments classified" in r.output, r.output
