"""``labvault audit …`` end to end: the installed command in subprocesses, on a vault of
synthetic patients. No personal value (names, NIR) may appear in any audit output or export.

Outputs are reduced to booleans before assertions, so a failure never prints them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labvault.domain.records import PatientRecord
from labvault.synthetic import SyntheticLab

SCRIPT = Path(sys.executable).with_name("labvault")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "labvault.cli"]
PATIENTS = 12
SEED = 4


@dataclass(frozen=True)
class Run:
    code: int
    out: str = field(repr=False)
    err: str = field(repr=False)


def run(args: Sequence[str | Path], cwd: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("LABVAULT_HOME",
                                                            "LABVAULT_PASSPHRASE")}
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb")
    proc = subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300, check=False)
    no_traceback = "Traceback" not in proc.stderr
    assert no_traceback
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def records() -> list[PatientRecord]:
    return list(SyntheticLab(SEED).records(PATIENTS))


@pytest.fixture(scope="module")
def vault_dir(tmp_path_factory, records) -> Path:
    root = tmp_path_factory.mktemp("audit-cli")
    d = root / "vault"
    init = run(["init", "--data-dir", d], root)
    assert init.code == 0
    assert "audit-verifier.key" in init.out and "move it off" in " ".join(init.out.split())
    assert run(["load", "synthetic", "--patients", PATIENTS, "--seed", SEED, "--data-dir", d],
               root).code == 0
    for r in records[:3]:
        assert run(["patient", "find", "--nir", r.patient.nir, "--data-dir", d], root).code == 0
    assert run(["patient", "show", str(records[0].id), "--data-dir", d,
                "--purpose", "result review"], root).code == 0
    return d


def _personal(records: list[PatientRecord]) -> list[str]:
    values = []
    for r in records:
        p = r.patient
        values += [p.last_name, p.first_names]
        if p.nir:
            values += [p.nir, p.nir.replace(" ", "")]
    return [v for v in values if v and len(v) >= 4]


def leaks(text: str, records: list[PatientRecord]) -> bool:
    return any(v in text for v in _personal(records))


def test_verify_tail_who_read_export_and_checkpoints(vault_dir: Path, records, tmp_path) -> None:
    cwd = vault_dir.parent
    outputs = []
    key = vault_dir / "audit-verifier.key"
    ok = run(["audit", "verify", "--data-dir", vault_dir, "--key", key], cwd)
    outputs.append(ok.out + ok.err)
    assert ok.code == 0
    assert "audit log intact" in ok.out

    marks = tmp_path / "marks.json"
    exported = run(["audit", "checkpoints", "--data-dir", vault_dir, "--out", marks], cwd)
    outputs.append(exported.out + exported.err)
    doc = json.loads(marks.read_text())
    assert exported.code == 0 and doc["format"] == "labvault-audit-checkpoints/1"
    assert "BEGIN PUBLIC KEY" in doc["public_key"]
    no_key = run(["audit", "verify", "--data-dir", vault_dir, "--checkpoints", marks], cwd)
    outputs.append(no_key.out + no_key.err)
    assert no_key.code == 0 and "tags not checked" in no_key.out

    who = run(["audit", "who-read", str(records[0].id), "--data-dir", vault_dir], cwd)
    outputs.append(who.out + who.err)
    assert who.code == 0
    lines = [ln for ln in who.out.splitlines() if "vault:" in ln]
    actions = [next(w for w in ln.split() if w.startswith("vault:")) for ln in lines]
    assert actions == ["vault:patient:create", "vault:patient:search", "vault:result:read"]
    assert "result review" in lines[-1]
    assert f"{len(lines)} accesses" in who.out
    other = run(["audit", "who-read", str(records[5].id), "--data-dir", vault_dir], cwd)
    assert other.code == 0 and "1 accesses" in other.out  # its creation only

    tail = run(["audit", "tail", "-n", "3", "--data-dir", vault_dir], cwd)
    outputs.append(tail.out + tail.err)
    assert tail.code == 0 and "last 3 audit events" in tail.out
    assert "audit:log:read" in tail.out

    out = tmp_path / "audit.jsonl"
    ex = run(["audit", "export", "--data-dir", vault_dir, "--format", "jsonl", "--out", out], cwd)
    outputs.append(ex.out + ex.err)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert ex.code == 0 and [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {"vault:patient:create", "vault:patient:search", "vault:result:read",
            "audit:log:verify", "audit:log:read"} <= {e["action"] for e in events}
    assert all(len(e["hash"]) == 64 and len(e["tag"]) == 64 for e in events)
    assert out.stat().st_mode & 0o777 == 0o600
    outputs.append(out.read_text())

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        sent = run(["audit", "export", "--data-dir", vault_dir, "--syslog",
                    f"udp://127.0.0.1:{udp.getsockname()[1]}", "--from", "2"], cwd)
        assert sent.code == 0
        n = int(sent.out.split()[0])
        messages = [udp.recv(65535).decode() for _ in range(n)]
    assert n == len(events) + 1 - 1  # from event 2, and the export's own event
    assert all(m.startswith(("<166>1 ", "<164>1 ")) for m in messages)
    outputs += messages

    assert not any(leaks(text, records) for text in outputs)


def test_usage_errors_and_recover_without_a_copy(vault_dir: Path) -> None:
    cwd = vault_dir.parent
    both = run(["audit", "export", "--data-dir", vault_dir, "--out", "x", "--syslog",
                "udp://127.0.0.1:9"], cwd)
    assert both.code == 2
    bad = run(["audit", "export", "--data-dir", vault_dir, "--syslog", "http://x:1"], cwd)
    assert bad.code == 2
    not_uuid = run(["audit", "who-read", "nope", "--data-dir", vault_dir], cwd)
    assert not_uuid.code == 2
    recover = run(["audit", "recover", "--data-dir", vault_dir], cwd)
    assert recover.code == 1 and "no audit file copy" in recover.err
