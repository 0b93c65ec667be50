"""A later scope that adds to what people were told: an update (article 34) to each of them,
naming what was added, once; nobody else is written to again, a message still waiting speaks
from the latest scope when it goes, and nothing completes a message that never arrived."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sms_gateway import (
    ENVIRON,
    SmsGateway,
    SmtpRecorder,
    breach_config,
    signed_scope,
    smtp_server,
    tls_contexts,
)
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from labvault.breach import notice_text as text
from labvault.breach.notices import Outbox
from labvault.store.tables import breach_notice, patient

CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")
ADDED = "CE QUE L'ANALYSE A AJOUTÉ"
# people(): 0 e-mail and mobile, 1 e-mail, 2 no channel, 3 mobile, 4 e-mail and mobile, 5 e-mail
MOBILE = {0: "+33612345678", 3: "+33798765432", 4: "+33711223344"}


@pytest.fixture
def channels(tmp_path):
    """A local SMTP server (STARTTLS) and SMS gateway, and an outbox that sends through them."""
    recorder, (server_tls, _) = SmtpRecorder(), tls_contexts(tmp_path / "tls")
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(smtp_server(recorder, server_tls))
        gateway = stack.enter_context(SmsGateway())

        def outbox(vault) -> Outbox:
            return Outbox(vault, breach_config(
                smtp_port=port, cafile=str(tmp_path / "tls/ca.pem"), sms_url=gateway.url,
                retry_after_seconds=60, max_attempts=3), environ=ENVIRON)

        yield outbox, recorder, gateway


def notices(vault) -> list:
    with vault._records.engine.connect() as conn:
        return list(conn.execute(select(breach_notice)))


def mails(recorder) -> list:
    return [email.message_from_bytes(m.content, policy=email.policy.default)
            for m in recorder.messages]


def incident(vault, dpo, clock, vector: str = "stolen-credentials"):
    return vault.breach.open_incident(dpo, detected_at=clock.now(), vector=vector,
                                      description="Compte utilisé depuis une adresse inconnue")


def scope(vault, inc, entries: dict) -> int:
    return signed_scope(vault, inc.id, [{"id": k, **v} for k, v in entries.items()])


def test_a_later_scope_that_adds_writes_an_update_once(vault, lab, dpo, clock,
                                                        channels) -> None:
    make, recorder, gateway = channels
    inc = incident(vault, dpo, clock)
    scope(vault, inc, {lab[0].id: {"categories": ["identity"]},
                       lab[1].id: {"categories": ["identity", "results"], "special": ["hiv"]},
                       lab[3].id: {"categories": ["identity"]},
                       lab[4].id: {"categories": ["identity"], "exposure": "sealed"},  # exempt
                       lab[5].id: {"categories": ["identity", "contact"]}})
    outbox = make(vault)
    assert outbox.queue_incident(dpo, inc.id) == 5  # 0 twice, 1, 3, 5
    assert outbox.deliver_due()["sent"] == 5
    with vault._records.engine.begin() as conn:  # as recorded before revision 0010: the
        conn.execute(update(breach_notice).values(scope_id=None))  # sealed state says it
    # The investigation goes on: the second scope adds to some, not to others.
    later = scope(vault, inc, {
        lab[0].id: {"categories": ["identity", "results"], "special": ["pregnancy"]},
        lab[1].id: {"categories": ["identity", "results"], "special": ["hiv", "genetic"]},
        lab[3].id: {"categories": ["identity", "nir"]},
        lab[4].id: {"categories": ["identity"]},  # now read in clear: a first notice
        lab[5].id: {"categories": ["contact"]}})  # less than before: nothing to add
    # Updates to 0 (twice) and 3; first notices to 4. Not 1: a second special category
    # changes no word of a message (none is ever named).
    assert outbox.queue_incident(dpo, inc.id) == 3 + 2
    assert outbox.queue_incident(dpo, inc.id) == 0  # again: nothing new
    updates = [n for n in notices(vault) if n.kind == "incident-update"]
    assert Counter((n.patient_id, n.channel) for n in updates) == {
        (lab[0].id, "email"): 1, (lab[0].id, "sms"): 1, (lab[3].id, "sms"): 1}
    assert {n.scope_id for n in updates} == {later}
    again = updates[0]._asdict() | {"id": uuid.uuid4(), "code_tag": bytes(32)}
    with pytest.raises(IntegrityError), vault._records.engine.begin() as conn:
        conn.execute(insert(breach_notice), again)  # the index itself refuses a second one

    assert outbox.deliver_due()["sent"] == 5
    update_mails = {m["To"]: m for m in mails(recorder) if "complément" in m["Subject"]}
    assert list(update_mails) == [lab[0].patient.email]
    body = update_mails[lab[0].patient.email].get_content()
    assert ADDED in body and "L'ENSEMBLE DES DONNÉES VOUS CONCERNANT" in body
    added = body.split(ADDED)[1].split("L'ENSEMBLE")[0]
    assert "des résultats de vos examens" in added and "sensibles" in added
    assert "votre identité" not in added  # already told
    assert not re.search(r"pregnan|grossesse", body, re.I)
    sms = [m for m in gateway.received if "complément" in m.text]
    assert sorted(m.to for m in sms) == sorted([MOBILE[0], MOBILE[3]])
    assert all(text.short_ref(inc.id) in m.text and "sensible" not in m.text for m in sms)
    answer = outbox.verify(CODE.search(body)[0], "10.9.9.9")
    assert (answer.status, answer.about) == ("issued", "incident-update")
    status = outbox.status(dpo, inc.id)
    assert (status["updates"]["patients"], status["updates"]["patients_reached"],
            status["updates"]["notices"], status["updates"]["by_outcome"]["sent"]) == (2, 2, 3, 3)
    assert status["updates"]["by_channel"] == {"email": {"sent": 1}, "sms": {"sent": 2}}
    assert status["by_outcome"]["sent"] == 7
    # The register entry (art. 33(5)) counts them apart.
    told = vault.breach.regulator.register(dpo)[0]["document"]["notifications"]["people"]
    assert told["updates"] == {"done": 3} and told["notices"] == {"done": 7}


def test_a_message_still_waiting_speaks_from_the_latest_scope(vault, lab, dpo, clock,
                                                              channels) -> None:
    make, _recorder, gateway = channels
    inc = incident(vault, dpo, clock, "lost-backup")
    scope(vault, inc, {lab[3].id: {"categories": ["identity"], "exposure": "sealed"}})
    outbox = make(vault)
    assert outbox.queue_incident(dpo, inc.id, include_sealed=True) == 1
    gateway.by_number[MOBILE[3]] = [(503, {})]  # the gateway is busy: tried again later
    assert outbox.deliver_due()["retrying"] == 1
    scope(vault, inc, {lab[3].id: {"categories": ["identity", "results"]}})  # read in clear
    assert outbox.queue_incident(dpo, inc.id) == 0  # no update of a message not yet sent
    clock.advance(timedelta(minutes=2))
    assert outbox.deliver_due()["sent"] == 1
    [sent] = gateway.accepted
    assert "chiffrées (risque faible)" not in sent.text and "complément" not in sent.text
    assert outbox.queue_incident(dpo, inc.id) == 0  # it said what the latest scope says


def test_no_update_completes_a_message_that_never_arrived(vault, lab, dpo, clock,
                                                          channels) -> None:
    make, _recorder, gateway = channels
    inc = incident(vault, dpo, clock)
    scope(vault, inc, {lab[3].id: {"categories": ["identity"]}})
    outbox = make(vault)
    assert outbox.queue_incident(dpo, inc.id) == 1
    gateway.by_number[MOBILE[3]] = [(400, {})]  # refused for good
    assert outbox.deliver_due()["failed"] == 1
    scope(vault, inc, {lab[3].id: {"categories": ["identity", "results"]}})
    assert outbox.queue_incident(dpo, inc.id) == 0
    assert outbox.status(dpo, inc.id)["by_outcome"]["failed"] == 1  # the DPO sees it


def test_an_update_owed_to_someone_no_longer_reachable_is_counted(vault, lab, dpo, clock,
                                                                  channels) -> None:
    make, _recorder, _gateway = channels
    inc = incident(vault, dpo, clock)
    scope(vault, inc, {lab[1].id: {"categories": ["identity"]}})
    outbox = make(vault)
    assert outbox.queue_incident(dpo, inc.id) == 1
    assert outbox.deliver_due()["sent"] == 1
    with vault._records.engine.begin() as conn:  # the e-mail on file was removed since
        conn.execute(update(patient).where(patient.c.id == lab[1].id).values(email=None))
    scope(vault, inc, {lab[1].id: {"categories": ["identity", "results"], "special": ["hiv"]}})
    assert outbox.queue_incident(dpo, inc.id) == 0  # nothing queued to send...
    assert outbox.queue_incident(dpo, inc.id) == 0
    scope(vault, inc, {lab[1].id: {"categories": ["identity", "results"], "special": ["hiv"]}})
    assert outbox.queue_incident(dpo, inc.id) == 0  # the same again, from a new scope
    [owed] = [n for n in notices(vault) if n.kind == "incident-update"]  # ...but recorded once
    assert (owed.channel, owed.state) == ("none", "done")
    updates = outbox.status(dpo, inc.id)["updates"]
    assert updates["by_outcome"]["undeliverable"] == 1 and updates["errors"] == {"no-contact": 1}


def test_an_update_says_when_data_thought_sealed_was_read(vault, lab, dpo, clock,
                                                          channels) -> None:
    make, recorder, _gateway = channels
    inc = incident(vault, dpo, clock, "lost-backup")
    scope(vault, inc, {lab[1].id: {"categories": ["identity"], "exposure": "sealed"}})
    outbox = make(vault)
    assert outbox.queue_incident(dpo, inc.id, include_sealed=True) == 1
    assert outbox.deliver_due()["sent"] == 1
    scope(vault, inc, {lab[1].id: {"categories": ["identity"]}})
    assert outbox.queue_incident(dpo, inc.id) == 1
    assert outbox.deliver_due()["sent"] == 1
    first, second = (m.get_content() for m in mails(recorder))
    assert "étaient chiffrées" in first
    assert "ont en fait pu être lues en clair" in second and "étaient chiffrées" not in second
