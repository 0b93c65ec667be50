"""The watcher sees probing of the public pages end to end: exposure checks through the real
desk and worker, codes through the real verification page, alerts in the vault."""

from __future__ import annotations

import uuid
from datetime import timedelta

from exposure_support import config, member, other_date, stranger_nir
from sms_gateway import breach_config

from labvault.breach.exposure import exposure_desk
from labvault.breach.exposure_worker import TriedDates
from labvault.breach.notices import Outbox, VerifyThrottled
from labvault.store.alerts import AlertStore
from labvault.watch.engine import alert_of


def alerts(vault) -> list:
    return [alert_of(r) for r in AlertStore(vault._records.engine).alerts()]


def test_probing_the_exposure_check_and_the_verify_page_raises_alerts(vault, records,
                                                                      clock) -> None:
    vault.watch.start(background=False)
    desk = exposure_desk(vault, config(per_source=100, per_identity=3))
    p = member(records)
    # Someone holding the member's NIR tries birth dates from three networks.
    for n, source in enumerate(("192.0.2.10", "198.51.100.10", "203.0.113.10")):
        details, problems = desk.parse(p.nir, (other_date(p.birth_date)
                                               - timedelta(days=n)).isoformat())
        assert not problems
        desk.submit(details, source=source, request_id=f"guess-{n}")
    # And another network walks a list of NIRs nobody here has.
    for n in range(10):
        details, _ = desk.parse(stranger_nir(records, seed=n), p.birth_date.isoformat())
        desk.submit(details, source="192.0.2.77", request_id=f"list-{n}")
    # A patient whose birth date on file is not the one they type, trying it three times.
    other = next(r.patient for r in records if r.patient.nir and r.patient.id != p.id)
    for n in range(3):
        details, _ = desk.parse(other.nir, other_date(other.birth_date).isoformat())
        desk.submit(details, source="198.51.100.44", request_id=f"same-{n}")
    outcomes = desk.drain()
    assert outcomes.count("mismatch") == 6 and outcomes.count("miss") >= 10
    raised = {(a.rule, a.actor) for a in alerts(vault)}
    assert ("birth-date-guessing", "public") in raised
    assert ("exposure-probing", "source:192.0.2.0/24") in raised
    [guess] = [a for a in alerts(vault) if a.rule == "birth-date-guessing"]
    assert guess.patient_ids == (p.id,)  # not the patient typing the same date again
    assert p.nir not in guess.explanation and p.last_name not in guess.explanation

    outbox = Outbox(vault, breach_config())
    refused = 0
    for n in range(30):  # a guesser who waits out each lock, from one /64
        try:
            outbox.verify(f"ZZZZZ-ZZZ{n:02d}", f"2001:db8:9::{n % 7 + 1}")
        except VerifyThrottled:
            refused += 1
            clock.advance(timedelta(minutes=31))
    assert refused > 0
    assert ("code-guessing", "source:2001:db8:9::/64") in {(a.rule, a.actor)
                                                           for a in alerts(vault)}


def test_tried_dates_count_distinct_dates_for_a_day_and_forget_the_rest() -> None:
    from datetime import UTC, date, datetime

    tried, t0 = TriedDates(), datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    me, other = uuid.uuid4(), uuid.uuid4()
    assert tried.add(me, date(1980, 1, 1), t0) == (1, True)
    assert tried.add(me, date(1980, 1, 1), t0 + timedelta(hours=1)) == (1, False)
    assert tried.add(me, date(1980, 1, 2), t0 + timedelta(hours=2)) == (2, True)
    assert tried.add(other, date(1980, 1, 2), t0 + timedelta(hours=3)) == (1, True)  # apart
    assert len(tried) == 2
    later = t0 + timedelta(days=1, hours=2, minutes=30)  # me: last tried over a day ago
    assert tried.add(uuid.uuid4(), date(1990, 5, 5), later) == (1, True)
    assert len(tried) == 2  # me left from the front; other (23.5 h) stays
    assert tried.add(me, date(1980, 1, 2), later) == (1, True)  # a new day: counted anew
