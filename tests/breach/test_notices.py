"""Article 34 notices: queued from the signed scope per patient and channel, the contact opened
under audit and stored nowhere; their text (French, categories only, no special category in
an SMS); verification codes on the public page; answers to exposure checks; the commands."""

from __future__ import annotations

import contextlib
import dataclasses
import email
import email.policy
import itertools
import json
import re
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sms_gateway import (
    ENVIRON,
    PUBLIC_URL,
    TOKEN,
    TOKEN_ENV,
    SmsGateway,
    SmtpRecorder,
    breach_config,
    contacts_of,
    people,
    rewrite_scope,
    signed_scope,
    smtp_server,
    tls_contexts,
)
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from labvault import FixedClock, Settings, Vault, local_operator
from labvault.access.permissions import BULK_LIMIT
from labvault.access.principal import Principal, Role
from labvault.breach import notice_text as text
from labvault.breach.desk import VECTORS, breach_store
from labvault.breach.notices import Exposure, Outbox, VerifyThrottled
from labvault.cli import app as cli_app
from labvault.crypto.blind import BlindIndex
from labvault.errors import (
    AccessDenied,
    ConfigurationError,
    InvalidRecord,
    NotFound,
    StepUpRequired,
)
from labvault.store.alerts import AlertStore
from labvault.store.tables import audit_event, breach_notice, incident_scope
from labvault.synthetic import SyntheticLab
from labvault.watch.engine import DECOY_KEY

CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")
REF = re.compile(r"INC-[0-9A-F]{8}")
# GSM 03.38 basic character set: an SMS written in it is 160 characters a part, not 70.
GSM = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRS"
          "TUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
ENTRY = {"categories": ["identity", "contact", "nir", "results"], "special": ["hiv"]}
UPDATES = (None, {"categories": ["results", "comments"], "special": True, "decrypted": True},
           {"categories": [], "special": False, "decrypted": True})  # first notice, updates


def open_incident(vault, dpo, clock, vector: str = "stolen-credentials"):
    return vault.breach.open_incident(dpo, detected_at=clock.now(), vector=vector,
                                      description="Compte utilisé depuis une adresse inconnue")


def notices(vault) -> list:
    with vault._records.engine.connect() as conn:
        return list(conn.execute(select(breach_notice)))


def test_queueing_opens_contacts_under_audit_and_stores_none(vault, settings, backend, operator,
                                                            lab, dpo, clock) -> None:
    vault.watch.seed_decoys(operator, 1, seed=3)
    tags, index = AlertStore(vault._records.engine).decoy_tags(), BlindIndex(
        DECOY_KEY, vault._keys.index_key(DECOY_KEY))
    decoy = next(p for ids in vault._records.iter_ids() for p in ids
                 if index.compute(str(p)) in tags)
    inc = open_incident(vault, dpo, clock)
    outbox = Outbox(vault, breach_config())
    # Refusals come first, and name no value.
    biologist = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "10.1.0.9", "care")
    for call in (outbox.queue_incident, outbox.status):
        with pytest.raises(AccessDenied):
            call(biologist, inc.id)
    with pytest.raises(NotFound):
        outbox.queue_incident(dpo, uuid.uuid4())
    with pytest.raises(InvalidRecord, match="no scope"):
        outbox.queue_incident(dpo, inc.id)
    with pytest.raises(ConfigurationError, match="public_url"):
        Outbox(vault, breach_config(public_url="")).queue_incident(dpo, inc.id)
    with pytest.raises(NotFound):
        outbox.enqueue_exposure_answer(uuid.uuid4())
    entries = [{"id": r.id, **ENTRY} for r in lab] + [{"id": decoy, "categories": ["identity"]}]
    entries[4]["exposure"] = "sealed"
    signed_scope(vault, inc.id, entries)
    opened: list[str] = []  # which sealed columns the queue decrypts
    real = vault._cipher_for

    def spy(pid, wrapped):
        cipher = real(pid, wrapped)
        return SimpleNamespace(open=lambda t, c, r, s: (opened.append(c), cipher.open(t, c, r, s))[1])

    vault._cipher_for = spy
    try:
        assert outbox.queue_incident(dpo, inc.id) == 5
    finally:
        del vault._cipher_for
    assert opened and set(opened) <= {"email", "phone"}  # never a name
    got = {(n.patient_id, n.channel, n.state) for n in notices(vault)}
    assert got == {(lab[0].id, "email", "queued"), (lab[0].id, "sms", "queued"),
                   (lab[1].id, "email", "queued"), (lab[2].id, "none", "done"),
                   (lab[3].id, "sms", "queued"), (lab[5].id, "email", "queued")}
    assert outbox.queue_incident(dpo, inc.id) == 0  # again: nothing new
    assert outbox.queue_incident(dpo, inc.id, include_sealed=True) == 2
    assert {n.channel for n in notices(vault) if n.patient_id == lab[4].id} == {"email", "sms"}
    assert not [n for n in notices(vault) if n.patient_id == decoy]  # a decoy is nobody
    # Each queueing opened the contacts after an event naming the patients (not the decoy).
    with vault._records.engine.connect() as conn:
        events = list(conn.execute(select(audit_event).where(
            audit_event.c.purpose == "breach notification").order_by(audit_event.c.id)))
    miss, events = events[0], events[1:]  # the unknown patient asked an answer for
    assert (miss.actor, miss.outcome, miss.categories) == ("labvault:notices", "not_found", None)
    assert len(events) == 3 and all(e.actor == dpo.actor_id and e.categories == "administrative"
                                    for e in events)
    named = set(json.loads(events[0].patient_ids))
    assert named == {r.id.hex for r in lab if r is not lab[4]}
    assert lab[4].id.hex in json.loads(events[2].patient_ids) and decoy.hex not in named
    # The database holds no contact, and no code: only keyed hashes and sealed outcomes.
    with vault._records.engine.connect() as conn:
        stored = " ".join(str(tuple(r)) for t in (breach_notice, audit_event)
                          for r in conn.execute(select(t)))
    assert not [v for v in contacts_of(lab) if v in stored]
    if backend == "sqlite":
        raw = b"".join(p.read_bytes() for p in Path(settings.data_dir).iterdir() if p.is_file())
        assert not [v for v in contacts_of(lab) if v.encode() in raw]
    status = outbox.status(dpo, inc.id)
    assert status["by_outcome"] == {"pending": 7, "sent": 0, "failed": 0, "undeliverable": 1}
    assert status["errors"] == {"no-contact": 1} and status["listed"] == 7
    assert outbox.deliver_due() == dict.fromkeys(("sent", "retrying", "failed", "undeliverable"),
                                                 0)  # no channel configured: they wait
    scope_id = signed_scope(vault, inc.id, entries)
    rewrite_scope(vault, scope_id, lambda text: text + " ")  # changed behind the signature
    with pytest.raises(InvalidRecord, match="signature"):
        outbox.queue_incident(dpo, inc.id)


def test_codes_verify_on_the_public_page_and_answers_say_which_incidents(
        vault, operator, lab, dpo, clock, client, login, tmp_path) -> None:
    inc = open_incident(vault, dpo, clock)
    signed_scope(vault, inc.id, [{"id": r.id, **ENTRY} for r in lab])
    config = breach_config()
    client.app.state.breach_config = config
    chief = login(Role.DPO)
    r = client.post("/notices/queue", json={"incident_id": str(inc.id)}, headers=chief.headers)
    assert r.status_code == 200 and r.json() == {"queued": 7}
    with SmsGateway() as gateway:
        sms = Outbox(vault, breach_config(sms_url=gateway.url), environ=ENVIRON)
        assert sms.deliver_due()["sent"] == 3
    code, ref = CODE.search(gateway.received[0].text)[0], REF.search(gateway.received[0].text)[0]
    assert ref == text.short_ref(inc.id)

    genuine = client.post("/verify/check", json={"code": code})
    assert genuine.status_code == 200
    assert genuine.json() == {"status": "issued", "issuer": "Laboratoire Exemple",
                              "issued_on": "2026-03-02", "about": "incident", "incident": ref}
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert client.post("/verify/check", json={"code": typed}).json()["status"] == "issued"
    altered = code[:-1] + ("A" if code[-1] != "A" else "B")
    unknown = client.post("/verify/check", json={"code": altered})
    assert unknown.status_code == 200 and unknown.json() == {
        "status": "unknown", "issuer": None, "issued_on": None, "about": None, "incident": None}
    assert set(unknown.headers) == set(genuine.headers)
    page = client.get("/verify")
    assert page.status_code == 200 and "<form" in page.text and "Laboratoire Exemple" in page.text
    answered = client.post("/verify", content=f"code={code}",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert "a bien été émis par Laboratoire Exemple le 2 mars 2026" in answered.text
    assert ref in answered.text
    refused = client.post("/verify", content="code=ZZZZZ-ZZZZZ",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 200 and "Code inconnu" in refused.text
    cross = client.post("/verify", content=f"code={code}", headers={
        "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    # Unknown codes from one source are throttled (the 5th in a row blocks), genuine ones too.
    for _ in range(3):
        client.post("/verify/check", json={"code": "ZZZZZ-ZZZZZ"})
    blocked = client.post("/verify/check", json={"code": code})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    clock.advance(timedelta(seconds=2))
    assert client.post("/verify/check", json={"code": code}).json()["status"] == "issued"
    # Each check audited with its outcome, never the code; no answer names anybody.
    with vault._records.engine.connect() as conn:
        checks = list(conn.execute(select(audit_event).where(
            audit_event.c.action == "breach:notice:verify")))
    assert [e.outcome for e in checks].count("issued") == 4
    assert {e.outcome for e in checks} == {"issued", "unknown", "throttled"}
    audited = " ".join(str(tuple(e)) for e in checks).upper()
    assert code.replace("-", "") not in audited.replace("-", "") and code not in audited
    personal = contacts_of(lab) + [r.patient.last_name for r in lab]
    for response in (genuine, unknown, page, answered, refused, blocked):
        assert not [v for v in personal if v in response.text]
    status = client.post("/notices/status", json={"incident_id": str(inc.id)},
                         headers=chief.headers)
    assert status.status_code == 200 and status.json()["by_channel"]["sms"] == {"sent": 3}

    # Answers to exposure checks say which incidents concern the person, or that none does.
    clock.advance(timedelta(days=3))
    second = open_incident(vault, dpo, clock, "lost-backup")
    signed_scope(vault, second.id, [{"id": lab[0].id, "categories": ["identity"],
                                     "exposure": "sealed"}])
    stranger = people(seed=77)[3]  # a mobile only, in no incident
    vault.put_patients(operator, [stranger])
    recorder, (server_tls, _) = SmtpRecorder(), tls_contexts(tmp_path / "tls")
    with smtp_server(recorder, server_tls) as port, SmsGateway() as gateway:
        outbox = Outbox(vault, breach_config(smtp_port=port, cafile=str(tmp_path / "tls/ca.pem"),
                                             sms_url=gateway.url), environ=ENVIRON)
        assert outbox.exposures_of(lab[0].id) == [
            Exposure(inc.id, inc.detected_at.date(), tuple(ENTRY["categories"]), ("hiv",),
                     "decrypted"),
            Exposure(second.id, second.detected_at.date(), ("identity",), (), "sealed")]
        reads: list[str] = []  # each scope is read and checked once per outbox, not per call
        engine = vault._records.engine
        listen = (engine, "before_cursor_execute", lambda *a: reads.append(a[2]))
        event.listen(*listen)
        try:
            assert len(outbox.exposures_of(lab[0].id)) == 2
            assert outbox.exposures_of(stranger.id) == []
        finally:
            event.remove(*listen)
        assert reads and not [q for q in reads if "incident_scope.document" in q]
        assert len(outbox.enqueue_exposure_answer(lab[0].id)) == 2  # e-mail and SMS
        assert len(outbox.enqueue_exposure_answer(stranger.id)) == 1
        assert outbox.deliver_due()["sent"] == 4 + 3  # the incident's e-mails, the answers
    mails = [email.message_from_bytes(m.content, policy=email.policy.default)
             for m in recorder.messages]
    body = next(m for m in mails if "réponse" in m["Subject"]).get_content()
    assert ref in body and text.short_ref(second.id) in body
    assert "relevant de données de santé sensibles" in body and "étaient chiffrées" in body
    by_number = {m.to: m.text for m in gateway.received}
    assert ref in by_number["+33612345678"] and "sensible" not in by_number["+33612345678"]
    assert "Aucun incident de sécurité connu" in by_number["+33798765432"]
    answer = outbox.verify(CODE.search(by_number["+33798765432"])[0], "10.9.9.9")
    assert (answer.status, answer.about, answer.incident) == ("issued", "exposure-answer", None)


def test_every_notice_is_plain_french_without_values_and_renders_fast() -> None:
    config = breach_config()
    entries = [{"categories": list(text.CATEGORIES), "special": ["hiv", "genetic"]},
               {"categories": ["membership"], "exposure": "sealed"}, {}]
    for vector in VECTORS:
        inc = SimpleNamespace(id=uuid.uuid4(), vector=vector,
                              detected_at=datetime(2026, 1, 1, 23, 30, tzinfo=UTC))
        for entry, added, channel in itertools.product(entries, UPDATES, ("email", "sms")):
            _, body = text.notice(config, channel, text.new_code(), inc, entry, added)
            assert ("2 janvier 2026" in body) is (channel == "email")  # 00:30 in Paris
            assert PUBLIC_URL in body and "CNIL" in body and CODE.search(body)
            assert not re.search(r"hiv|genetic|VIH|génétique", body, re.I)
            assert bool(re.search("complète le précédent|complément à notre message", body)) is (
                added is not None)
            if channel == "sms":
                assert set(body.strip()) <= GSM | set(PUBLIC_URL), set(body) - GSM
                assert len(body) <= 3 * 153 and "sensible" not in body
    assert text.normalize_code(" ab cde-fgh0o1 ") is None  # 11 characters
    assert text.normalize_code(" ab cde-fgh0o ") == "ABCDEFGH00"  # O typed for 0
    assert text.normalize_code("k7q2m 9xw4d") == "K7Q2M9XW4D"
    assert text.normalize_code("UUUUU-UUUUU") is None  # U is not in the alphabet
    assert text.measure_rendering(400)["per_second"] >= 1000


def test_the_commands_queue_send_and_count(tmp_path: Path) -> None:
    data_dir = tmp_path / "vault"
    lab = people(seed=61)
    dpo = Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")
    vault = Vault.init(Settings.embedded(data_dir), clock=FixedClock(datetime.now(UTC)))
    try:
        vault.put_patients(local_operator("test data"), lab)
        inc = open_incident(vault, dpo, vault._clock)
        signed_scope(vault, inc.id, [{"id": r.id, **ENTRY} for r in lab])
    finally:
        vault.close()
    recorder, (server_tls, _) = SmtpRecorder(), tls_contexts(tmp_path / "tls")
    runner = CliRunner()
    with smtp_server(recorder, server_tls) as port, SmsGateway() as gateway:
        (data_dir / "breach.toml").write_text(
            '[controller]\nname = "Laboratoire Exemple"\ndpo_email = "dpo@labo.example"\n'
            f'[notices]\npublic_url = "{PUBLIC_URL}"\nsender_email = "labo@labo.example"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port}\ncafile = "{tmp_path / "tls/ca.pem"}"\n'
            f'[sms]\nurl = "{gateway.url}"\ntoken_env = "{TOKEN_ENV}"\nsender = "Labo"\n')

        def run(*args: str):
            result = runner.invoke(cli_app, ["breach", *args, "-d", str(data_dir)],
                                   env={"COLUMNS": "200", "NO_COLOR": "1", TOKEN_ENV: TOKEN})
            assert result.exit_code == 0, result.output
            leaked = [v for v in contacts_of(lab) + [r.patient.last_name for r in lab]
                      if v in result.output]
            assert not leaked
            return result.output

        assert "7 notices queued" in run("notify", str(inc.id))
        assert "sent 7" in run("deliver")
        counts = json.loads(run("notices", str(inc.id), "--json"))
    assert counts["by_outcome"]["sent"] == 7 and counts["patients_reached"] == 5
    assert len(recorder.messages) == 4 and len(gateway.accepted) == 3
    bad = runner.invoke(cli_app, ["breach", "notify", "not-a-uuid", "-d", str(data_dir)])
    assert bad.exit_code == 2


def test_two_queueings_at_once_record_each_notice_once(vault, lab, dpo, clock) -> None:
    inc = open_incident(vault, dpo, clock)
    signed_scope(vault, inc.id, [{"id": r.id, **ENTRY} for r in lab])
    both = threading.Barrier(2)
    counts: list[int] = []
    errors: list[str] = []

    def queue(outbox: Outbox) -> None:
        try:
            counts.append(outbox.queue_incident(dpo, inc.id))
        except Exception as exc:  # noqa: BLE001 - reported below, by type
            errors.append(type(exc).__name__)

    threads = []
    for _ in range(2):
        outbox = Outbox(vault, breach_config())
        real = outbox._contacts

        def contacts(ids, *, event=None, real=real):  # both have read what is queued already
            both.wait(timeout=10)
            return real(ids, event=event)

        outbox._contacts = contacts  # type: ignore[method-assign]
        threads.append(threading.Thread(target=queue, args=(outbox,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and sorted(counts)[1] > 0
    pairs = Counter((n.patient_id, n.channel) for n in notices(vault))
    assert set(pairs.values()) == {1} and len(pairs) == 8  # 7 queued and 1 "none"
    assert sum(counts) == 7  # each counts what it recorded
    again = notices(vault)[0]._asdict() | {"id": uuid.uuid4(), "code_tag": bytes(32)}
    with pytest.raises(IntegrityError), vault._records.engine.begin() as conn:
        conn.execute(insert(breach_notice), again)  # the index itself refuses a second one


def test_queueing_in_bulk_needs_a_fresh_second_factor(vault, operator, dpo, clock) -> None:
    recs = list(SyntheticLab(seed=5, results_per_patient=0).records(BULK_LIMIT + 1))
    vault.put_patients(operator, recs)
    inc = open_incident(vault, dpo, clock)
    signed_scope(vault, inc.id, [{"id": r.id, "categories": ["identity"]} for r in recs])
    outbox = Outbox(vault, breach_config())
    assert dpo.mfa_at is None
    for stale in (dpo, dataclasses.replace(dpo, mfa_at=clock.now() - timedelta(minutes=6))):
        with pytest.raises(StepUpRequired):
            outbox.queue_incident(stale, inc.id)
    assert notices(vault) == []
    with vault._records.engine.connect() as conn:
        events = list(conn.execute(select(audit_event).where(
            audit_event.c.action == "breach:incident:manage",
            audit_event.c.outcome == "step_up_required")))
        opened = conn.execute(select(func.count()).select_from(audit_event).where(
            audit_event.c.purpose == "breach notification")).scalar_one()
    assert len(events) == 2 and opened == 0  # refused, audited, no contact opened
    assert len(json.loads(events[0].patient_ids)) == BULK_LIMIT + 1
    fresh = dataclasses.replace(dpo, mfa_at=clock.now())
    assert outbox.queue_incident(fresh, inc.id) > 0
    assert len({n.patient_id for n in notices(vault)}) == BULK_LIMIT + 1


def test_a_scope_counts_only_for_its_own_incident_and_digest(vault, lab, dpo, clock) -> None:
    first, second = open_incident(vault, dpo, clock), open_incident(vault, dpo, clock)
    signed_scope(vault, first.id, [{"id": r.id, **ENTRY} for r in lab])
    store = breach_store(vault)
    genuine = store.scopes(first.id)[-1]
    copied = {k: v for k, v in dataclasses.asdict(genuine).items() if k != "id"}
    store.insert_scope(copied | {"incident_id": second.id})  # signed, but the first's
    outbox = Outbox(vault, breach_config())
    for call in (outbox.queue_incident, outbox.status):
        with pytest.raises(InvalidRecord, match="signature"):
            call(dpo, second.id)
    third = open_incident(vault, dpo, clock)
    scope_id = signed_scope(vault, third.id, [{"id": lab[0].id, **ENTRY}])
    with vault._records.engine.begin() as conn:  # signed and its own, but not what was digested
        conn.execute(update(incident_scope).where(incident_scope.c.id == scope_id).values(
            digest=bytes(32)))
    with pytest.raises(InvalidRecord, match="signature"):
        outbox.queue_incident(dpo, third.id)
    assert notices(vault) == []
    assert outbox.queue_incident(dpo, first.id) == 7  # the genuine one still counts


def test_a_flood_of_unknown_codes_is_audited_when_blocks_start(vault, lab, clock) -> None:
    outbox = Outbox(vault, breach_config())

    def checks() -> list[str]:
        with vault._records.engine.connect() as conn:
            return [e.outcome for e in conn.execute(select(audit_event).where(
                audit_event.c.action == "breach:notice:verify").order_by(audit_event.c.id))]

    answers = Counter[str]()
    for _ in range(200):
        try:
            answers[outbox.verify("ZZZZZ-ZZZZZ", "203.0.113.7").status] += 1
        except VerifyThrottled:
            answers["throttled"] += 1
    assert answers == {"unknown": 5, "throttled": 195}
    assert checks() == ["unknown"] * 5 + ["throttled"]  # one event when the block starts
    clock.advance(timedelta(seconds=2))  # the block (1 s) is over: the next failure blocks 2 s
    for _ in range(50):
        with contextlib.suppress(VerifyThrottled):
            outbox.verify("ZZZZZ-ZZZZZ", "203.0.113.7")
    assert checks() == ["unknown"] * 5 + ["throttled"] + ["unknown", "throttled"]


def test_the_form_is_refused_from_another_site_with_or_without_fetch_metadata(client) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}

    def post(**headers: str) -> int:
        return client.post("/verify", content="code=ZZZZZ-ZZZZZ",
                           headers=form | headers).status_code

    assert post(origin="https://phishing.example") == 403  # an old browser: Origin only
    assert post(origin="null") == 403
    assert post(origin="http://127.0.0.1:8443") == 403  # another port is another site
    assert post(**{"sec-fetch-site": "same-site"}) == 403
    assert post(origin="http://127.0.0.1") == 200  # this host
    assert post() == 200  # neither header: not a browser's cross-site post
    assert post(**{"sec-fetch-site": "same-origin", "origin": "https://proxy.example"}) == 200
