"""Breach response end to end, on the package's simulation: a biologist's stolen credentials
used from outside (the slow extraction) → the watcher's alert → `breach open` → a scope that
lists exactly the patients the attacker got (against the simulator's ground truth) → the
regulator's draft with those counts → notices delivered to a real SMTP server (STARTTLS) and a
real HTTP SMS gateway on the loopback → every verification code checks out on the public page,
and an altered one does not."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from breach.sms_gateway import ENVIRON, SmsGateway, breach_config
from labvault import FixedClock, Settings, Vault
from labvault.access.principal import Principal, Role
from labvault.api.app import ApiConfig, create_app
from labvault.breach.notices import Outbox
from labvault.breach.regulator import check
from labvault.breach.scope import Selectors
from watch.channel_support import SmtpRecorder, smtp_server, tls_contexts

CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")


def test_a_stolen_account_from_alert_to_verified_notices(vault_copy: Path, attacks,
                                                         tmp_path: Path) -> None:
    theft = attacks["slow-extraction"]
    assert theft["first_alert"] is not None  # the watcher saw it
    dpo = Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")
    clock = FixedClock(datetime.fromisoformat(theft["ended_at"]))
    vault = Vault.open(Settings.load(vault_copy), clock=clock)
    try:
        alert = next(a for a in vault.watch.alerts(dpo) if a.actor == theft["actor"])
        # The DPO takes it up two hours after the alert, with a fresh second factor (writing to
        # many people is a bulk act).
        clock.set(max(alert.raised_at, clock.now()) + timedelta(hours=2))
        dpo = dataclasses.replace(dpo, mfa_at=clock.now())
        incident = vault.breach.open_incident(dpo, detected_at=alert.raised_at,
                                              vector="stolen-credentials",
                                              description="compte biologiste volé")
        scope = vault.breach.scope(dpo, incident.id, Selectors(actor=theft["actor"],
                                                               source=theft["address"]))
        listed = {p["id"]: p for p in scope.document["patients"]}
        read = {pid for pid, p in listed.items() if set(p["categories"]) - {"membership"}}
        truth = set(theft["exposed_patient_ids"])
        assert truth and read == truth  # precision and recall: 100 %
        assert set(listed) - read == set(theft["searched_patient_ids"]) - truth

        # The regulator's draft counts those people, all read in clear.
        draft = vault.breach.regulator.draft(dpo, incident.id, breach_config())
        cnil = check(draft.cnil, vault.signing_public_key())
        assert cnil["data"]["patients"] == len(listed)
        assert cnil["data"]["by_exposure"] == {"decrypted": len(listed), "sealed": 0}
        counted = {c["code"]: c["decrypted"] for c in cnil["data"]["categories"]}
        assert counted["results"] == len(truth)
        assert cnil["notification"]["required"]

        # Notices: e-mail through a real STARTTLS server, SMS through a real HTTP gateway.
        recorder, (server_tls, _) = SmtpRecorder(), tls_contexts(tmp_path / "tls")
        with smtp_server(recorder, server_tls) as port, SmsGateway() as gateway:
            config = breach_config(smtp_port=port, cafile=str(tmp_path / "tls/ca.pem"),
                                   sms_url=gateway.url)
            outbox = Outbox(vault, config, environ=ENVIRON)
            queued = outbox.queue_incident(dpo, incident.id)
            sent = outbox.deliver_due()
        assert queued >= len(listed) and sent["sent"] == len(recorder.messages) + len(
            gateway.accepted)
        assert sent["failed"] == 0 and sent["sent"] > 0
        status = outbox.status(dpo, incident.id)
        assert sum(status["by_channel"].get("email", {}).values()) == len(recorder.messages)
        mails = [email.message_from_bytes(m.content, policy=email.policy.default).get_content()
                 for m in recorder.messages]
        codes = [CODE.search(body)[0] for body in mails + [s.text for s in gateway.accepted]]
        assert len(set(codes)) == len(codes) == sent["sent"]  # one code per message

        # Anyone who got one checks it on the public page; an altered code is unknown.
        app = create_app(vault, ApiConfig())
        app.state.breach_config = config
        with TestClient(app) as client:
            for code in codes[:4]:
                answer = client.post("/verify/check", json={"code": code}).json()
                assert answer["status"] == "issued" and answer["about"] == "incident"
            altered = codes[0][:-1] + ("A" if codes[0][-1] != "A" else "B")
            assert client.post("/verify/check", json={"code": altered}).json()["status"] == \
                "unknown"
            page = client.get("/verify")
            assert "form-action 'self'" in page.headers["content-security-policy"]
    finally:
        vault.close()
