"""Ugly legacy exports through the whole procedure: whatever cannot be stored is quarantined
with its position and reason, counts add up, and the reconciliation is still complete."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

from labvault import Settings, Vault, ingest
from labvault.migrate import certificate, make_plan, run, verify
from labvault.synthetic import SyntheticLab


def _written(fmt: str, records, **options) -> bytes:
    out = io.BytesIO()
    ingest.writer_for(fmt)(records, out, **options)
    return out.getvalue()


def test_ugly_exports_end_stored_or_quarantined(tmp_path: Path, clock, operator) -> None:
    lab = SyntheticLab(51)
    hl7_records, hprim_records = list(lab.records(12)), list(lab.records(12))

    # HL7 v2: ISO-8859-1, CRLF, MLLP framing, junk before the first message, a bad NIR key.
    hl7 = _written("hl7v2", hl7_records, encoding="iso-8859-1", terminator=b"\r\n",
                   framing="mllp")
    nir = hl7_records[0].patient.nir
    bad = nir[:-2] + ("00" if nir[-2:] != "00" else "01")
    hl7 = b"export of the old LIS\r\n" + hl7.replace(nir.encode(), bad.encode())
    # HPRIM Santé: CRLF, another delimiter set, a last record cut in the middle.
    hprim = _written("hprim-sante", hprim_records, delimiters="|\\^&~", line_ending=b"\r\n")
    hprim = hprim[: hprim.rindex(b"OBX|") + 20]
    # An unknown date format in the first patient's birth date.
    born = hprim_records[0].patient.birth_date.strftime("%Y%m%d").encode()
    hprim = hprim.replace(born, b"31/02/19", 1)

    a, b = tmp_path / "old.hl7", tmp_path / "old.hpr"
    a.write_bytes(hl7)
    b.write_bytes(hprim)
    settings = Settings.embedded(tmp_path / "vault")
    vault = Vault.init(settings, clock=clock)
    try:
        plan = make_plan([a, b], created_by="test", now=clock.now())
        plan_path = tmp_path / "plan.json"
        plan.write(plan_path)
        text = plan_path.read_text()
        assert bad not in text and nir not in text
        doc = json.loads(text)
        assert [s["format"] for s in doc["sources"]] == ["hl7v2", "hprim-sante"]
        hl7_plan, hprim_plan = doc["sources"]
        assert any(k.startswith("invalid: patient.nir") for k in hl7_plan["anomalies"])
        assert hl7_plan["rejected"] >= 1  # the junk line
        assert hprim_plan["rejected"] >= 2  # the bad birth date and the truncated end

        counts = run(vault, operator, plan_path)
        read = doc["totals"]["units"]
        assert counts["new"] + counts["stored"] + counts["quarantined"] + counts["duplicate"] \
            == read
        entries = list(vault.imports.quarantine(operator, plan.migration_id))
        fields = {e.field for e in entries}
        assert "patient.nir" in fields
        assert any("truncat" in e.reason for e in entries)
        assert len(entries) == counts["quarantined"]
        for e in entries:
            assert nir not in e.reason and bad not in e.reason
            assert hprim_records[0].patient.last_name not in e.reason

        report = verify(vault, operator, plan_path)
        assert report.complete
        assert report.count("quarantined") == counts["quarantined"]
        assert report.count("match") == counts["new"] + counts["stored"]

        cert = certificate.build(vault, operator, plan_path, clock.now())["certificate"]
        assert cert["counts"]["adds_up"]
        assert sum(q["units"] for q in cert["quarantine"]) == counts["quarantined"]
        assert uuid.UUID(cert["migration_id"]) == plan.migration_id
    finally:
        vault.close()
