"""HPRIM Santé FIC results: the attached report files beside the export are staged sealed,
stored sealed with their result, verified by digest, and erased with the staging area."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from sqlalchemy import select

from labvault import Settings, Vault, ingest
from labvault.domain.records import PatientRecord
from labvault.leakcheck import LeakScanner, text_needles
from labvault.leakprobe import storage_locations
from labvault.migrate import certificate, make_plan, run, verify
from labvault.store.tables import migration_report
from labvault.synthetic import SyntheticLab


def _with_fic(record: PatientRecord, name: str) -> PatientRecord:
    order = record.orders[0]
    first = dataclasses.replace(order.results[0], value=f"FIC:{name}", unit=None,
                                reference_range=None, abnormal_flag=None)
    order = dataclasses.replace(order, results=(first, *order.results[1:]))
    return PatientRecord(record.patient, (order, *record.orders[1:]))


def test_attached_reports_are_stored_sealed_and_verified(tmp_path: Path, clock, operator) -> None:
    records = [r for r in SyntheticLab(61).records(12) if r.orders][:6]
    exports = tmp_path / "exports"
    exports.mkdir()
    reports = {}
    for i, r in enumerate(records[:3]):
        name = f"CR-{i:04d}.txt"
        text = (f"Compte rendu de {r.patient.last_name} {r.patient.first_names}: sérologie "
                f"VIH négative.\n").encode("latin-1")
        (exports / name).write_bytes(text)
        reports[name] = (r, text)
        records[i] = _with_fic(r, name)
    records[3] = _with_fic(records[3], "MISSING.pdf")  # named but not sent
    source = exports / "results.hpr"
    with source.open("wb") as f:
        ingest.writer_for("hprim-sante")(records, f)

    settings = Settings.embedded(tmp_path / "vault")
    vault = Vault.init(settings, clock=clock)
    try:
        plan = make_plan([source], created_by="test", now=clock.now())
        plan_path = tmp_path / "plan.json"
        plan.write(plan_path)
        doc = json.loads(plan_path.read_text())
        assert sorted(a["name"] for a in doc["sources"][0]["attachments"]) == sorted(reports)
        assert any("not found" in k for k in doc["sources"][0]["anomalies"])

        counts = run(vault, operator, plan_path)
        assert counts["quarantined"] == 1
        (entry,) = vault.imports.quarantine(operator, plan.migration_id)
        assert entry.field == "result.value (FIC)"

        for name, (r, text) in reports.items():
            (pid,) = vault.find_patients(operator, nir=r.patient.nir)
            got = vault.get_record(operator, pid)
            attached = [a for o in got.orders for res in o.results for a in res.attachments]
            assert [(a.name, a.media_type, a.content) for a in attached] == \
                [(name, "text/plain", text)]
        report = verify(vault, operator, plan_path)
        assert report.complete and report.count("quarantined") == 1
        with vault._records.engine.connect() as conn:
            stored = " ".join(r.body for r in conn.execute(select(migration_report)))
        assert all(name not in stored for name in reports)  # not in the database either
        assert str(exports) not in stored  # nor any path
        doc = json.dumps(certificate.build(vault, operator, plan_path, clock.now()))
        assert all(name not in doc for name in reports)  # names may be the patient's
        assert len(json.loads(doc)["certificate"]["sources"][0]["attachments"]) == 3

        needles = [n for _, (r, _) in reports.items()
                   for n in text_needles("name", r.patient.last_name)]
        needles += list(text_needles("report", "sérologie VIH négative"))
        scanner = LeakScanner(needles)
        vault.imports.erase(operator, plan.migration_id)
        assert scanner.scan_paths(storage_locations(settings)).clean
    finally:
        vault.close()
