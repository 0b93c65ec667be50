"""The right-of-access report (GDPR art. 15) on SQLite and PostgreSQL: the patient's whole
record read through the vault and the list of who accessed it, audited under its own purpose,
written as JSON and HTML with mode 0600."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime

import pytest
import typer
from typer.testing import CliRunner

from labvault import AccessDenied, Principal, Role
from labvault.access.permissions import Permission
from labvault.domain.records import Attachment, Comment, Order, Patient, PatientRecord, Result, Sex
from labvault.patient_commands import patient_report
from labvault.vault import access_report

REPORT = b"%PDF-1.4 compte rendu Tamanoir"


@pytest.fixture
def record(vault, operator) -> PatientRecord:
    rec = PatientRecord(
        Patient(last_name="Guillerand-Ozu", first_names="Léocadie", birth_date=date(1981, 2, 3),
                sex=Sex.FEMALE, phone="0612345678"),
        (Order(lab_finess="750000010", sampled_at=datetime(2025, 11, 3, 8, 15, tzinfo=UTC),
               lab_file_number="F-2211", comments=(Comment("À jeun depuis 12 h"),),
               results=(Result("LN", "2345-7", "Glycémie", "5.41", unit="mmol/L",
                               comments=(Comment("Contrôle conseillé"),),
                               attachments=(Attachment("cr.pdf", "application/pdf", REPORT),)),)),))
    vault.put_patients(operator, [rec])
    return rec


def staff(role: Role, n: int) -> Principal:
    return Principal(f"account:{role.value}-{n}", role, "10.0.0.7", "care",
                     request_id=uuid.uuid4().hex)


def test_report_holds_the_record_and_who_accessed_it(vault, operator, record, settings,
                                                     tmp_path):
    vault.get_record(staff(Role.BIOLOGIST, 1), record.id)
    with pytest.raises(AccessDenied):  # a secretary may not read results: refused, and listed
        vault.get_record(staff(Role.SECRETARY, 2), record.id)
    doc = access_report.build(vault, operator, record.id)
    assert doc["identity"]["last_name"] == "Guillerand-Ozu"
    assert doc["identity"]["birth_date"] == "1981-02-03" and doc["identity"]["sex"] == "F"
    (order,) = doc["orders"]
    assert order["comments"] == ["À jeun depuis 12 h"]
    (res,) = order["results"]
    assert (res["label"], res["value"], res["comments"]) == ("Glycémie", "5.41",
                                                             ["Contrôle conseillé"])
    (att,) = res["attachments"]
    assert base64.b64decode(att["content_base64"]) == REPORT and att["size"] == len(REPORT)
    seen = [(a["actor"], a["action"], a["outcome"], a["purpose"]) for a in doc["accesses"]]
    assert ("account:biologist-1", str(Permission.RESULT_READ), "allowed", "care") in seen
    assert ("account:secretary-2", str(Permission.RESULT_READ), "denied", "care") in seen
    assert seen[-1] == (operator.actor_id, str(Permission.RESULT_READ), "allowed",
                        access_report.PURPOSE)  # its own read, last
    purposes = {(le.event.action, le.event.purpose)
                for le in vault.audit_log.events(operator, limit=1000, patient_id=record.id)}
    assert (str(Permission.AUDIT_READ), access_report.PURPOSE) in purposes
    with pytest.raises(AccessDenied):  # a biologist may read results, not the audit log
        access_report.build(vault, staff(Role.BIOLOGIST, 1), record.id)

    # The command: JSON and HTML beside it, readable by their owner only.
    app = typer.Typer()
    app.command()(patient_report)
    out = tmp_path / "acces.json"
    done = CliRunner().invoke(app, [str(record.id), "--out", str(out), "--data-dir",
                                    str(settings.data_dir)])
    assert done.exit_code == 0, done.output
    assert "Guillerand" not in done.output and "1 orders, 1 results" in done.output
    html = out.with_suffix(".html")
    for f in (out, html):
        assert f.stat().st_mode & 0o777 == 0o600
    doc = json.loads(out.read_text())
    assert doc["kind"] == access_report.REPORT_KIND and doc["retention"]["results_years"] == 10
    page = html.read_text()
    assert "Guillerand-Ozu" in page and "Glycémie" in page and doc["accesses"][-1]["actor"] in page
    bad = CliRunner().invoke(app, ["not-a-uuid", "--out", str(out)])
    assert bad.exit_code == 2
