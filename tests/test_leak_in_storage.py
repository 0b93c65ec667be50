"""The leak check over a real vault of 1,000 synthetic patients, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from labvault.leakprobe import run_leak_check
from labvault.synthetic import SyntheticLab

PATIENTS = 1000


@pytest.fixture
def full_vault(vault, operator):
    records = list(SyntheticLab(seed=1000).records(PATIENTS))
    vault.put_patients(operator, records)
    return vault, records


def test_no_plaintext_anywhere(full_vault, settings, operator, backend):
    vault, records = full_vault
    # Read everything once more so the WAL and pages hold whatever reads leave behind.
    for record in records[:50]:
        vault.get_record(operator, record.id)
    report = run_leak_check(vault, settings, operator)
    assert report.clean, report.summary_lines()
    for category in ("name", "nir", "birth_date", "phone", "email", "comment", "result_value"):
        assert report.needles_used.get(category, 0) > 0
    scanned = dict(report.sources)
    if backend == "sqlite":
        assert any(s.endswith("labvault.sqlite") for s in scanned)
        assert any(s.endswith("labvault.sqlite-wal") and n > 0 for s, n in scanned.items())
        assert any(s.endswith("keys.sqlite") for s in scanned)
    else:
        assert sum(1 for s in scanned if s.startswith("pg_dump:")) == 2
        assert max(n for s, n in scanned.items() if s.startswith("pg_dump:")) > 1_000_000


def test_planted_plaintext_values_are_each_found(full_vault, settings, operator):
    vault, records = full_vault
    victim = records[123]
    planted = {
        "name": victim.patient.last_name,
        "nir": victim.patient.nir or records[124].patient.nir,
        "comment": next(c.text for r in records for o in r.orders for c in o.comments),
    }
    # Plaintext copies slipped into a clear column, one per row, as a careless integration
    # would do. (Not `detail`: SQLite stores it right before the request id's hex, and the
    # scanner drops a digit-only match glued to hex digits, which is how random ids look.)
    vault.get_record(operator, victim.id)  # one more event: three rows to plant in
    with vault._records.engine.begin() as conn:
        rows = conn.execute(text("SELECT id FROM audit_event ORDER BY id LIMIT 3")).scalars()
        for row, value in zip(rows.all(), planted.values(), strict=True):
            conn.execute(text("UPDATE audit_event SET source = :v WHERE id = :id"),
                         {"v": value, "id": row})
    report = run_leak_check(vault, settings, operator)
    assert not report.clean
    assert {f.category for f in report.findings} >= set(planted)
    lines = report.summary_lines()
    assert all(value not in line for value in planted.values() for line in lines)
