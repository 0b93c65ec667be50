"""Delivering notices over real servers on the loopback: an SMTP server that requires STARTTLS
(aiosmtpd) and an HTTP SMS gateway that checks its bearer token. Retries honour Retry-After,
back off, and end; a 4xx is permanent; the pace is a token bucket on a fixed clock (no sleep);
every outcome is recorded, sealed; an erased patient is not written to; no contact reaches a
log, an exception or the database."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sms_gateway import (
    ENVIRON,
    TOKEN,
    TOKEN_ENV,
    SmsGateway,
    SmtpRecorder,
    breach_config,
    contacts_of,
    rewrite_scope,
    signed_scope,
    smtp_server,
    tls_contexts,
)
from sqlalchemy import select

from labvault.breach.config import BreachConfig
from labvault.breach.delivery import (
    Outgoing,
    Refused,
    Retry,
    email_address,
    mobile_number,
    senders_from_config,
)
from labvault.breach.delivery import (
    SmsGateway as SmsAdapter,
)
from labvault.breach.dispatch import LEASE
from labvault.breach.notices import Outbox
from labvault.errors import ConfigurationError
from labvault.secret import Secret
from labvault.store.tables import audit_event, breach_notice

CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")
SPECIAL_WORDS = ("VIH", "hiv", "hépatite", "grossesse", "cancer", "génétique", "sensible")


@pytest.fixture
def incident(vault, lab, dpo, clock):
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="Compte biologiste utilisé depuis l'étranger")
    entries = [{"id": r.id, "categories": ["identity", "contact", "results"]} for r in lab]
    entries[0] |= {"special": ["hiv"], "exposure": "decrypted"}
    entries[4] |= {"exposure": "sealed"}  # exempt unless asked
    signed_scope(vault, inc.id, entries)
    return inc


@pytest.fixture
def servers(tmp_path: Path):
    recorder = SmtpRecorder()
    server_tls, _ = tls_contexts(tmp_path / "tls")
    with smtp_server(recorder, server_tls) as port, SmsGateway() as gateway:
        yield SimpleNamespace(smtp=recorder, port=port, cafile=str(tmp_path / "tls" / "ca.pem"),
                              sms=gateway)


def outbox_for(vault, clock, servers, *, email: bool = True, sms: bool = True,
               sleeps: list[float] | None = None, **notices) -> Outbox:
    def sleep(seconds: float) -> None:  # the fixed clock moves instead
        if sleeps is not None:
            sleeps.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    config = breach_config(smtp_port=servers.port if email else None, cafile=servers.cafile,
                           sms_url=servers.sms.url if sms else "", **notices)
    return Outbox(vault, config, sleep=sleep, environ=ENVIRON)


def test_notices_reach_people_by_email_and_sms(vault, settings, backend, operator, lab,
                                               incident, dpo, clock, servers, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    outbox = outbox_for(vault, clock, servers, per_second=2.0, sleeps=sleeps)
    assert outbox.queue_incident(dpo, incident.id) == 5  # 3 e-mails, 2 SMS; a landline: none
    vault.erase_patient(operator, lab[5].id)  # erased since: not written to
    servers.sms.by_number = {"+33612345678": [(503, {"Retry-After": "120"})],
                             "+33798765432": [(400, {})]}
    start = clock.now()

    first = outbox.deliver_due()
    assert first == {"sent": 2, "retrying": 1, "failed": 1, "undeliverable": 1}
    assert sleeps == [0.5, 0.5]  # 2 a second, in bursts of 2: four sends take 1 s
    clock.set(start + timedelta(seconds=119))
    assert outbox.deliver_due() == {"sent": 0, "retrying": 0, "failed": 0, "undeliverable": 0}
    clock.set(start + timedelta(seconds=122))  # Retry-After has passed
    assert outbox.deliver_due()["sent"] == 1

    # E-mail: under TLS, to the two addresses, plain French with the code and the page.
    mails = servers.smtp.messages
    assert len(mails) == 2 and all(m.tls for m in mails)
    assert sorted(a for m in mails for a in m.rcpt_tos) == sorted(
        r.patient.email for r in (lab[0], lab[1]))
    for m in mails:
        msg = email.message_from_bytes(m.content, policy=email.policy.default)
        body = msg.get_content()
        assert msg["From"].addresses[0].display_name == "Laboratoire Exemple"
        assert "incident de sécurité" in msg["Subject"] and CODE.search(body)
        assert "https://labo-exemple.example/verify" in body and "CNIL" in body
        assert "dpo@labo-exemple.example" in body and "mot de passe" in body
        sensitive = m.rcpt_tos == [lab[0].patient.email]
        assert ("relevant de données de santé sensibles" in body) is sensitive
        for r in lab:
            assert r.patient.last_name not in body and (not r.patient.nir or r.patient.nir not in body)
        assert not any(w in body for w in ("VIH", "hiv"))
    # SMS: bearer checked, E.164, the same reference on each attempt, no special category.
    sms = servers.sms
    assert sms.unauthorised == 0 and len(sms.received) == 3
    assert sorted({m.to for m in sms.received}) == ["+33612345678", "+33798765432"]
    assert all(m.sender == "LaboExemple" for m in sms.received)
    retried = next(m for m in sms.received if m.status == 503)
    assert sms.accepted[0].reference == retried.reference and sms.accepted[0].text == retried.text
    for m in sms.received:
        assert CODE.search(m.text) and "CNIL" in m.text
        assert not any(w.lower() in m.text.lower() for w in SPECIAL_WORDS)

    status = outbox.status(dpo, incident.id)
    assert status["by_outcome"] == {"pending": 0, "sent": 3, "failed": 1, "undeliverable": 2}
    assert status["errors"] == {"HTTP 400": 1, "no-contact": 1, "erased": 1}
    assert status["by_state"] == {"done": 6}
    assert (status["listed"], status["sealed_only"], status["patients"]) == (6, 1, 5)
    assert status["patients_reached"] == 2  # lab[0], lab[1]; lab[3]'s only SMS: 400
    # Outcomes sealed: the provider's reference kept, the code gone once done.
    with vault._records.engine.connect() as conn:
        rows = list(conn.execute(select(breach_notice)))
    states = [outbox._open(r.id, r.delivery) for r in rows]
    assert all("code" not in s for s in states)
    assert sum(1 for s in states if s["outcome"] == "sent" and s["ref"]) == 3
    # Nothing personal in the log, the audit or the database.
    secrets_ = contacts_of(lab) + [r.patient.last_name for r in lab]
    logged = "\n".join(r.getMessage() for r in caplog.records
                        if not r.name.startswith("mail.log"))  # the test server's own log
    assert not [v for v in secrets_ if v in logged]
    with vault._records.engine.connect() as conn:
        stored = " ".join(str(tuple(r)) for t in (breach_notice, audit_event)
                          for r in conn.execute(select(t)))
    assert not [v for v in contacts_of(lab) if v in stored]
    if backend == "sqlite":
        raw = b"".join(p.read_bytes() for p in Path(settings.data_dir).iterdir() if p.is_file())
        for value in contacts_of(lab):
            assert value.encode() not in raw and value.encode("utf-16-le") not in raw
    # The deliveries' contact reads are audited as the system's, naming the patients.
    with vault._records.engine.connect() as conn:
        reads = list(conn.execute(select(audit_event).where(
            audit_event.c.action == "breach:notice:deliver")))
    assert reads and all(e.actor == "labvault:notices" and e.purpose == "breach notification"
                         for e in reads)
    assert str(lab[0].id.hex) in "".join(e.patient_ids for e in reads)


def test_failures_back_off_then_end_and_nothing_goes_in_clear(vault, lab, incident, dpo,
                                                              clock, servers) -> None:
    plain = SmtpRecorder()
    with smtp_server(plain, None) as port:  # a relay that offers no STARTTLS
        config = breach_config(smtp_port=port, sms_url=servers.sms.url, max_attempts=3,
                               retry_after_seconds=60)
        outbox = Outbox(vault, config, environ=ENVIRON)
        outbox.queue_incident(dpo, incident.id)
        servers.sms.script = [(503, {})] * 10
        start = clock.now()
        assert outbox.deliver_due()["retrying"] == 5
        clock.set(start + timedelta(seconds=59))
        assert outbox.deliver_due()["retrying"] == 0  # not due yet: 60 s after the first
        clock.set(start + timedelta(seconds=60))
        assert outbox.deliver_due()["retrying"] == 5  # then 120 s
        clock.set(start + timedelta(seconds=179))
        assert outbox.deliver_due()["failed"] == 0
        clock.set(start + timedelta(seconds=180))
        assert outbox.deliver_due()["failed"] == 5  # the third attempt was the last
    assert plain.messages == []  # nothing sent in clear
    assert len(servers.sms.received) == 6
    status = outbox.status(dpo, incident.id)
    assert status["by_channel"] == {"email": {"failed": 3}, "none": {"undeliverable": 1},
                                    "sms": {"failed": 2}}
    assert status["errors"]["HTTP 503"] == 2 and status["errors"]["no-contact"] == 1
    assert any("STARTTLS" in e for e in status["errors"])
    with vault._records.engine.connect() as conn:
        assert {r.attempts for r in conn.execute(select(breach_notice)) if r.channel != "none"} \
            == {3}


def test_adapters_refuse_what_would_leak_and_name_no_value(clock, monkeypatch) -> None:
    with pytest.raises(ValueError):
        SmsAdapter("http://sms.example/v1", Secret("t"), "Labo")  # http off the loopback
    with pytest.raises(ConfigurationError) as exc:
        senders_from_config(breach_config(sms_url="https://sms.example/v1"), clock=clock,
                            environ={})
    assert TOKEN_ENV in str(exc.value)
    out = Outgoing(uuid.uuid4(), "sms", Secret("+33612345678"), "s", Secret("texte"))
    assert "+336" not in repr(out) and "texte" not in repr(out)
    assert str(Refused("HTTP 400")) == "not delivered: HTTP 400"
    assert Retry("HTTP 503", 12.0).retry_after == 12.0
    assert mobile_number("06 12 34 56 78") == "+33612345678"
    assert mobile_number("+33 (0)7 12 34 56 78") is None  # not a form we guess
    assert mobile_number("0033 7 12 34 56 78") == "+33712345678"
    assert mobile_number("0690 12 34 56") == "+590690123456"  # Guadeloupe
    assert mobile_number("01 45 67 89 10") is None  # a landline gets no SMS
    assert email_address(" a.b@example.org ") == "a.b@example.org"
    assert email_address("a@b.org\r\nBcc: x@y.org") is None
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):  # the environment is not trusted
        for variant in (name, name.lower()):
            monkeypatch.setenv(variant, "http://127.0.0.1:9")  # nothing listens there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with SmsGateway() as gateway:
        gateway.script = [(429, {}), (200, {})]
        wrong = SmsAdapter(gateway.url, Secret("not-the-token"), "Labo")
        with pytest.raises(Refused, match="HTTP 401"):  # a 4xx: permanent
            wrong.send(out)
        right = SmsAdapter(gateway.url, Secret(ENVIRON[TOKEN_ENV]), "Labo")
        with pytest.raises(Retry) as busy:
            right.send(out)
        assert busy.value.retry_after is None  # no Retry-After: the outbox backs off
        assert right.send(out).startswith("sms-")  # the provider's reference
        right.close()
        wrong.close()
    assert gateway.unauthorised == 1 and [m.status for m in gateway.received] == [429, 200]


class SlowGateway:
    """The SMS adapter to the test gateway, each message taking `minutes` on the test clock
    (a slow provider); `then(n)` runs once the n-th message is through, whatever came of it
    (another worker's run, say)."""

    channel = "sms"

    def __init__(self, url: str, clock, minutes: float, then=None) -> None:
        self._adapter = SmsAdapter(url, Secret(TOKEN), "Labo")
        self._clock, self._minutes, self._then = clock, minutes, then
        self.sent: list[uuid.UUID] = []

    def send(self, message: Outgoing) -> str | None:
        try:
            return self._adapter.send(message)
        finally:
            self._clock.advance(timedelta(minutes=self._minutes))
            self.sent.append(message.notice_id)
            if self._then is not None:
                self._then(len(self.sent))

    def close(self) -> None:
        self._adapter.close()


def sms_outbox(vault, gateway: SlowGateway, **notices) -> Outbox:
    return Outbox(vault, breach_config(**notices), senders={"sms": gateway},
                  sleep=lambda s: None)


def test_a_run_longer_than_the_lease_sends_nothing_twice(vault, lab, incident, dpo, clock,
                                                         servers) -> None:
    assert sms_outbox(vault, SlowGateway(servers.sms.url, clock, 0)).queue_incident(
        dpo, incident.id, include_sealed=True) == 7  # 3 SMS, 4 e-mails (not sent here)
    other = SlowGateway(servers.sms.url, clock, 0)

    def meanwhile(n: int) -> None:  # 12 minutes into the first run, another one starts
        if n == 2:
            assert sms_outbox(vault, other).deliver_due()["sent"] == 1

    first = SlowGateway(servers.sms.url, clock, 6, meanwhile)  # 6 minutes a message
    assert 3 * timedelta(minutes=6) > LEASE > timedelta(minutes=6)
    assert sms_outbox(vault, first).deliver_due()["sent"] == 2
    assert not set(first.sent) & set(other.sent) and len(first.sent + other.sent) == 3
    assert sorted(Counter(m.reference for m in servers.sms.received).values()) == [1, 1, 1]
    with vault._records.engine.connect() as conn:
        sms = [r for r in conn.execute(select(breach_notice)) if r.channel == "sms"]
    assert {(r.state, r.attempts) for r in sms} == {("done", 1)}


def test_an_attempt_that_outlives_its_lease_does_not_overwrite_the_next(
        vault, lab, incident, dpo, clock, servers, caplog) -> None:
    caplog.set_level(logging.WARNING, "labvault.breach")
    outbox = sms_outbox(vault, SlowGateway(servers.sms.url, clock, 0))
    assert outbox.queue_incident(dpo, incident.id) == 5  # 2 SMS
    servers.sms.script = [(503, {})]  # the first attempt fails, after 11 minutes
    taken_over = SlowGateway(servers.sms.url, clock, 0)

    def meanwhile(n: int) -> None:
        if n == 1:  # its lease ran out: another run takes the notice over, and sends both
            assert sms_outbox(vault, taken_over).deliver_due()["sent"] == 2

    late = SlowGateway(servers.sms.url, clock, 11, meanwhile)
    assert sms_outbox(vault, late).deliver_due()["retrying"] == 1
    assert len(late.sent) == 1 and late.sent[0] in taken_over.sent
    status = outbox.status(dpo, incident.id)
    assert status["by_channel"]["sms"] == {"sent": 2}  # not the late attempt's "retrying"
    with vault._records.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(breach_notice))}
    assert (rows[late.sent[0]].state, rows[late.sent[0]].attempts) == ("done", 2)
    assert "code" not in outbox._open(late.sent[0], rows[late.sent[0]].delivery)
    assert [r.getMessage() for r in caplog.records] == [
        f"notice {late.sent[0]}: attempt 1 outlived its lease; its outcome is not recorded"]


def test_a_notice_that_cannot_be_composed_does_not_stop_the_run(
        vault, lab, incident, dpo, clock, servers, caplog) -> None:
    caplog.set_level(logging.WARNING, "labvault.breach")
    outbox = outbox_for(vault, clock, servers, max_attempts=2, retry_after_seconds=60)
    other = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="lost-backup",
                                       description="Sauvegarde égarée")
    scope_id = signed_scope(vault, other.id, [{"id": r.id, "categories": ["identity"]}
                                              for r in lab])
    assert outbox.queue_incident(dpo, incident.id) == 5
    assert outbox.queue_incident(dpo, other.id) == 7
    rewrite_scope(vault, scope_id, lambda text: text + " ")  # altered since: does not check
    outbox = outbox_for(vault, clock, servers, max_attempts=2, retry_after_seconds=60)
    start = clock.now()
    assert outbox.deliver_due() == {"sent": 5, "retrying": 7, "failed": 0, "undeliverable": 0}
    with vault._records.engine.connect() as conn:
        held = [r for r in conn.execute(select(breach_notice)) if r.incident_id == other.id
                and r.channel != "none"]
    assert {(r.state, r.attempts) for r in held} == {("queued", 1)}
    due = {r.next_attempt_at.replace(tzinfo=start.tzinfo) for r in held}
    assert due == {start + timedelta(seconds=60)}  # due again as a retry, not held for a lease
    assert {outbox._open(r.id, r.delivery)["error"] for r in held} == {"InvalidRecord"}
    clock.set(start + timedelta(seconds=60))
    assert outbox.deliver_due() == {"sent": 0, "retrying": 0, "failed": 7, "undeliverable": 0}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 14 and all(m.endswith("ended with InvalidRecord; it will be tried "
                                                "again") for m in logged)
    assert not [v for v in contacts_of(lab) if v in "\n".join(logged)]
    assert len(servers.smtp.messages) == 3 and len(servers.sms.received) == 2


def test_the_lease_covers_the_longest_send_and_paces_must_be_positive() -> None:
    from labvault.breach.dispatch import SEND_STEPS, lease_for

    assert lease_for({"per_second": 50.0}, [10.0, 10.0]) == LEASE  # the defaults
    slow = lease_for({"per_second": 0.01}, [60.0, 10.0])  # a slow relay, one message a minute
    assert slow == timedelta(seconds=2 * (SEND_STEPS * 60 + 100)) > LEASE
    for section, key in (("notices", "per_second"), ("smtp", "timeout_seconds"),
                         ("sms", "timeout_seconds")):
        with pytest.raises(ConfigurationError, match=rf"\[{section}\] {key} must be more"):
            BreachConfig.from_mapping({section: {key: 0}})
