"""`labvault migrate …`, `labvault export …` and `labvault keys public` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from labvault import ingest
from labvault.synthetic import SyntheticLab

SCRIPT = Path(sys.executable).with_name("labvault")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "labvault.cli"]


def lv(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABVAULT_")}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=300, check=False)


def test_the_operator_procedure_end_to_end(tmp_path: Path) -> None:
    records = list(SyntheticLab(41).records(20))
    source = tmp_path / "export.hl7"
    with source.open("wb") as f:
        ingest.writer_for("hl7v2")(records, f)
    d = tmp_path / "vault"
    assert lv("init", "-d", d, cwd=tmp_path).returncode == 0

    plan = tmp_path / "plan.json"
    r = lv("migrate", "plan", source, "--out", plan, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hl7v2" in r.stdout and plan.exists()
    assert not (d / "staging").exists()  # planning stores nothing

    r = lv("migrate", "run", plan, "-d", d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "does not add up" not in r.stdout

    r = lv("migrate", "verify", plan, "-d", d, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "verification complete" in r.stdout

    r = lv("migrate", "status", "-d", d, cwd=tmp_path)
    assert r.returncode == 0 and "imported" in r.stdout

    cert = tmp_path / "cert.json"
    r = lv("migrate", "certificate", plan, "-d", d, "--out", cert, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert cert.exists() and cert.with_suffix(".html").exists()

    pem = tmp_path / "lab.pem"
    r = lv("keys", "public", "-d", d, cwd=tmp_path)
    assert r.returncode == 0
    pem.write_text(r.stdout.split("key id")[0])
    r = lv("migrate", "certificate", "--check", cert, "--public-key", pem, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "certificate valid" in r.stdout and "not erased" in r.stdout

    doc = json.loads(cert.read_text())
    doc["certificate"]["counts"]["read"] += 1
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    r = lv("migrate", "certificate", "--check", forged, "-d", d, cwd=tmp_path)
    assert r.returncode == 1 and "INVALID" in r.stderr

    r = lv("migrate", "erase", plan, "-d", d, "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not any((d / "staging").glob("*/*"))
    r = lv("migrate", "verify", plan, "-d", d, cwd=tmp_path)
    assert r.returncode == 1 and "erased" in r.stderr
    r = lv("migrate", "certificate", plan, "-d", d, "--out", cert, cwd=tmp_path)
    assert r.returncode == 0
    r = lv("migrate", "certificate", "--check", cert, "-d", d, cwd=tmp_path)
    assert r.returncode == 0 and "staging erased" in r.stdout

    # export: one patient as FHIR, everything as HL7 v2 again
    pid = lv("patient", "find", "-d", d, "--nir", records[0].patient.nir, cwd=tmp_path)
    assert pid.returncode == 0
    out = tmp_path / "patient.json"
    r = lv("export", "patient", pid.stdout.strip(), "-d", d, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bundle = json.loads(out.read_text())
    assert bundle["resourceType"] == "Bundle"
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    again = tmp_path / "again.hl7"
    r = lv("export", "all", "-d", d, "--format", "hl7v2", "--out", again, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with again.open("rb") as f:
        units = list(ingest.reader_for("hl7v2")(f, again.name))
    assert all(isinstance(u, ingest.Parsed) for u in units)
    assert sum(u.record.result_count() for u in units) == sum(r.result_count() for r in records)
