"""A search that names more than BULK_LIMIT patients is a bulk read: it wants a fresh second
factor like an export, and the refusal is audited without the ids."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from labvault.access.permissions import BULK_LIMIT
from labvault.access.principal import Principal, Role
from labvault.errors import StepUpRequired
from labvault.store.tables import audit_event
from labvault.synthetic import SyntheticLab


def _namesakes(n: int):
    born = date(1970, 1, 1)
    for rec in SyntheticLab(seed=3, results_per_patient=1).records(n):
        p = dataclasses.replace(rec.patient, last_name="Martin", birth_date=born, nir=None,
                                ins=None)
        yield dataclasses.replace(rec, patient=p)


def test_a_search_naming_many_patients_needs_step_up(vault, operator, clock):
    vault.put_patients(operator, list(_namesakes(BULK_LIMIT + 1)))
    now = clock.now()
    stale = Principal("account:bio", Role.BIOLOGIST, "10.0.0.7", "care",
                      mfa_at=now - timedelta(minutes=6))
    with pytest.raises(StepUpRequired):
        vault.find_patients(stale, last_name="Martin", birth_date=date(1970, 1, 1))
    with vault._records.engine.connect() as conn:
        last = conn.execute(select(audit_event).order_by(audit_event.c.id.desc())).first()
    assert last.outcome == "step_up_required" and last.patient_ids == "[]"
    fresh = dataclasses.replace(stale, mfa_at=now)
    assert len(vault.find_patients(fresh, last_name="Martin",
                                   birth_date=date(1970, 1, 1))) == BULK_LIMIT + 1
