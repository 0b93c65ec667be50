"""Probing of the public pages: the exposure check and the notice verification page."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rule_support import T0, Harness, event

from labvault.audit.sink import AuditEvent
from labvault.watch.alerts import Severity

LOOKUP, VERIFY = "breach:exposure:lookup", "breach:notice:verify"


def lookup(at, source: str, outcome: str, ids=(), **detail) -> AuditEvent:
    return AuditEvent(at=at, actor="labvault:exposure-check", role="system", source=source,
                      purpose="exposure check", action=LOOKUP, outcome=outcome,
                      patient_ids=tuple(ids), detail=detail, request_id=uuid.uuid4().hex)


def test_a_network_trying_a_list_on_the_exposure_check_is_reported() -> None:
    h = Harness()
    for n in range(9):
        h.feed(lookup(T0 + timedelta(minutes=n), f"192.0.2.{n + 1}", "miss"))
    assert h.by_rule("exposure-probing") == []
    found = h.feed(lookup(T0 + timedelta(minutes=9), "192.0.2.99", "miss"))
    assert [(f.rule, f.severity, f.actor) for f in found] == [
        ("exposure-probing", Severity.MEDIUM, "source:192.0.2.0/24")]
    assert found[0].evidence == {"misses": 10}
    # Matches are people checking for themselves: they never count.
    h2 = Harness()
    for n in range(30):
        h2.feed(lookup(T0 + timedelta(minutes=n), "192.0.2.1", "match", [uuid.uuid4()]))
    assert h2.all == []


def test_typing_errors_from_many_places_and_a_slow_trickle_stay_quiet() -> None:
    h = Harness()
    for n in range(40):  # one miss each from forty networks
        h.feed(lookup(T0 + timedelta(minutes=n), f"10.{n}.0.1", "miss"))
    for n in range(20):  # one network, nine a day: under the limit of each window
        h.feed(lookup(T0 + timedelta(hours=24 * (n // 9) + n % 9), "198.51.100.7", "miss"))
    assert h.all == []


def test_real_nirs_with_wrong_birth_dates_are_high() -> None:
    h = Harness()
    for n in range(3):
        found = h.feed(lookup(T0 + timedelta(minutes=n), "203.0.113.5", "mismatch",
                              [uuid.uuid4()], dates_tried=1, new_date=True))
    assert [(f.rule, f.severity) for f in found] == [("exposure-probing", Severity.HIGH)]
    assert found[0].evidence == {"mismatches": 3, "misses": 3}


def test_a_patient_typing_the_same_wrong_date_again_is_not_guessing() -> None:
    h = Harness()
    me = uuid.uuid4()
    for n in range(4):  # the date on file is wrong, or mistyped the same way each time
        h.feed(lookup(T0 + timedelta(hours=2 * n), "192.0.2.8", "mismatch", [me],
                      dates_tried=1, new_date=n == 0))
    assert h.by_rule("birth-date-guessing") == [] and h.by_rule("exposure-probing") == []


def test_one_patients_nir_tried_from_several_networks_names_the_patient() -> None:
    h = Harness()
    victim = uuid.uuid4()
    sources = ("192.0.2.1", "198.51.100.1", "2001:db8:1::1")
    for n, source in enumerate(sources):
        found = h.feed(lookup(T0 + timedelta(hours=n), source, "mismatch", [victim],
                              dates_tried=n + 1, new_date=True))
    guess = [f for f in found if f.rule == "birth-date-guessing"]
    assert [(f.severity, f.actor, f.patient_ids) for f in guess] == [
        (Severity.HIGH, "public", (victim,))]
    assert h.by_rule("exposure-probing") == []  # no single network went over its limit
    # A leaked list tried the same way: the first ten patients of the day named one by one,
    # then one alert for the rest, counting them.
    victims = [uuid.uuid4() for _ in range(14)]
    for other in victims:
        for n, source in enumerate(sources):
            h.feed(lookup(T0 + timedelta(hours=4 + n), source, "mismatch", [other],
                          dates_tried=n + 1, new_date=True))
    guesses = h.by_rule("birth-date-guessing")
    named = {f.patient_ids for f in guesses if f.patient_ids}
    assert named == {(p,) for p in [victim, *victims[:9]]}
    more = [f for f in guesses if not f.patient_ids]
    assert len({f.dedup_key for f in more}) == 1 and more[-1].evidence == {"patients": 15}


def test_unknown_codes_past_the_throttle_from_one_address_are_code_guessing() -> None:
    h = Harness()
    for n in range(15):  # ten, then one each time the half-hour lock ends
        found = h.feed(event("public", VERIFY, T0 + timedelta(minutes=max(0, n - 9) * 31),
                             role="public", source=f"2001:db8:5::{n % 3 + 1}",
                             outcome="unknown"))
        assert bool(found) is (n == 14)
    assert [(f.rule, f.severity, f.actor) for f in found] == [
        ("code-guessing", Severity.MEDIUM, "source:2001:db8:5::/64")]
    shared = Harness()
    for n in range(40):  # one typo each from forty people behind one IPv4 network
        shared.feed(event("public", VERIFY, T0 + timedelta(seconds=n), role="public",
                          source=f"192.0.2.{n + 1}", outcome="unknown"))
    assert shared.all == []
