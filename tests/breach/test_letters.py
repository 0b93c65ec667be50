"""Letters for the people no e-mail or SMS reached, and for the updates no message can carry:
the command creates one printable page each (0600, never over an existing file), with a code
that checks on the public page, once per person and incident (and per update's scope); a
document that cannot be written records nothing."""

from __future__ import annotations

import html
import json
import os
import re
import stat

from sms_gateway import (
    ENVIRON,
    PUBLIC_URL,
    TOKEN,
    TOKEN_ENV,
    SmsGateway,
    breach_config,
    signed_scope,
)
from sqlalchemy import select, update
from typer.testing import CliRunner

from labvault.breach.notices import Outbox
from labvault.cli import app as cli_app
from labvault.store.tables import audit_event, breach_notice, patient

CODE = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")
ADDED = "CE QUE L'ANALYSE A AJOUTÉ"


def test_letters_reach_those_no_message_reached_once(vault, settings, lab, dpo, clock,
                                                     tmp_path) -> None:
    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                     description="Compte utilisé depuis une adresse inconnue")
    entries = [{"id": r.id, "categories": ["identity"]} for r in lab]
    entries[4]["exposure"] = "sealed"  # exempt: no notice, no letter
    signed_scope(vault, inc.id, entries)
    with vault._records.engine.begin() as conn:  # no postal address on file for lab[3]
        conn.execute(update(patient).where(patient.c.id == lab[3].id).values(address=None))
    (settings.data_dir / "breach.toml").write_text(
        '[controller]\nname = "Laboratoire Exemple"\ndpo_email = "dpo@labo.example"\n'
        'address = "1 rue des Analyses, 75001 Paris"\n'
        f'[notices]\npublic_url = "{PUBLIC_URL}"\n')
    runner = CliRunner()

    def letters(out, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["breach", "letters", str(inc.id), "--out", str(out),
                                          "-d", str(settings.data_dir)],
                               env={"COLUMNS": "200", "NO_COLOR": "1", TOKEN_ENV: TOKEN})
        assert result.exit_code == code, result.output
        assert not [r for r in lab if r.patient.last_name in result.output]
        return result.output

    # Before anyone was notified: no letter (those with an e-mail or a mobile get those).
    assert "0 letters (0 updates) none" in letters(tmp_path / "early.html")
    assert "5 not notified yet" in letters(tmp_path / "early.html")
    with SmsGateway() as gateway:
        gateway.by_number["+33798765432"] = [(400, {})]  # lab[3]'s only channel refuses
        outbox = Outbox(vault, breach_config(sms_url=gateway.url), environ=ENVIRON)
        assert outbox.queue_incident(dpo, inc.id) == 5  # e-mails wait: no SMTP here
        assert outbox.deliver_due() == {"sent": 1, "retrying": 0, "failed": 1,
                                        "undeliverable": 0}

    # A document that cannot be written records nothing: the next run writes the letter.
    said = letters(tmp_path / "no-such-dir" / "courriers.html", code=1)
    assert "nothing was recorded" in said
    out = tmp_path / "courriers.html"
    said = letters(out)
    assert "1 letters (0 updates) written" in said and "1 people without a postal" in said
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    page = out.read_text()
    who = lab[2].patient  # a landline only: the one person nothing could reach
    assert who.last_name in page and who.address.line1 in page and who.address.city in page
    assert not [r for r in lab if r is not lab[2] and r.patient.last_name in page]
    assert "Objet : Laboratoire Exemple : information sur un incident" in page
    assert page.count('class="letter"') == 1 and "<script" not in page
    code = CODE.search(page)[0]
    checked = Outbox(vault, breach_config()).verify(code, "192.0.2.9")
    assert (checked.status, checked.about) == ("issued", "incident")
    assert "exists" in letters(out, code=2)  # never over a file that may not be printed yet
    assert out.read_text() == page
    assert "0 letters (0 updates) none" in letters(tmp_path / "again.html")  # once

    # A later scope adds to what the letter said: the update is owed, on paper.
    signed_scope(vault, inc.id, [{**e, "categories": ["identity", "results"],
                                  "special": ["hiv"]} if e["id"] == lab[2].id else e
                                 for e in entries])
    assert Outbox(vault, breach_config()).queue_incident(dpo, inc.id) == 0
    said = letters(tmp_path / "updates.html")
    assert "1 letters (1 updates) written" in said
    page = html.unescape((tmp_path / "updates.html").read_text())
    assert ADDED in page and "relevant de données de santé sensibles" in page
    assert "VIH" not in page and "complément" in page
    assert "0 letters (0 updates) none" in letters(tmp_path / "updates-again.html")
    status = Outbox(vault, breach_config()).status(dpo, inc.id)
    assert status["by_channel"]["letter"] == {"printed": 1}
    assert status["updates"]["by_channel"]["letter"] == {"printed": 1}
    with vault._records.engine.connect() as conn:
        assert {r.channel for r in conn.execute(select(breach_notice)) if r.state != "done"} \
            == {"email"}  # the e-mails still wait; no letter is ever queued to a sender
        named = [json.loads(e.patient_ids) for e in conn.execute(select(audit_event).where(
            audit_event.c.purpose == "breach notification").order_by(audit_event.c.id))
            if json.loads(e.detail or "{}").get("what") == "letters"]
        withdrawn = [json.loads(e.detail) for e in conn.execute(select(audit_event).where(
            audit_event.c.action == "breach:incident:manage"))
            if json.loads(e.detail or "{}").get("what") == "letters-withdrawn"]
    assert named[0] == sorted([lab[2].id.hex, lab[3].id.hex])  # names, addresses: audited
    assert [w["letters"] for w in withdrawn] == [1]  # the document that could not be written


def test_letters_of_a_run_that_died_are_written_again_after_the_grace(vault, lab, dpo,
                                                                      clock) -> None:
    from datetime import timedelta

    from labvault.breach.letters import GRACE, Letters

    inc = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="lost-backup",
                                     description="Sauvegarde perdue")
    signed_scope(vault, inc.id, [{"id": lab[2].id, "categories": ["identity"]}])
    config = breach_config()
    config.doc["controller"]["address"] = "1 rue des Analyses, 75001 Paris"
    outbox = Outbox(vault, config)
    assert outbox.queue_incident(dpo, inc.id) == 0  # lab[2]: no channel, recorded "none"
    desk = Letters(outbox)
    died = desk.prepare(dpo, inc.id)  # ... and the process was killed before the file
    assert died.letters == 1
    assert desk.prepare(dpo, inc.id).letters == 0  # within the grace: another run's
    clock.advance(GRACE + timedelta(minutes=1))
    again = desk.prepare(dpo, inc.id)
    assert again.letters == 1 and again.recorded != died.recorded
    assert desk.confirm(again) == 1
    old_code = CODE.search(died.html.reveal())[0]
    new_code = CODE.search(again.html.reveal())[0]
    assert outbox.verify(old_code, "192.0.2.9").status == "unknown"  # that letter is gone
    assert outbox.verify(new_code, "192.0.2.9").status == "issued"
    assert desk.prepare(dpo, inc.id).letters == 0
    with vault._records.engine.connect() as conn:
        letters = [r for r in conn.execute(select(breach_notice))
                   if r.channel == "letter"]
        withdrawn = [json.loads(e.detail) for e in conn.execute(select(audit_event))
                     if json.loads(e.detail or "{}").get("what") == "letters-withdrawn"]
    assert [(r.state, r.id) for r in letters] == [("done", again.recorded[0])]
    assert [(w["letters"], w["reason"]) for w in withdrawn] == [(1, "unconfirmed")]
