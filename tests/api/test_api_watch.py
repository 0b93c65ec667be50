"""Automatic response through the HTTP API: an extraction is cut off after the role's limit,
a suspicious pattern asks for a fresh second factor, and the answer carries no value."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from labvault.access.principal import Role
from labvault.synthetic import SyntheticLab


@pytest.fixture
def many(vault, operator):
    recs = list(SyntheticLab(seed=21, results_per_patient=1).records(16))
    vault.put_patients(operator, recs)
    return recs


def test_an_extraction_through_the_api_is_locked_out(vault, client, login, clock, many,
                                                      operator) -> None:
    vault.watch.start(background=False)
    bio = login(Role.BIOLOGIST)
    codes = []
    for r in many:
        codes.append(client.get(f"/patients/{r.id}/record", headers=bio.headers).status_code)
        clock.advance(timedelta(seconds=2))
    assert codes[:13] == [200] * 13 and set(codes[13:]) == {401}
    r = client.post("/auth/login", json={"email": bio.email, "password": "correct horse "
                                         "battery staple 42"})
    assert r.status_code == 401  # locked: the password no longer opens anything
    alerts = vault.watch.alerts(operator)
    assert [(a.rule, a.response) for a in alerts] == [("volume", "locked")]


def test_probing_ids_asks_for_a_fresh_second_factor(vault, client, login, clock, many) -> None:
    vault.watch.start(background=False)
    sec = login(Role.SECRETARY)
    for _ in range(5):
        assert client.get(f"/patients/{uuid.uuid4()}", headers=sec.headers).status_code == 404
    r = client.get(f"/patients/{many[0].id}", headers=sec.headers)
    assert (r.status_code, r.json()) == (403, {"error": "step_up_required"}), r.text
    clock.advance(timedelta(seconds=31))
    r = client.post("/auth/step-up", json={"code": sec.totp.at(clock.now())}, headers=sec.headers)
    assert r.status_code == 204, r.text
    r = client.get(f"/patients/{many[0].id}", headers=sec.headers)
    assert r.status_code == 200
    assert many[0].patient.last_name in r.text  # the real answer, once the factor is proven
