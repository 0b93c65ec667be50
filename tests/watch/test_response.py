"""The watcher in the vault: alerts stored once, the automatic response on real accounts
(locked, step-up, token revoked), every response audited, unlocking by an admin and the DPO,
decoys seeded through the vault, escalation on a fixed clock to a real SMTP server."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from channel_support import SmtpRecorder, smtp_server, tls_contexts

from api_support import PASSWORD, enrol
from labvault.access.permissions import Permission
from labvault.access.principal import Principal, Role
from labvault.errors import (
    AccessDenied,
    AuthenticationFailed,
    InvalidRecord,
    NotFound,
    StepUpRequired,
)
from labvault.secret import Secret
from labvault.synthetic import SyntheticLab
from labvault.watch.channels import SmtpChannel
from labvault.watch.config import WatchConfig

SOURCE = "10.1.0.5"


@pytest.fixture
def patients(vault, operator):
    recs = list(SyntheticLab(seed=3, results_per_patient=1).records(16))
    vault.put_patients(operator, recs)
    return recs


def session(vault, clock, account_id, totp, email, source=SOURCE) -> Secret[str]:
    challenge = vault.accounts.login(email, PASSWORD, source)
    grant = vault.accounts.complete_login(challenge, code=totp.at(clock.now()), source=source)
    clock.advance(timedelta(seconds=31))
    return grant.token


def principal_of(vault, token, source=SOURCE) -> Principal:
    return vault.accounts.authenticate(token, source=source, purpose="care", request_id="r")


def watch_actions(vault) -> list[str]:
    return [e.action for e in vault._audit.events() if e.actor == "labvault:watch"]


def test_fast_reading_locks_the_account_and_the_next_call_fails(vault, operator, clock,
                                                                patients) -> None:
    vault.watch.start(background=False)
    account_id, email, totp = enrol(vault, operator, clock, Role.BIOLOGIST)
    token = session(vault, clock, account_id, totp, email)
    read = 0
    with pytest.raises(AuthenticationFailed):
        for r in patients:
            vault.get_record(principal_of(vault, token), r.id)
            read += 1
            clock.advance(timedelta(seconds=2))
    assert read == 13  # the 13th read went over the limit of 12 a minute; the 14th is refused
    (alert,) = vault.watch.alerts(operator)
    assert (alert.rule, alert.severity, alert.response) == ("volume", "critical", "locked")
    assert alert.actor == f"account:{account_id}"
    assert watch_actions(vault) == ["watch:alert:raise", "watch:response:lock"]
    with pytest.raises(AuthenticationFailed):  # locked: a new login fails too
        vault.accounts.login(email, PASSWORD, SOURCE)
    # Unlocking needs an admin and the DPO, two different people.
    admin = Principal("account:admin-1", Role.ADMIN, SOURCE, "review")
    dpo = Principal("account:dpo-1", Role.DPO, SOURCE, "review")
    assert vault.watch.unlock(admin, account_id) is False
    with pytest.raises(AccessDenied):
        vault.watch.unlock(admin, account_id)
    with pytest.raises(AccessDenied):  # a biologist cannot unlock anyone
        vault.watch.unlock(Principal("account:x", Role.BIOLOGIST, SOURCE, "care"), account_id)
    assert vault.watch.unlock(dpo, account_id) is True
    with pytest.raises(InvalidRecord):
        vault.watch.unlock(dpo, account_id)
    (alert,) = vault.watch.alerts(operator)
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", "account:dpo-1")
    # Back to work: the reads that locked it do not lock it again.
    token = session(vault, clock, account_id, totp, email)
    for r in patients[:3]:
        vault.get_record(principal_of(vault, token), r.id)
    assert len(vault.watch.alerts(operator)) == 1


def test_a_high_alert_asks_for_a_fresh_second_factor(vault, operator, clock, patients) -> None:
    vault.watch.start(background=False)
    account_id, email, totp = enrol(vault, operator, clock, Role.SECRETARY)
    token = session(vault, clock, account_id, totp, email)
    for _ in range(5):  # ids that do not exist: probing
        with pytest.raises(NotFound):
            vault.get_patient(principal_of(vault, token), uuid.uuid4())
        clock.advance(timedelta(seconds=1))
    (alert,) = vault.watch.alerts(operator)
    assert (alert.rule, alert.response) == ("id-probing", "step_up")
    with pytest.raises(StepUpRequired):
        vault.get_patient(principal_of(vault, token), patients[0].id)
    events = [e for e in vault._audit.events() if e.outcome == "step_up_required"]
    assert events and events[-1].actor == f"account:{account_id}"
    vault.accounts.step_up(token, totp.at(clock.now()), source=SOURCE)
    assert vault.get_patient(principal_of(vault, token), patients[0].id).id == patients[0].id


def test_a_token_used_from_a_new_address_is_revoked(vault, operator, clock, patients) -> None:
    vault.watch.start(background=False)
    account_id, _ = vault.accounts.create_account(
        operator, email="gateway@lab.example", display_name="Gateway", roles=[Role.SERVICE])
    _, token = vault.accounts.issue_token(operator, account_id, scopes=[Permission.PATIENT_READ],
                                          ttl=timedelta(days=30), label="gateway")

    def as_token(source: str) -> Principal:
        return vault.accounts.authenticate_token(token, source=source, purpose="feed",
                                                 request_id="r")

    for r in patients[:3]:
        vault.get_patient(as_token("10.9.0.2"), r.id)
    vault.get_patient(as_token("198.51.100.7"), patients[3].id)
    (alert,) = vault.watch.alerts(operator)
    assert (alert.rule, alert.response) == ("token-new-address", "token_revoked")
    with pytest.raises(AuthenticationFailed):
        as_token("10.9.0.2")
    assert "watch:response:token-revoke" in watch_actions(vault)


def test_a_repeated_pattern_is_one_alert_until_acknowledged(vault, operator, clock,
                                                            patients) -> None:
    vault.watch.start(background=False)
    reader = Principal(f"account:{uuid.uuid4()}", Role.TECHNICIAN, SOURCE, "care")
    for r in patients:
        vault.get_record(reader, r.id)
    (alert,) = vault.watch.alerts(operator)
    assert alert.occurrences == len(patients) - 10  # the 11th read and every one after it
    with pytest.raises(InvalidRecord):
        vault.watch.acknowledge(operator, alert.id, "whatever I like")
    vault.watch.acknowledge(operator, alert.id, "confirmed")
    vault.get_record(reader, patients[0].id)  # still over the limit: a new alert now
    assert sorted(a.status for a in vault.watch.alerts(operator)) == ["acknowledged", "open"]
    with pytest.raises(AccessDenied):
        vault.watch.alerts(reader)


def test_alerts_carry_ids_and_counts_never_values(vault, operator, clock, patients) -> None:
    vault.watch.start(background=False)
    reader = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care")
    for r in patients:
        vault.get_record(reader, r.id)
    (alert,) = vault.watch.alerts(operator)
    text = json.dumps(alert.as_dict())
    for r in patients:
        p = r.patient
        for value in (p.last_name, p.first_names, p.nir, p.email, p.phone):
            assert not value or value not in text
    assert str(patients[12].id) in text


def test_decoys_look_like_patients_and_any_touch_locks(vault, operator, clock, patients) -> None:
    vault.watch.start(background=False)
    contacts = vault.watch.seed_decoys(operator, 3, mail_domain="canary.lab.example", seed=9)
    assert len(contacts) == 3 and all(c.endswith("@canary.lab.example") for c in contacts)
    assert vault.count_patients(operator) == len(patients) + 3
    decoy_ids = {r.id for r in vault.iter_records(operator)} - {r.id for r in patients}
    decoy = vault.get_patient(operator, next(iter(decoy_ids)))  # the local operator: no alert
    assert decoy.nir and decoy.nir[7:10].startswith("99")
    account_id, email, totp = enrol(vault, operator, clock, Role.SECRETARY)
    token = session(vault, clock, account_id, totp, email)
    found = vault.find_patients(principal_of(vault, token), nir=decoy.nir)
    assert found == [decoy.id]
    (alert,) = [a for a in vault.watch.alerts(operator) if a.rule == "honeytoken"]
    assert (alert.severity, alert.response) == ("critical", "locked")
    assert str(decoy.id) not in alert.body().decode()  # alerts do not say which are decoys
    creates = [e for e in vault._audit.events() if e.action == "vault:patient:create"
               and decoy.id in e.patient_ids]
    assert [e.purpose for e in creates] == ["patient registration"]
    with pytest.raises(AuthenticationFailed):
        principal_of(vault, token)
    # The DPO scoping the incident lists the decoy the thief found: breach work, not a touch.
    from labvault.breach.scope import Selectors

    dpo = Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.0.0.9", "incident response")
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="insider",
                                     description="x")
    scope = vault.breach.scope(dpo, inc.id, Selectors(actor=f"account:{account_id}"))
    assert [p["id"] for p in scope.document["patients"]] == [str(decoy.id)]
    assert [a.rule for a in vault.watch.alerts(operator)] == ["honeytoken"]


def test_a_failing_watcher_never_undoes_the_append(vault, operator, patients) -> None:
    def broken(event):
        raise RuntimeError("rule crashed")

    vault._audit.listeners.append(broken)
    assert vault.get_patient(operator, patients[0].id).id == patients[0].id
    health = vault._audit.health()
    assert (health["audit"], health["watch_failures"]) == ("degraded", 1)


def test_unacknowledged_alerts_escalate_down_the_list(vault, operator, clock, tmp_path) -> None:
    server_tls, client_tls = tls_contexts(tmp_path)
    recorder = SmtpRecorder()
    config = WatchConfig.from_mapping({"alerting": {
        "escalation": ["oncall@lab.example", "dpo@lab.example"],
        "ack_within_minutes": {"critical": 15}}})
    with smtp_server(recorder, server_tls) as port:
        email = SmtpChannel("127.0.0.1", port, "labvault@lab.example", ("security@lab.example",),
                            ssl_context=client_tls)
        watcher = vault.watch.start(config, channels={"email": email}, background=False)
        recs = list(SyntheticLab(seed=4, results_per_patient=0).records(13))
        vault.put_patients(operator, recs)
        reader = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care")
        for r in recs:
            vault.get_patient(reader, r.id)
        (alert,) = vault.watch.alerts(operator)
        assert [m.rcpt_tos for m in recorder.messages] == [["security@lab.example"]]
        assert all(m.tls for m in recorder.messages)
        clock.advance(timedelta(minutes=14))
        assert watcher.notifier.tick() == 0
        clock.advance(timedelta(minutes=1))
        assert watcher.notifier.tick() == 1
        assert recorder.messages[-1].rcpt_tos == ["oncall@lab.example"]
        clock.advance(timedelta(minutes=15))
        assert watcher.notifier.tick() == 1
        assert recorder.messages[-1].rcpt_tos == ["dpo@lab.example"]
        clock.advance(timedelta(hours=5))
        assert watcher.notifier.tick() == 0  # the end of the list
        _, deliveries = vault.watch.alert(operator, alert.id)
        assert [(d["level"], d["channel"], d["outcome"]) for d in deliveries] == [
            (level, channel, "sent" if channel == "email" else "not_configured")
            for level in (0, 1, 2) for channel in ("email", "webhook", "syslog")]
        assert len(recorder.messages) == 3


def test_an_acknowledged_alert_does_not_escalate(vault, operator, clock) -> None:
    config = WatchConfig.from_mapping({"alerting": {"escalation": ["oncall@lab.example"]}})
    watcher = vault.watch.start(config, background=False)
    recs = list(SyntheticLab(seed=5, results_per_patient=0).records(13))
    vault.put_patients(operator, recs)
    reader = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care")
    for r in recs:
        vault.get_patient(reader, r.id)
    (alert,) = vault.watch.alerts(operator)
    vault.watch.acknowledge(operator, alert.id, "investigating")
    clock.advance(timedelta(hours=1))
    assert watcher.notifier.tick() == 0


def test_phishing_that_reaches_a_decoy_contact_is_critical(vault, operator, clock) -> None:
    contacts = vault.watch.seed_decoys(operator, 2, mail_domain="canary.lab.example", seed=3)
    message = (f"From: Votre laboratoire <alerte@lab0ratoire-securite.example>\r\n"
               f"To: {contacts[1].upper()}\r\nSubject: Vos resultats\r\n"
               "Message-ID: <x1@lab0ratoire-securite.example>\r\n\r\nCliquez ici.\r\n").encode()
    (alert,) = vault.watch.report_mail(operator, message)
    assert (alert.rule, alert.severity, alert.actor) == (
        "decoy-contact", "critical", "external:lab0ratoire-securite.example")
    assert contacts[1] not in alert.body().decode() and alert.evidence["decoys"]
    ordinary = message.replace(contacts[1].upper().encode(), b"someone@lab.example")
    assert vault.watch.report_mail(operator, ordinary) == []
    assert vault.watch.report_mail(operator, message) == []  # the same message: counted once
    with pytest.raises(AccessDenied):
        vault.watch.report_mail(Principal("account:dpo", Role.DPO, SOURCE, "review"), message)


def test_care_sites_of_patients_stored_before_the_links_are_indexed(vault, operator,
                                                                    patients) -> None:
    from sqlalchemy import delete, select

    from labvault.store.tables import patient_site

    with vault._records.engine.begin() as conn:
        expected = set(conn.execute(select(patient_site.c.patient_id, patient_site.c.finess)))
        conn.execute(delete(patient_site))
    assert expected == {(r.id, o.lab_finess) for r in patients for o in r.orders}
    assert vault.watch.index_sites(operator, batch_size=5) == len(expected)
    with vault._records.engine.connect() as conn:
        assert set(conn.execute(select(patient_site.c.patient_id, patient_site.c.finess))) == expected
    assert vault.watch.index_sites(operator) == len(expected)  # again: nothing new, no error
    with pytest.raises(AccessDenied):
        vault.watch.index_sites(Principal("account:s", Role.SECRETARY, SOURCE, "care"))


def test_a_critical_response_that_fails_fails_the_call_and_is_retried(vault, operator, clock,
                                                                      patients, monkeypatch):
    from labvault.errors import ResponseFailed
    from labvault.store.alerts import AlertStore

    watcher = vault.watch.start(background=False)
    account_id, email, totp = enrol(vault, operator, clock, Role.BIOLOGIST)
    token = session(vault, clock, account_id, totp, email)
    real_lock = AlertStore.lock
    calls = []

    def flaky(self, account, now):
        calls.append(account)
        if len(calls) == 1:
            raise OSError("database went away")
        return real_lock(self, account, now)

    monkeypatch.setattr(AlertStore, "lock", flaky)
    for r in patients[:12]:
        vault.get_record(principal_of(vault, token), r.id)
    with pytest.raises(ResponseFailed):  # the 13th read: no data while the lock failed
        vault.get_record(principal_of(vault, token), patients[12].id)
    (alert,) = vault.watch.alerts(operator)
    assert alert.response == "failed"
    assert vault._audit.health()["audit"] == "ok"  # the stored event is not lost either
    # The next occurrence tries the response again, and this time the lock holds.
    vault.get_record(principal_of(vault, token), patients[13].id)
    (alert,) = vault.watch.alerts(operator)
    assert (alert.response, len(calls)) == ("locked", 2)
    with pytest.raises(AuthenticationFailed):
        principal_of(vault, token)
    assert watcher.rule_failures == 0


def test_a_locked_account_is_not_brought_back_by_a_reset(vault, operator, clock,
                                                         patients) -> None:
    vault.watch.start(background=False)
    account_id, email, totp = enrol(vault, operator, clock, Role.BIOLOGIST)
    token = session(vault, clock, account_id, totp, email)
    with pytest.raises(AuthenticationFailed):
        for r in patients:
            vault.get_record(principal_of(vault, token), r.id)
    with pytest.raises(InvalidRecord, match="locked"):
        vault.accounts.reset_mfa(operator, account_id)


def test_nobody_acknowledges_or_unlocks_their_own_alert(vault, operator, clock, patients) -> None:
    vault.watch.start(background=False)
    dpo_id = uuid.uuid4()
    dpo = Principal(f"account:{dpo_id}", Role.DPO, SOURCE, "review")
    for _ in range(5):  # the DPO probing ids: an alert about the DPO
        with pytest.raises(AccessDenied):
            vault.get_patient(dpo, uuid.uuid4())
    reader = Principal(f"account:{uuid.uuid4()}", Role.TECHNICIAN, SOURCE, "care")
    for _ in range(5):
        with pytest.raises(NotFound):
            vault.get_patient(reader, uuid.uuid4())
    (alert,) = vault.watch.alerts(operator)
    own = Principal(alert.actor, Role.DPO, SOURCE, "review")
    with pytest.raises(AccessDenied):
        vault.watch.acknowledge(own, alert.id, "false-positive")
    assert vault.watch.acknowledge(dpo, alert.id, "confirmed").status == "acknowledged"


def test_a_message_built_to_break_the_parser_still_reaches_the_check(vault, operator) -> None:
    (decoy,) = vault.watch.seed_decoys(operator, 1, mail_domain="canary.lab.example", seed=4)
    for header in (b"From: =?utf-8?q?a=0D=0Ab?= <x@evil.example>\r\nTo: " + decoy.encode(),
                   b"From: x@evil.example\r\nTo: e@[, " + decoy.encode()):
        alerts = vault.watch.report_mail(operator, header + b"\r\n\r\nbody\r\n")
        assert [a.rule for a in alerts] in (["decoy-contact"], [])
    assert len([a for a in vault.watch.alerts(operator) if a.rule == "decoy-contact"]) == 2


def test_two_watchers_ticking_escalate_each_level_once(vault, operator, clock) -> None:
    from labvault.watch.notify import Notifier

    config = WatchConfig.from_mapping({"alerting": {"escalation": ["a@lab.example",
                                                                   "b@lab.example"]}})
    first = vault.watch.start(config, background=False).notifier
    second = Notifier(vault.watch._store, {}, config, clock, background=False)
    recs = list(SyntheticLab(seed=6, results_per_patient=0).records(13))
    vault.put_patients(operator, recs)
    reader = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, SOURCE, "care")
    for r in recs:
        vault.get_patient(reader, r.id)
    clock.advance(timedelta(minutes=15))
    assert first.tick() + second.tick() == 1
    clock.advance(timedelta(minutes=15))
    assert second.tick() + first.tick() == 1
    (alert,) = vault.watch.alerts(operator)
    assert alert.escalation_level == 2


def test_background_delivery_sends_the_most_severe_first(vault, operator, clock) -> None:
    from labvault.store.alerts import AlertStore
    from labvault.watch.alerts import Severity
    from labvault.watch.notify import Notifier

    sent: list[str] = []

    class Recorder:
        name = "webhook"

        def send(self, alert, contact) -> None:
            sent.append(alert.severity.value)

    import threading

    gate = threading.Event()

    started = threading.Event()

    class Slow(Recorder):
        def send(self, alert, contact) -> None:
            started.set()
            gate.wait(5)
            super().send(alert, contact)

    config = WatchConfig.from_mapping({"alerting": {"routes": {
        "critical": ["webhook"], "high": ["webhook"], "medium": ["webhook"]}}})
    store = AlertStore(vault._records.engine)
    notifier = Notifier(store, {"webhook": Slow()}, config, clock)

    def alert(sev: Severity):
        from labvault.watch.engine import alert_of

        row, _ = store.raise_or_repeat({
            "id": uuid.uuid4(), "dedup_key": uuid.uuid4().hex, "rule": "r", "severity": str(sev),
            "actor": "account:x", "raised_at": clock.now(), "last_seen_at": clock.now(),
            "occurrences": 1, "explanation": "e", "evidence": "{}", "patient_ids": "",
            "status": "open", "escalation_level": 0, "next_escalation_at": None,
            "response": "none"})
        return alert_of(row)

    try:
        notifier._submit(alert(Severity.MEDIUM), None)  # held by the slow channel
        assert started.wait(5)
        for sev in (Severity.HIGH, Severity.MEDIUM, Severity.CRITICAL, Severity.HIGH):
            notifier._submit(alert(sev), None)
        gate.set()
        notifier.flush()
    finally:
        notifier.close()
    assert sent == ["medium", "critical", "high", "high", "medium"]


def test_alerts_piling_up_on_one_account_lock_it(vault, operator, clock) -> None:
    from labvault.watch.alerts import Finding, Severity

    watcher = vault.watch.start(background=False)
    account_id, email, totp = enrol(vault, operator, clock, Role.BIOLOGIST)
    token = session(vault, clock, account_id, totp, email)
    who = f"account:{account_id}"
    for rule in ("off-hours", "new-network"):
        watcher.raise_finding(Finding(rule, Severity.MEDIUM, who, "k", "e"), clock.now())
        clock.advance(timedelta(minutes=5))
    principal_of(vault, token)  # two medium alerts: no response
    watcher.raise_finding(Finding("unexplained-volume", Severity.MEDIUM, who, "k", "e"),
                          clock.now())
    correlated = [a for a in vault.watch.alerts(operator) if a.rule == "correlated"]
    assert [(a.severity, a.response) for a in correlated] == [("critical", "locked")]
    assert correlated[0].evidence["rules"] == ["new-network", "off-hours", "unexplained-volume"]
    with pytest.raises(AuthenticationFailed):
        principal_of(vault, token)


def test_decoys_carry_the_labs_own_sites(vault, operator, patients) -> None:
    sites = {o.lab_finess for r in patients for o in r.orders}
    vault.watch.seed_decoys(operator, 4, seed=2)
    decoys = [r for r in vault.iter_records(operator) if r.id not in {p.id for p in patients}]
    assert {o.lab_finess for r in decoys for o in r.orders} <= sites
