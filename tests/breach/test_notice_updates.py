"""A later scope that adds to what people were told: an update (article 34) to each of them,
naming what was added, once; nobody else is written to again."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections import Counter

import pytest
from sms_gateway import (
    ENVIRON,
    SmsGateway,
    SmtpRecorder,
    breach_config,
    people,
    signed_scope,
    smtp_server,
    tls_contexts,
)
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from labvault.access.principal import Principal, Role
from labvault.breach import notice_text as text
from labvault.breach.notices import Outbox
from labvault.store.tables import breach_notice

CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")
ADDED = "CE QUE L'ANALYSE A AJOUTÉ"


@pytest.fixture
def dpo() -> Principal:
    return Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")


def notices(vault) -> list:
    with vault._records.engine.connect() as conn:
        return list(conn.execute(select(breach_notice)))


def test_a_later_scope_that_adds_writes_an_update_once(vault, operator, dpo, clock,
                                                        tmp_path) -> None:
    lab = people()  # 0: e-mail+SMS, 1: e-mail, 2: no channel, 3: SMS, 4: e-mail+SMS, 5: e-mail
    vault.put_patients(operator, lab)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="Compte utilisé depuis une adresse inconnue")
    first = {lab[0].id: {"categories": ["identity"]},
             lab[1].id: {"categories": ["identity", "results"], "special": ["hiv"]},
             lab[3].id: {"categories": ["identity"]},
             lab[4].id: {"categories": ["identity"], "exposure": "sealed"},  # exempt
             lab[5].id: {"categories": ["identity", "contact"]}}
    signed_scope(vault, inc.id, [{"id": k, **v} for k, v in first.items()])
    outbox = Outbox(vault, breach_config())
    assert outbox.queue_incident(dpo, inc.id) == 5  # 0 twice, 1, 3, 5
    with vault._records.engine.begin() as conn:  # as recorded before revision 0010: the
        conn.execute(update(breach_notice).values(scope_id=None))  # sealed state says it
    # The investigation goes on: the second scope adds to some, not to others.
    second = {lab[0].id: {"categories": ["identity", "results"], "special": ["pregnancy"]},
              lab[1].id: {"categories": ["identity", "results"], "special": ["hiv"]},  # same
              lab[3].id: {"categories": ["identity", "nir"]},
              lab[4].id: {"categories": ["identity"]},  # now read in clear: a first notice
              lab[5].id: {"categories": ["contact"]}}  # less than before: nothing to add
    later = signed_scope(vault, inc.id, [{"id": k, **v} for k, v in second.items()])
    assert outbox.queue_incident(dpo, inc.id) == 3 + 2  # updates: 0 twice, 3; 4's first two
    assert outbox.queue_incident(dpo, inc.id) == 0  # again: nothing new
    updates = [n for n in notices(vault) if n.kind == "incident-update"]
    assert Counter((n.patient_id, n.channel) for n in updates) == {
        (lab[0].id, "email"): 1, (lab[0].id, "sms"): 1, (lab[3].id, "sms"): 1}
    assert {n.scope_id for n in updates} == {later}
    # The index itself refuses a second update from the same scope.
    again = updates[0]._asdict() | {"id": uuid.uuid4(), "code_tag": bytes(32)}
    with pytest.raises(IntegrityError), vault._records.engine.begin() as conn:
        conn.execute(insert(breach_notice), again)

    recorder, (server_tls, _) = SmtpRecorder(), tls_contexts(tmp_path / "tls")
    with smtp_server(recorder, server_tls) as port, SmsGateway() as gateway:
        sender = Outbox(vault, breach_config(smtp_port=port, cafile=str(tmp_path / "tls/ca.pem"),
                                             sms_url=gateway.url), environ=ENVIRON)
        assert sender.deliver_due()["sent"] == 10
    mails = {m["To"]: m for m in (email.message_from_bytes(m.content, policy=email.policy.default)
                                  for m in recorder.messages) if "complément" in m["Subject"]}
    assert list(mails) == [lab[0].patient.email]  # one update by e-mail, to 0 only
    body = mails[lab[0].patient.email].get_content()
    assert ADDED in body and "L'ENSEMBLE DES DONNÉES VOUS CONCERNANT" in body
    added = body.split(ADDED)[1].split("L'ENSEMBLE")[0]
    assert "des résultats de vos examens" in added and "sensibles" in added
    assert "votre identité" not in added  # already told
    assert not re.search(r"pregnan|grossesse", body, re.I)
    sms = [m for m in gateway.received if "complément" in m.text]
    assert len(sms) == 2 and all(text.short_ref(inc.id) in m.text for m in sms)
    assert not [m for m in sms if "sensible" in m.text]
    answer = sender.verify(CODE.search(body)[0], "10.9.9.9")
    assert (answer.status, answer.about) == ("issued", "incident-update")
    status = sender.status(dpo, inc.id)
    assert status["updates"] == {"patients": 2, "patients_reached": 2, "notices": 3,
                                 "by_outcome": {"pending": 0, "sent": 3, "failed": 0,
                                                "undeliverable": 0}}
    assert status["by_outcome"]["sent"] == 7


def test_an_update_says_when_data_thought_sealed_was_read(vault, operator, dpo, clock) -> None:
    lab = people(seed=52)
    vault.put_patients(operator, lab)
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="lost-backup",
                                     description="Sauvegarde perdue")
    signed_scope(vault, inc.id, [{"id": lab[1].id, "categories": ["identity"],
                                  "exposure": "sealed"}])
    outbox = Outbox(vault, breach_config())
    assert outbox.queue_incident(dpo, inc.id, include_sealed=True) == 1
    signed_scope(vault, inc.id, [{"id": lab[1].id, "categories": ["identity"]}])
    assert outbox.queue_incident(dpo, inc.id) == 1
    row = next(n for n in notices(vault) if n.kind == "incident-update")
    state = outbox._open(row.id, row.delivery)
    assert state["added"] == {"categories": [], "special": False, "decrypted": True}
    incident = outbox._breach.incident(inc.id)
    subject, body = text.notice(outbox._config, "email", state["code"], incident,
                                {"categories": ["identity"]}, added=state["added"])
    assert "complément" in subject
    assert "ont en fait pu être lues en clair" in body and "étaient chiffrées" not in body
