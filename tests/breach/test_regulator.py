"""The regulator's documents of an incident: the CNIL draft (GDPR art. 33), the ARS / CERT Santé
report, the register (art. 33(5)); from a real stolen session the watcher locked, and from
hand-made scope documents of both versions. Signed, counts only, every value escaped."""

from __future__ import annotations

import hashlib
import json
import stat
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sms_gateway import rewrite_scope

from api_support import PASSWORD, enrol, personal_values
from labvault.access.principal import Principal, Role
from labvault.breach import regulator_forms as forms
from labvault.breach.config import BreachConfig
from labvault.breach.desk import Incident, breach_store
from labvault.breach.regulator import RegulatorDesk, check, render_html
from labvault.breach.regulator_docs import Statements, summarize
from labvault.breach.scope import Selectors
from labvault.crypto.signing import InvalidSignature, Signer
from labvault.errors import AccessDenied, AuthenticationFailed, InvalidRecord
from labvault.ingest.base import Parsed, Position
from labvault.secret import Secret
from labvault.synthetic import SyntheticLab

SOURCE = "203.0.113.66"
CONTROLLER = {"name": "Laboratoire des Tilleuls", "finess": "750000001",
              "address": "1 rue des Tilleuls, 75011 Paris", "dpo_name": "Claire DPO",
              "dpo_email": "dpo@lab.example", "dpo_phone": "+33 1 00 00 00 00",
              "regional_agency": "ARS Île-de-France",
              "regional_agency_email": "ars-idf-signalement@ars.example"}
CONFIG = BreachConfig.from_mapping({"controller": CONTROLLER})
NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)


@pytest.fixture
def lab(vault, operator):
    recs = list(SyntheticLab(seed=41, results_per_patient=2).records(16))
    vault.put_patients(operator, recs)
    return recs


def stolen_session(vault, clock, email, totp) -> str:
    challenge = vault.accounts.login(email, PASSWORD, SOURCE)
    grant = vault.accounts.complete_login(challenge, code=totp.at(clock.now()), source=SOURCE)
    clock.advance(timedelta(seconds=31))
    return grant.token


def assert_no_value(text: str, records) -> None:
    for value in personal_values(records):
        assert value not in text
    for r in records:
        assert str(r.id) not in text and r.id.hex not in text


def test_the_drafts_state_what_the_thief_read_and_what_was_done(vault, operator, clock, lab,
                                                                 dpo) -> None:
    vault.watch.start(background=False)
    account_id, email, totp = enrol(vault, operator, clock, Role.BIOLOGIST)
    token = stolen_session(vault, clock, email, totp)
    with pytest.raises(AuthenticationFailed):  # the watcher locks the account at the 13th
        for r in lab:
            who = vault.accounts.authenticate(token, source=SOURCE, purpose="care", request_id="r")
            vault.get_record(who, r.id)
            clock.advance(timedelta(seconds=2))
    clock.advance(timedelta(hours=2))
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="Compte utilisé depuis l'étranger <b>")
    scope = vault.breach.scope(dpo, inc.id, Selectors(actor=f"account:{account_id}"))
    desk = RegulatorDesk(vault)
    draft = desk.draft(dpo, inc.id, CONFIG, Statements(detection="<script>x</script>"))

    cnil = check(draft.cnil, vault.signing_public_key())
    assert cnil["data"]["patients"] == 13 and not draft.late
    assert cnil["data"]["by_exposure"] == {"decrypted": 13, "sealed": 0}
    counted = {c["code"]: (c["decrypted"], c["sealed"]) for c in cnil["data"]["categories"]}
    assert counted["identity"] == counted["results"] == counted["nir"] == (13, 0)
    totals = scope.document["totals"]
    assert {c["code"]: c["total"] for c in cnil["data"]["special"]} == totals.get("by_special", {})
    assert cnil["data"]["records"] == totals.get("records")
    assert {c["code"] for c in cnil["consequences"]} >= {"identity-fraud", "phishing",
                                                         "health-disclosure"}
    assert cnil["risk"]["level"] == "high" and cnil["notification"]["required"]
    assert cnil["people_notice"] | {"basis": ""} == {
        "required": True, "people": 13, "exempt_sealed": 0, "exemption": None, "basis": ""}
    assert [m["code"] for m in cnil["measures"]["taken"]] == ["account-locked"]
    assert [(a["rule"], a["response"]) for a in cnil["nature"]["detection"]["alerts"]] == [
        ("volume", "locked")]
    assert cnil["dpo"] == {"name": "Claire DPO", "email": "dpo@lab.example",
                           "phone": "+33 1 00 00 00 00"} and cnil["missing"] == []
    assert cnil["deadline"]["at"] == inc.deadline_at.isoformat()
    assert cnil["deadline"]["hours_left"] == 72.0 and cnil["phase"] == "initial"
    assert cnil["scope"]["audit"]["up_to_seq"] > 0
    ars = check(draft.ars, vault.signing_public_key())
    assert ars["structure"]["finess"] == "750000001"
    assert ars["recipient"]["agency"] == "ARS Île-de-France"
    assert {c["code"]: c["met"] for c in ars["criteria"]}["health-data"] == "oui"
    assert ars["impact"]["integrity"].startswith("Aucune modification")
    # Counts and categories only: no patient's value or id, in JSON or HTML; every value escaped.
    for envelope in (draft.cnil, draft.ars):
        html = render_html(envelope)
        assert_no_value(json.dumps(envelope, ensure_ascii=False) + html, lab)
        assert "&lt;b&gt;" in html and "<b>" not in html
    assert "&lt;script&gt;" in render_html(draft.cnil) and "<script>" not in render_html(draft.cnil)
    # Signed per kind: a changed body, or one kind's signature presented for another, fails.
    changed = dict(draft.cnil, document=dict(cnil, risk={"level": "unlikely", "label": ""}))
    with pytest.raises(InvalidSignature):
        check(changed, vault.signing_public_key())
    with pytest.raises(InvalidSignature):
        check(dict(draft.cnil, document=dict(cnil, kind=forms.ARS_KIND)), vault.signing_public_key())
    with pytest.raises(InvalidSignature):  # another lab's key
        check(draft.cnil, Ed25519PrivateKey.generate().public_key())
    # The draft is the DPO's audited act: the event carries the digests, not the text.
    (event,) = [e for e in vault._audit.events("breach:incident:manage")
                if e.detail.get("what") == "draft"]
    assert event.actor == dpo.actor_id and event.detail["cnil"] == draft.cnil["sha256"]
    assert "description" not in json.dumps(event.detail)


def test_late_drafts_need_reasons_and_the_register_says_who_was_notified(vault, lab, clock,
                                                                         dpo) -> None:
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care")
    for r in lab[:4]:
        vault.get_record(thief, r.id)
    for r in lab[4:6]:
        vault.find_patients(thief, nir=r.patient.nir)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="Mme Exemple a signalé un appel suspect")
    vault.breach.scope(dpo, inc.id, Selectors(source=SOURCE))
    desk = RegulatorDesk(vault)
    clock.advance(timedelta(hours=73))
    with pytest.raises(InvalidRecord) as caught:
        desk.draft(dpo, inc.id, CONFIG)
    assert caught.value.field == "delay_reason"
    late = desk.draft(dpo, inc.id, CONFIG, Statements(delay_reason="Analyse du journal"))
    body = late.cnil["document"]
    assert late.late and body["deadline"]["delay_reason"] == "Analyse du journal"
    assert body["deadline"]["hours_left"] == -1.0
    assert {c["code"]: c["decrypted"] for c in body["data"]["categories"]}["membership"] == 2
    with pytest.raises(InvalidRecord):
        desk.record_notification(dpo, inc.id, "cnil", at=clock.now(), reference="n° 12 Dupont")
    desk.record_notification(dpo, inc.id, "cnil", at=clock.now(), reference="CNIL-2026-0042")
    with pytest.raises(InvalidRecord):
        desk.record_not_notified(dpo, inc.id, "people", "too-busy")
    desk.record_not_notified(dpo, inc.id, "ars", "not-serious")
    # Once notified, a complementary draft (art. 33(4)) needs no reason for delay.
    assert desk.draft(dpo, inc.id, CONFIG).cnil["document"]["phase"] == "complementary"
    (entry,) = desk.register(dpo)
    reg = check(entry, vault.signing_public_key())
    assert reg["kind"] == forms.REGISTER_KIND and "description" not in reg["incident"]
    assert reg["facts"]["patients"] == 6 and reg["effects"]["risk"] == "high"
    cnil = reg["notifications"]["cnil"]
    assert (cnil["notified"], cnil["reference"], cnil["late"]) == (True, "CNIL-2026-0042", True)
    assert reg["notifications"]["ars"]["reason"] == "not-serious"
    assert reg["notifications"]["people"] | {"recorded_at": None} == {
        "required": True, "notified": False, "at": None, "reference": None, "reason": None,
        "reason_label": None, "notices": {}, "recorded_at": None}
    assert len(reg["drafts"]) == 2
    (full,) = desk.register(dpo, with_description=True)
    assert full["document"]["incident"]["description"].startswith("Mme Exemple")
    outcomes = [(e.outcome, e.detail.get("what")) for e in vault._audit.events(
        "breach:incident:manage")][2:]
    assert outcomes == [("invalid", "draft"), ("allowed", "draft"), ("allowed", "notified"),
                        ("allowed", "not-notified"), ("allowed", "draft"), ("allowed", "register"),
                        ("allowed", "register")]
    secretary = Principal(f"account:{uuid.uuid4()}", Role.SECRETARY, "10.1.0.8", "care")
    with pytest.raises(AccessDenied):
        desk.draft(secretary, inc.id, CONFIG)
    # A scope altered in the database is refused, not reported.
    (stored,) = breach_store(vault).scopes(inc.id)
    rewrite_scope(vault, stored.id, lambda text: text.replace('"events":', '"events":1'))
    with pytest.raises(InvalidSignature):
        desk.draft(dpo, inc.id, CONFIG, Statements(delay_reason="x"))
    with pytest.raises(AccessDenied):
        desk.register(secretary)



def test_a_stolen_staging_area_whose_key_stayed_safe_exempts_the_people(vault, operator, clock,
                                                                       dpo) -> None:
    plan = json.dumps({"labvault_plan": 1, "created_at": "2026-03-02T08:30:00+00:00",
                       "created_by": "t", "sources": [{"index": 0, "name": "x.hl7",
                                                       "format": "hl7v2", "size": 0,
                                                       "sha256": "", "units": 0}]}).encode()
    mid = uuid.uuid4()
    vault.imports.begin(operator, mid, plan, clock.now() + timedelta(days=30))
    staged = list(SyntheticLab(seed=43, results_per_patient=1).records(3))
    vault.imports.import_units(operator, mid, 0, [
        Parsed(i + 1, Position("x.hl7", i + 1), r, hashlib.sha256(r.id.bytes).digest(),
               source_patient_id=r.id.hex[:10]) for i, r in enumerate(staged)])
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="exposed-staging",
                                     description="Copie de la zone de transit sur un poste")
    vault.breach.scope(dpo, inc.id, Selectors(staging=str(mid)))
    desk = RegulatorDesk(vault)
    sealed = desk.draft(dpo, inc.id, CONFIG).cnil["document"]
    assert sealed["data"]["by_exposure"] == {"decrypted": 0, "sealed": 3}
    assert sealed["notification"]["required"] is False
    assert sealed["people_notice"]["exemption"] == "34(3)(a)"
    assert sealed["people_notice"]["required"] is False
    assert [c["code"] for c in sealed["consequences"]] == ["sealed-only"]
    assert sealed["data"]["quarantined_units"] == 0
    desk.record_not_notified(dpo, inc.id, "people", "sealed-only")
    # The staging key leaked after all: the latest scope says decrypted, and so does the draft.
    vault.breach.scope(dpo, inc.id, Selectors(staging=str(mid), staging_key_compromised=True))
    opened = desk.draft(dpo, inc.id, CONFIG)
    body = opened.cnil["document"]
    assert body["data"]["by_exposure"] == {"decrypted": 3, "sealed": 0}
    assert body["people_notice"]["required"] and body["people_notice"]["exemption"] is None
    assert check(opened.ars, vault.signing_public_key())["impact"]["confidentiality"] is True
    html = render_html(opened.cnil) + render_html(opened.ars)
    assert_no_value(html + json.dumps([opened.cnil, opened.ars], ensure_ascii=False), staged)
    (entry,) = desk.register(dpo)
    people = entry["document"]["notifications"]["people"]
    assert (people["required"], people["reason"]) == (True, "sealed-only")

# -- the builders on hand-made scope documents ----------------------------------------------------
def incident(vector: str = "exposed-staging") -> Incident:
    return Incident(uuid.uuid4(), NOW, NOW, NOW + timedelta(hours=72), vector,
                    Secret("Zone de transit copiée"), "open", "local-operator:test")


def patient(categories, exposure=None, special=None, first=None, last=None) -> dict:
    p = {"id": str(uuid.uuid4()), "categories": categories, "events": 1, "first": first,
         "last": last}
    if exposure is not None:
        p["exposure"] = exposure
    if special is not None:
        p["special"] = special
    return p


WHOLE = ["attachments", "comments", "contact", "identity", "insurance", "nir", "orders",
         "prescriber", "results"]


def test_only_sealed_exposures_exempt_people_and_may_spare_the_cnil() -> None:
    doc = {"version": 2, "basis": "staging", "actors": [], "events": 0,
           "patients": [patient(WHOLE, "sealed", []) for _ in range(3)],
           "totals": {"patients": 3, "records": {"results": 12, "comments": 2}}}
    case = forms.Case(incident(), None, summarize(doc))
    body = forms.cnil(case, CONTROLLER, Statements(), NOW)
    assert body["notification"]["required"] is False
    assert body["people_notice"] | {"basis": ""} == {
        "required": False, "people": 0, "exempt_sealed": 3, "exemption": "34(3)(a)", "basis": ""}
    assert [c["code"] for c in body["consequences"]] == ["sealed-only"]
    assert body["risk"]["level"] == "unlikely" and body["data"]["records"] == {
        "results": 12, "comments": 2}
    assert all(c["sealed"] == 3 and c["decrypted"] == 0 for c in body["data"]["categories"])
    ars = forms.ars(case, CONTROLLER, Statements(), NOW)
    assert ars["impact"]["confidentiality"] is False
    assert ars["impact"]["integrity"] == "Non évaluée par labvault"


def test_each_category_says_how_many_were_read_and_how_many_stayed_sealed() -> None:
    doc = {"version": 2, "basis": "audit", "actors": ["account:" + str(uuid.uuid4()) + "/token:x"],
           "events": 5, "patients": [
               patient(["identity", "results"], "decrypted", ["hiv"],
                       "2026-03-01T09:00:00+01:00", "2026-03-01T10:00:00+00:00"),
               patient(["identity", "results"], "sealed", ["hiv", "hepatitis"]),
               patient(["membership"], "decrypted", [], "2026-03-01T07:30:00+00:00",
                       "2026-03-01T07:30:00+00:00"),
               patient(["contact"], "mystery")],  # an unknown exposure is read as decrypted
           "totals": {}}
    s = summarize(doc)
    assert s["by_exposure"] == {"decrypted": 3, "sealed": 1} and s["accounts"] == 1
    assert [(c["code"], c["decrypted"], c["sealed"]) for c in s["categories"]] == [
        ("identity", 1, 1), ("contact", 1, 0), ("results", 1, 1), ("membership", 1, 0)]
    assert [(c["code"], c["decrypted"], c["sealed"]) for c in s["special"]] == [
        ("hiv", 1, 1), ("hepatitis", 0, 1)]
    assert {c["code"]: c["people"] for c in s["consequences"]} == {
        "phishing": 1, "health-disclosure": 1, "special-disclosure": 1,
        "membership-disclosure": 1}
    assert s["window"] == {"first": "2026-03-01T07:30:00+00:00",
                           "last": "2026-03-01T10:00:00+00:00"}
    body = forms.cnil(forms.Case(incident("insider"), None, s), CONTROLLER, Statements(), NOW)
    assert body["people_notice"]["required"] and body["people_notice"]["people"] == 1
    assert body["people_notice"]["exempt_sealed"] == 1
    assert body["data"]["records"] is None


def test_old_scope_documents_count_as_decrypted_and_no_scope_means_notify() -> None:
    v1 = {"version": 1, "actors": [], "events": 2,
          "patients": [patient(["identity", "contact", "nir", "insurance"])],
          "totals": {"patients": 1, "by_category": {}}}
    s = summarize(v1)
    assert s["basis"] == "audit" and s["by_exposure"] == {"decrypted": 1, "sealed": 0}
    assert s["special"] == [] and s["risk"] == "high"  # the NIR read in clear
    unknown = forms.cnil(forms.Case(incident(), None, None), {}, Statements(), NOW)
    assert unknown["notification"]["required"] and unknown["risk"]["level"] == "unknown"
    assert unknown["data"] == {"established": False} and len(unknown["missing"]) == 6
    envelope = {"document": unknown, "algorithm": "Ed25519", "key_id": "k", "sha256": "h",
                "signature": "s"}
    assert "Périmètre non encore établi" in render_html(envelope)
    with pytest.raises(InvalidRecord):
        Statements(measures_taken=("x",) * 21)


def test_draft_register_and_verify_commands(tmp_path) -> None:
    from typer.testing import CliRunner

    from labvault import Settings, Vault, local_operator
    from labvault.breach.commands import breach_app
    from labvault.breach.commands_regulator import register
    from labvault.cli import app
    from labvault.crypto.signing import public_pem

    if "draft" not in {c.name for c in breach_app.registered_commands}:
        register(breach_app)
    data_dir = tmp_path / "vault"
    vault = Vault.init(Settings.embedded(data_dir))
    try:
        recs = list(SyntheticLab(seed=5, results_per_patient=1).records(6))
        vault.put_patients(local_operator("test"), recs)
        thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care")
        for r in recs[:3]:
            vault.get_record(thief, r.id)
        key = tmp_path / "lab.pem"
        key.write_text(public_pem(Signer(vault._keys).public_key))
    finally:
        vault.close()
    (data_dir / "breach.toml").write_text(
        "[controller]\n" + "".join(f'{k} = "{v}"\n' for k, v in CONTROLLER.items()))
    runner = CliRunner()

    def lv(*args: str):
        result = runner.invoke(app, [*args, "-d", str(data_dir)] if args[1] != "verify" else args,
                               env={"COLUMNS": "200", "LABVAULT_HOME": ""})
        assert_no_value(result.output, recs)
        return result

    r = lv("breach", "open", "--vector", "stolen-credentials", "--description", "compte volé")
    incident_id = r.output.split()[1]
    assert lv("breach", "scope", incident_id, "--source", SOURCE, "--out",
              str(tmp_path / "scope.json")).exit_code == 0
    out = tmp_path / "drafts"
    r = lv("breach", "draft", incident_id, "--out", str(out), "--measure", "Mot de passe changé")
    assert r.exit_code == 0, r.output
    assert "notify the CNIL before" in r.output and "72.0 h left" in r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ars-report.html", "ars-report.json", "cnil-art33.html", "cnil-art33.json"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.iterdir())
    assert "Mot de passe changé" in (out / "cnil-art33.html").read_text()
    r = lv("breach", "verify", str(out / "cnil-art33.json"), "--public-key", str(key))
    assert r.exit_code == 0 and "valid: labvault-cnil-art33-draft" in r.output
    forged = json.loads((out / "ars-report.json").read_text())
    forged["document"]["structure"]["finess"] = "750000002"
    (out / "forged.json").write_text(json.dumps(forged))
    assert lv("breach", "verify", str(out / "forged.json"), "--public-key", str(key)).exit_code == 1
    r = lv("breach", "notified", incident_id, "--to", "cnil", "--reference", "CNIL-1")
    assert r.exit_code == 0, r.output
    r = lv("breach", "not-notified", incident_id, "--to", "people", "--reason", "later")
    assert r.exit_code == 1 and "invalid reason" in r.output
    r = lv("breach", "register")
    (line,) = r.output.splitlines()
    assert "compte volé" not in line
    assert json.loads(line)["document"]["notifications"]["cnil"]["reference"] == "CNIL-1"
    reg = tmp_path / "register.json"
    assert lv("breach", "register", "--out", str(reg)).exit_code == 0
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600
    assert json.loads(reg.read_text())[0]["document"]["incident"]["description"] == "compte volé"
    assert lv("breach", "verify", str(reg), "--public-key", str(key)).exit_code == 0

