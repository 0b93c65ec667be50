"""The whole procedure on files of every format: plan → run → verify → certificate → erase.

Files are written from synthetic records by each format's writer; the round trip must verify
at 100%, the counts must add up, the certificate must check and fail once altered, and after
erasure no plaintext value of the source may remain anywhere in the vault's storage.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from labvault import Settings, Vault, ingest
from labvault.leakcheck import LeakScanner
from labvault.leakprobe import postgres_urls, record_needles, storage_locations
from labvault.migrate import certificate, make_plan, run, verify
from labvault.synthetic import SyntheticLab

FORMATS = ["hl7v2", "hprim-sante", "hprim-medecin", "fhir", "csv"]


def write_source(tmp_path: Path, fmt: str, records) -> Path:
    path = tmp_path / f"export.{fmt}"
    with path.open("wb") as f:
        ingest.writer_for(fmt)(records, f)
    return path


def plan_for(tmp_path: Path, sources: list[Path], clock) -> Path:
    plan = make_plan(sources, created_by="local-operator:test", now=clock.now())
    path = tmp_path / "plan.json"
    plan.write(path)
    return path


@pytest.fixture
def embedded(tmp_path, clock):
    """A SQLite vault, for the tests whose subject does not depend on the backend."""
    settings = Settings.embedded(tmp_path / "embedded")
    v = Vault.init(settings, clock=clock)
    yield v
    v.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_at_100_percent(fmt, tmp_path, clock, operator):
    settings = Settings.embedded(tmp_path / "vault")
    vault = Vault.init(settings, clock=clock)
    try:
        _round_trip(fmt, vault, operator, settings, clock, tmp_path)
    finally:
        vault.close()


def test_round_trip_on_both_backends(vault, operator, settings, clock, tmp_path):
    _round_trip("hl7v2", vault, operator, settings, clock, tmp_path)


def _round_trip(fmt, vault, operator, settings, clock, tmp_path):
    records = list(SyntheticLab(31).records(25))
    source = write_source(tmp_path, fmt, records)
    plan_path = plan_for(tmp_path, [source], clock)
    plan = json.loads(plan_path.read_text())
    assert plan["sources"][0]["format"] == fmt
    assert plan["sources"][0]["rejected"] == 0
    assert plan["totals"]["results"] == sum(r.result_count() for r in records)

    counts = run(vault, operator, plan_path)
    units = plan["totals"]["units"]
    assert counts["new"] + counts["stored"] + counts["quarantined"] + counts["duplicate"] == units
    assert counts["quarantined"] == 0
    assert counts["new"] == len(records)

    report = verify(vault, operator, plan_path)
    assert report.complete and report.match_rate == 1.0
    assert report.count("match") == units
    assert report.results == sum(r.result_count() for r in records)

    # running again changes nothing
    again = run(vault, operator, plan_path)
    assert sum(again.values()) == 0
    assert vault.count_patients(operator) == len(records)

    doc = certificate.build(vault, operator, plan_path, clock.now())
    body = certificate.check(doc, vault.signing_public_key())
    assert body["counts"]["adds_up"] and body["reconciliation"]["complete"]
    for at in (body["reconciliation"]["at"], *(r["at"] for r in body["runs"])):
        assert datetime.fromisoformat(at).tzinfo is not None
    assert body["sources"][0]["sha256"] == plan["sources"][0]["sha256"]

    gone = vault.imports.erase(operator, uuid.UUID(plan["migration_id"]))
    assert gone.key_destroyed and gone.files_removed == 1

    needles = [n for r in records for n in record_needles(r)]
    scanner = LeakScanner(needles)
    leaks = scanner.scan_paths(storage_locations(settings))
    for url in postgres_urls(settings):
        leaks = leaks.merge(scanner.scan_pg_dump(url))
    assert leaks.clean, leaks.summary_lines()


def test_certificate_check_fails_on_any_change(embedded, operator, clock, tmp_path):
    vault = embedded
    records = list(SyntheticLab(32).records(5))
    plan_path = plan_for(tmp_path, [write_source(tmp_path, "hl7v2", records)], clock)
    run(vault, operator, plan_path)
    verify(vault, operator, plan_path)
    doc = certificate.build(vault, operator, plan_path, clock.now())
    html = certificate.write(doc, tmp_path / "cert.json")
    assert "Complete" in html.read_text()
    certificate.check(json.loads((tmp_path / "cert.json").read_text()),
                      vault.signing_public_key())

    altered = copy.deepcopy(doc)
    altered["certificate"]["counts"]["quarantined"] += 1
    with pytest.raises(InvalidSignature):
        certificate.check(altered, vault.signing_public_key())

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forger = Ed25519PrivateKey.generate()
    from labvault.crypto.signing import key_id, public_bytes
    from labvault.vault.certification import signed_message

    forged = copy.deepcopy(altered)
    forged["signature"] = base64.b64encode(forger.sign(signed_message(forged["certificate"]))
                                           ).decode()
    forged["public_key"] = base64.b64encode(public_bytes(forger.public_key())).decode()
    forged["key_id"] = key_id(forger.public_key())
    certificate.check(forged)  # consistent in itself...
    with pytest.raises(InvalidSignature):
        certificate.check(forged, vault.signing_public_key())  # ...but not the lab's key


def test_plan_reports_anomalies_without_values(tmp_path, clock):
    records = list(SyntheticLab(33).records(6))
    source = write_source(tmp_path, "hl7v2", records)
    data = source.read_bytes()
    nir = records[0].patient.nir
    broken_nir = nir[:-2] + ("00" if nir[-2:] != "00" else "01")
    data = data.replace(nir.encode(), broken_nir.encode())
    source.write_bytes(data + b"GARBAGE LINE\r")
    plan_path = plan_for(tmp_path, [source], clock)
    text = plan_path.read_text()
    plan = json.loads(text)
    anomalies = plan["sources"][0]["anomalies"]
    assert any(k.startswith("invalid: patient.nir") for k in anomalies), anomalies
    assert plan["sources"][0]["rejected"] >= 1
    for r in records:
        assert r.patient.last_name not in text
        assert nir not in text and broken_nir not in text


def test_a_source_changed_after_the_plan_is_refused(embedded, operator, clock, tmp_path):
    vault = embedded
    from labvault.errors import ConfigurationError

    source = write_source(tmp_path, "hl7v2", list(SyntheticLab(34).records(3)))
    plan_path = plan_for(tmp_path, [source], clock)
    source.write_bytes(source.read_bytes() + b"\r")
    with pytest.raises(ConfigurationError, match="changed since the plan"):
        run(vault, operator, plan_path)


def test_several_sources_and_formats_in_one_migration(embedded, operator, clock, tmp_path):
    vault = embedded
    lab = SyntheticLab(35)
    first, second = list(lab.records(8)), list(lab.records(8))
    a = write_source(tmp_path, "hl7v2", first)
    b = write_source(tmp_path, "hprim-sante", second)
    plan_path = plan_for(tmp_path, [a, b], clock)
    run(vault, operator, plan_path)
    report = verify(vault, operator, plan_path)
    assert report.complete
    assert vault.count_patients(operator) == 16


def test_the_same_patients_from_two_formats_merge(embedded, operator, clock, tmp_path):
    vault = embedded
    """An HL7 export and an HPRIM export of the same patients end as one patient each."""
    records = list(SyntheticLab(36).records(6))
    a = write_source(tmp_path, "hl7v2", records)
    b = write_source(tmp_path, "hprim-sante", records)
    plan_path = plan_for(tmp_path, [a, b], clock)
    counts = run(vault, operator, plan_path)
    assert vault.count_patients(operator) == 6
    # the second export's orders are the same exams: identical units are duplicates only if
    # their whole content is equal, so they are stored as further orders or skipped, never lost
    assert counts["quarantined"] == 0
    assert verify(vault, operator, plan_path).complete
