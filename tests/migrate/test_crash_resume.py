"""`migrate run` killed with SIGKILL at several points, then resumed: exactly the source's records.

The run is a real `labvault migrate run` subprocess; the test watches its progress in the
database (or its staging file appearing) and kills it there, then starts it again.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labvault import Settings, Vault, ingest, local_operator
from labvault.migrate import make_plan, verify
from labvault.synthetic import SyntheticLab

POLL = 0.005  # seconds between looks at the running process's progress


def _units_committed(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM import_unit").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _staging_started(staging: Path) -> bool:
    return staging.exists() and any(staging.glob("*/*"))


def _run(plan: Path, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "labvault.cli", "migrate", "run", str(plan), "-d", str(data_dir),
         "--batch-size", "15"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})


def _kill_when(proc: subprocess.Popen, ready) -> bool:
    """SIGKILL the process once `ready()` holds; False if it finished first."""
    import time

    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(POLL)  # waiting on another process, not on the clock under test
    return False


def test_kill_minus_nine_then_resume_gives_exactly_the_source(tmp_path: Path) -> None:
    records = list(SyntheticLab(2021).records(150))
    source = tmp_path / "export.hl7"
    with source.open("wb") as f:
        ingest.writer_for("hl7v2")(records, f)
    data_dir = tmp_path / "vault"
    Vault.init(Settings.embedded(data_dir)).close()
    plan = make_plan([source], created_by="test", now=datetime.now(UTC))
    plan_path = tmp_path / "plan.json"
    plan.write(plan_path)
    total_units = plan.sources[0].units
    db = data_dir / "labvault.sqlite"

    rng = random.Random(7)
    kills = 0
    # First kill while staging or just after; then at random points of the import.
    points = [0, *sorted(rng.sample(range(15, total_units - 15), 3))]
    for point in points:
        proc = _run(plan_path, data_dir)
        if point == 0:
            killed = _kill_when(proc, lambda: _staging_started(data_dir / "staging"))
        else:
            killed = _kill_when(proc, lambda p=point: _units_committed(db) >= p)
        kills += killed
        if not killed:
            assert proc.returncode == 0, proc.stderr.read().decode()
    assert kills >= 3
    proc = _run(plan_path, data_dir)
    assert proc.wait() == 0, proc.stderr.read().decode()

    vault = Vault.open(Settings.load(data_dir))
    try:
        operator = local_operator("crash test")
        report = verify(vault, operator, plan_path).to_json()
        assert report["units"] == total_units
        assert report["match"] == total_units and report["complete"]
        assert report["missing"] == report["extra"] == report["mismatch"] == 0
        # no duplicates: exactly the source's patients and orders
        assert vault.count_patients(operator) == len(records)
        stored = list(vault.iter_records(operator))
        assert sum(len(r.orders) for r in stored) == sum(len(r.orders) for r in records)
        assert sum(r.result_count() for r in stored) == sum(r.result_count() for r in records)
    finally:
        vault.close()


def test_a_second_run_and_an_erasure_are_refused_while_a_run_holds_the_lock(tmp_path: Path) -> None:
    import uuid
    from datetime import timedelta

    from labvault.errors import MigrationBusy

    vault = Vault.init(Settings.embedded(tmp_path / "vault"))
    try:
        operator = local_operator("lock test")
        mid = uuid.uuid4()
        plan = b'{"created_at": "2026-01-01T00:00:00+00:00", "created_by": "t", "sources": []}'
        vault.imports.begin(operator, mid, plan, datetime.now(UTC) + timedelta(days=1))
        with vault.imports.exclusive(mid):
            with pytest.raises(MigrationBusy), vault.imports.exclusive(mid):
                pass
            with pytest.raises(MigrationBusy):
                vault.imports.erase(operator, mid)
        other = uuid.uuid4()
        with vault.imports.importing(mid), pytest.raises(MigrationBusy, match="another migration"), \
                vault.imports.importing(other):
            pass
        assert vault.imports.erase(operator, mid).key_destroyed
    finally:
        vault.close()
