"""Each rule fires on its pattern and stays quiet on ordinary work."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rule_support import SITE_A, SITE_B, T0, Facts, Harness, actor, event, workday

from labvault.watch.alerts import Severity
from labvault.watch.config import WatchConfig

READ = "vault:result:read"
SEARCH = "vault:patient:search"


def ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


# -- decoys ----------------------------------------------------------------------------------------
def test_any_touch_of_a_decoy_is_critical_even_refused() -> None:
    decoy = uuid.uuid4()
    h = Harness(facts=Facts(decoys={decoy}))
    who = actor()
    assert h.feed(event(who, READ, T0, ids=(uuid.uuid4(),))) == []
    found = h.feed(event(who, "vault:patient:read", T0, outcome="denied", ids=(decoy,)))
    assert [(f.rule, f.severity) for f in found] == [("honeytoken", Severity.CRITICAL)]
    assert str(decoy) not in found[0].explanation and found[0].patient_ids == ()
    assert found[0].evidence["decoy"] == decoy.bytes.hex()[:12]
    # A search that finds the decoy is a touch too; creating it (seeding) is not.
    assert h.feed(event(actor(), SEARCH, T0, ids=(decoy,), by="nir", hits=1))
    assert h.feed(event(actor(), "vault:patient:create", T0, ids=(decoy,))) == []
    assert h.feed(event("local-operator:root", "vault:patient:export", T0, ids=(decoy,))) == []


# -- volume ----------------------------------------------------------------------------------------
def test_volume_over_the_role_limit_within_a_minute_is_critical() -> None:
    h, who = Harness(), actor()
    for i, pid in enumerate(ids(12)):
        assert h.feed(event(who, READ, T0 + timedelta(seconds=4 * i), ids=(pid,))) == []
    found = h.feed(event(who, READ, T0 + timedelta(seconds=50), ids=(uuid.uuid4(),)))
    assert [(f.rule, f.severity, f.evidence["window"]) for f in found] == [
        ("volume", Severity.CRITICAL, "1m")]
    assert "13 distinct patients" in found[0].explanation


def test_rereading_the_same_patients_is_not_volume() -> None:
    h, who = Harness(), actor()
    few = ids(3)
    for i in range(60):
        h.feed(event(who, READ, T0 + timedelta(seconds=5 * i), ids=(few[i % 3],)))
    assert h.all == []


def test_a_biologists_steady_day_stays_under_the_limits() -> None:
    h, who = Harness(), actor()
    at = workday(0, 8.0)
    for pid in ids(150):  # one record every 3 minutes for 7.5 hours
        h.feed(event(who, READ, at, ids=(pid,)))
        at += timedelta(minutes=3)
    assert h.all == []


def test_a_day_far_above_the_actors_own_baseline_is_reported() -> None:
    h, who = Harness(), actor()
    for day in range(6):
        at = workday(day, 8.0)
        for pid in ids(20):
            h.feed(event(who, READ, at, ids=(pid,)))
            at += timedelta(minutes=10)
    at = workday(6, 8.0)
    for pid in ids(61):
        h.feed(event(who, READ, at, ids=(pid,)))
        at += timedelta(minutes=5)
    found = h.by_rule("volume-baseline")
    assert len({f.key for f in found}) == 1 and found[0].severity is Severity.MEDIUM
    assert found[0].evidence["usual"] == 20.0


# -- enumeration -----------------------------------------------------------------------------------
def test_nir_searches_walking_one_birth_block_are_enumeration() -> None:
    h, who = Harness(), actor()
    for n in range(3):
        h.feed(event(who, SEARCH, T0 + timedelta(seconds=n), by="nir", hits=0, blk="ab12",
                     nid=f"{100 + n:04x}"))
    assert h.by_rule("enumeration") == []
    h.feed(event(who, SEARCH, T0 + timedelta(seconds=4), by="nir", hits=0, blk="ab12",
                 nid="0104"))
    assert [f.severity for f in h.by_rule("enumeration")] == [Severity.HIGH]
    for n in range(5, 9):
        h.feed(event(who, SEARCH, T0 + timedelta(seconds=n), by="nir", hits=0, blk="ab12",
                     nid=f"{100 + n:04x}"))
    assert Severity.CRITICAL in {f.severity for f in h.by_rule("enumeration")}


def test_nir_searches_of_unrelated_people_are_not_enumeration() -> None:
    h, who = Harness(), actor()
    for n in range(40):
        h.feed(event(who, SEARCH, T0 + timedelta(minutes=n), role="secretary", by="nir", hits=1,
                     ids=(uuid.uuid4(),), blk=f"{n:04x}", nid=f"{(n * 37) % 999:04x}"))
    assert h.by_rule("enumeration") == []


def test_one_nir_searched_again_and_again_is_one_nir() -> None:
    h, who = Harness(), actor()  # a gateway looking up the patient of each message
    pid = uuid.uuid4()
    for n in range(30):
        h.feed(event(who, SEARCH, T0 + timedelta(minutes=n), role="service", by="nir", hits=1,
                     ids=(pid,), blk="ab12", nid="0f0f"))
    assert h.by_rule("enumeration") == [] and h.by_rule("misses") == []


def test_misses_padded_with_one_repeated_hit_are_still_misses() -> None:
    h, who = Harness(), actor()
    pid = uuid.uuid4()
    for n in range(12):
        h.feed(event(who, SEARCH, T0 + timedelta(minutes=2 * n), by="nir", hits=0,
                     blk=f"{n:04x}", nid=f"{n:04x}"))
        h.feed(event(who, SEARCH, T0 + timedelta(minutes=2 * n + 1), by="nir", hits=1,
                     ids=(pid,), blk="ffff", nid="ffff"))
    found = h.by_rule("misses")
    assert found and found[-1].evidence["searches"] == 13


def test_one_name_tried_with_many_birth_dates_is_enumeration() -> None:
    h, who = Harness(), actor()
    for n in range(5):
        h.feed(event(who, SEARCH, T0 + timedelta(seconds=n), by="name_birth", hits=0,
                     nt="0f0f", bt=f"{n:04x}"))
    found = h.by_rule("enumeration")
    assert found and found[0].evidence["pattern"] == "name"


# -- misses and probing ----------------------------------------------------------------------------
def test_searches_that_mostly_miss_are_reported() -> None:
    h, who = Harness(), actor()
    for n in range(12):
        hit = n in (3, 7)
        h.feed(event(who, SEARCH, T0 + timedelta(minutes=n), by="nir", hits=int(hit),
                     ids=(uuid.uuid4(),) if hit else ()))
    found = h.by_rule("misses")
    assert found and found[-1].severity is Severity.HIGH
    assert found[-1].evidence["misses"] == 10


def test_a_secretarys_new_patients_do_not_make_a_miss_ratio() -> None:
    h, who = Harness(), actor()
    for n in range(40):  # one search in five misses: a new patient, registered next
        miss = n % 5 == 0
        h.feed(event(who, SEARCH, workday(0, 8.0) + timedelta(minutes=10 * n), role="secretary",
                     by="nir", hits=0 if miss else 1, ids=() if miss else (uuid.uuid4(),)))
    assert h.by_rule("misses") == []


def test_reading_ids_that_do_not_exist_is_probing() -> None:
    h, who = Harness(), actor()
    for n in range(5):
        h.feed(event(who, "vault:patient:read", T0 + timedelta(seconds=n), outcome="not_found",
                     ids=(uuid.uuid4(),)))
    assert [f.severity for f in h.by_rule("id-probing")] == [Severity.HIGH]


# -- searches without use --------------------------------------------------------------------------
def test_patients_found_and_never_opened_are_reported() -> None:
    config = WatchConfig.from_mapping({"unused_searches": {"per_day": 5}})
    h, who = Harness(config), actor()
    at = workday(0, 9.0)
    for pid in ids(6):
        h.feed(event(who, SEARCH, at, role="secretary", by="nir", hits=1, ids=(pid,)))
        at += timedelta(minutes=2)
    h.feed(event(who, SEARCH, at + timedelta(minutes=40), role="secretary", by="nir", hits=0))
    found = h.by_rule("unused-searches")
    assert found and found[0].evidence["unused"] == 6


def test_patients_found_then_opened_are_not_reported() -> None:
    config = WatchConfig.from_mapping({"unused_searches": {"per_day": 5}})
    h, who = Harness(config), actor()
    at = workday(0, 9.0)
    for pid in ids(10):
        h.feed(event(who, SEARCH, at, role="secretary", by="nir", hits=1, ids=(pid,)))
        h.feed(event(who, "vault:patient:read", at + timedelta(minutes=1), role="secretary",
                     ids=(pid,)))
        at += timedelta(minutes=5)
    h.feed(event(who, SEARCH, at + timedelta(hours=1), role="secretary", by="nir", hits=0))
    assert h.by_rule("unused-searches") == []


# -- unexplained reads -----------------------------------------------------------------------------
def test_a_read_no_care_relationship_explains_goes_to_the_review_queue() -> None:
    who = actor()
    mine, neighbour, registered = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    facts = Facts(accounts={who: SITE_A},
                  sites={mine: frozenset({SITE_A}), neighbour: frozenset({SITE_B})})
    h = Harness(facts=facts)
    assert h.feed(event(who, "vault:patient:read", T0, role="secretary", ids=(mine,))) == []
    h.feed(event(who, "vault:patient:create", T0, role="secretary", ids=(registered,)))
    assert h.feed(event(who, "vault:patient:read", T0, role="secretary", ids=(registered,))) == []
    found = h.feed(event(who, "vault:patient:read", T0, role="secretary", ids=(neighbour,)))
    assert [(f.rule, f.severity, f.patient_ids) for f in found] == [
        ("unexplained", Severity.LOW, (neighbour,))]


def test_many_unexplained_reads_in_a_day_are_an_alert() -> None:
    who = actor()
    elsewhere = ids(11)
    h = Harness(facts=Facts(accounts={who: SITE_A},
                            sites={pid: frozenset({SITE_B}) for pid in elsewhere}))
    for n, pid in enumerate(elsewhere):
        h.feed(event(who, "vault:patient:read", T0 + timedelta(minutes=10 * n), role="technician",
                     ids=(pid,)))
    assert [f.severity for f in h.by_rule("unexplained-volume")] == [Severity.MEDIUM]


# -- context ---------------------------------------------------------------------------------------
def _usual_week(h: Harness, who: str, days: int = 6, source: str = "10.1.0.5") -> None:
    for day in range(days):
        for hour in (8.5, 10.0, 12.0, 14.0, 16.5):
            h.feed(event(who, READ, workday(day, hour), source=source, ids=(uuid.uuid4(),)))


def test_night_access_by_a_day_worker_is_reported_after_learning() -> None:
    h, who = Harness(), actor()
    h.feed(event(who, READ, workday(0, 3.0), ids=(uuid.uuid4(),)))
    assert h.by_rule("off-hours") == []  # nothing learned yet: no judgement
    h2, who2 = Harness(), actor()
    _usual_week(h2, who2)
    h2.feed(event(who2, READ, workday(7, 14.0), ids=(uuid.uuid4(),)))
    assert h2.by_rule("off-hours") == []
    h2.feed(event(who2, READ, workday(7, 2.5), ids=(uuid.uuid4(),)))
    assert [f.severity for f in h2.by_rule("off-hours")] == [Severity.MEDIUM]


def test_a_new_network_is_reported_and_a_new_workstation_of_the_site_is_not() -> None:
    h, who = Harness(), actor()
    _usual_week(h, who)
    h.feed(event(who, READ, workday(7, 9.0), source="10.1.0.77", ids=(uuid.uuid4(),)))
    assert h.by_rule("new-network") == []
    h.feed(event(who, READ, workday(7, 11.0), source="185.220.101.4", ids=(uuid.uuid4(),)))
    found = h.by_rule("new-network")
    assert found and found[0].evidence["network"] == "185.220.101.0/24"


def test_one_account_from_two_networks_at_once_is_a_shared_or_stolen_account() -> None:
    h, who = Harness(), actor()
    h.feed(event(who, READ, T0, source="10.1.0.5", ids=(uuid.uuid4(),)))
    h.feed(event(who, READ, T0 + timedelta(minutes=3), source="203.0.113.9", ids=(uuid.uuid4(),)))
    assert [f.severity for f in h.by_rule("concurrent-networks")] == [Severity.HIGH]
    h2, who2 = Harness(), actor()  # moving to the other site: an hour later, fine
    h2.feed(event(who2, READ, T0, source="10.1.0.5", ids=(uuid.uuid4(),)))
    h2.feed(event(who2, READ, T0 + timedelta(hours=1), source="10.2.0.5", ids=(uuid.uuid4(),)))
    assert h2.by_rule("concurrent-networks") == []


def test_a_token_used_from_a_new_address_is_high() -> None:
    h = Harness()
    token = f"{actor()}/token:{uuid.uuid4()}"
    for n in range(20):
        h.feed(event(token, "vault:result:write", T0 + timedelta(minutes=n), role="service",
                     source="10.9.0.2", ids=(uuid.uuid4(),)))
    assert h.all == []
    h.feed(event(token, "vault:result:write", T0 + timedelta(hours=1), role="service",
                 source="198.51.100.7", ids=(uuid.uuid4(),)))
    assert [(f.rule, f.severity) for f in h.all] == [("token-new-address", Severity.HIGH)]


# -- authentication --------------------------------------------------------------------------------
LOGIN_FAILURE = "access:login:failure"


def test_failed_login_bursts_on_one_account() -> None:
    h, who = Harness(), actor()
    for n in range(4):
        h.feed(event(who, LOGIN_FAILURE, T0 + timedelta(seconds=n), outcome="failed"))
    assert h.all == []
    h.feed(event(who, LOGIN_FAILURE, T0 + timedelta(seconds=5), outcome="failed"))
    assert [f.severity for f in h.by_rule("failed-logins")] == [Severity.MEDIUM]
    for n in range(5):
        h.feed(event(who, LOGIN_FAILURE, T0 + timedelta(seconds=10 + n), outcome="failed"))
    assert Severity.HIGH in {f.severity for f in h.by_rule("failed-logins")}


def test_password_spraying_then_a_hit_is_credential_stuffing() -> None:
    h = Harness()
    source = "192.0.2.66"
    for n in range(5):
        h.feed(event(actor(), LOGIN_FAILURE, T0 + timedelta(seconds=n), source=source,
                     outcome="failed"))
    spray = h.by_rule("password-spraying")
    assert spray and spray[0].actor == "source:192.0.2.0/24"
    victim = actor()
    h.feed(event(victim, "access:login:password", T0 + timedelta(seconds=9), source=source))
    hit = h.by_rule("credential-stuffing")
    assert [(f.actor, f.severity) for f in hit] == [(victim, Severity.HIGH)]


def test_made_up_emails_from_a_shared_address_cannot_lock_a_colleague() -> None:
    h = Harness()
    for n in range(8):  # someone behind the lab's NAT tries invented e-mails
        h.feed(event("unknown", LOGIN_FAILURE, T0 + timedelta(seconds=n), source="10.1.0.1",
                     outcome="failed"))
    assert h.by_rule("password-spraying")
    h.feed(event(actor(), "access:login:password", T0 + timedelta(seconds=20), source="10.1.0.1"))
    assert h.by_rule("credential-stuffing") == []


def test_spraying_from_one_ipv6_network_with_many_addresses() -> None:
    h = Harness()
    for n in range(10):
        h.feed(event(actor(), LOGIN_FAILURE, T0 + timedelta(seconds=n),
                     source=f"2001:db8:0:1::{n + 1:x}", outcome="failed"))
    assert [f.actor for f in h.by_rule("password-spraying")][:1] == ["source:2001:db8:0:1::/64"]


def test_ipv4_clients_of_a_dual_stack_listener_keep_their_networks() -> None:
    from labvault.watch.state import network_of

    assert network_of("::ffff:10.1.0.5") == "10.1.0.0/24"
    assert network_of("::ffff:10.2.0.5") != network_of("::ffff:10.1.0.5")


def test_ordinary_typos_are_not_spraying() -> None:
    h = Harness()
    for n in range(4):  # four people mistype at the same front desk during the morning
        h.feed(event(actor(), LOGIN_FAILURE, T0 + timedelta(minutes=20 * n), source="10.1.0.9",
                     outcome="failed"))
    assert h.all == []


def test_wrong_second_factor_codes_after_a_right_password() -> None:
    h, who = Harness(), actor()
    for n in range(3):
        h.feed(event(who, "access:mfa:failure", T0 + timedelta(seconds=n), outcome="failed"))
    assert [f.severity for f in h.by_rule("mfa-failures")] == [Severity.HIGH]


def test_a_login_right_after_a_reset_goes_to_the_review_queue() -> None:
    h, who = Harness(), actor()
    account_id = who.removeprefix("account:")
    h.feed(event("account:admin", "access:account:reset-mfa", T0, role="admin",
                 account_id=account_id))
    h.feed(event(who, "access:login:success", T0 + timedelta(minutes=12)))
    assert [(f.rule, f.severity) for f in h.all] == [("login-after-reset", Severity.LOW)]


def test_rules_skip_the_local_operator() -> None:
    h = Harness()
    for n, pid in enumerate(ids(300)):
        h.feed(event("local-operator:lab", READ, T0 + timedelta(milliseconds=n), ids=(pid,),
                     role="local_operator"))
    assert h.all == []


def test_windows_of_sources_long_gone_are_swept(vault) -> None:
    from labvault.watch import engine

    watcher = engine.Watcher(vault)
    for n in range(300):  # a spray from 300 addresses, one failure each
        watcher.observe(event(actor(), LOGIN_FAILURE, T0, source=f"192.0.2.{n % 250}.{n}",
                              outcome="failed"))
    auth = next(r for r in watcher._rules if r.name == "auth")
    assert len(auth._by_source) == 300
    watcher._prune(T0 + timedelta(hours=1))
    assert auth._by_source == {} and auth._failures == {}


def test_reading_on_to_twice_the_limit_is_a_new_alert() -> None:
    h, who = Harness(), actor()
    for n, pid in enumerate(ids(25)):
        h.feed(event(who, READ, T0 + timedelta(seconds=2 * n), ids=(pid,)))
    keys = {f.key.rsplit(":", 1)[1] for f in h.by_rule("volume") if f.evidence["window"] == "1m"}
    assert keys == {"x1", "x2"}


def test_every_window_is_checked_not_only_the_shortest() -> None:
    config = WatchConfig.from_mapping({"volume": {"limits": {"secretary": {
        "1m": 1000, "10m": 1000, "1h": 5, "1d": 8}}}})
    h, who = Harness(config), actor()
    for n, pid in enumerate(ids(9)):
        h.feed(event(who, READ, T0 + timedelta(minutes=n), role="secretary", ids=(pid,)))
    assert {f.evidence["window"] for f in h.by_rule("volume")} == {"1h", "1d"}


def test_results_written_for_many_patients_in_a_minute() -> None:
    h, who = Harness(), actor()
    for n, pid in enumerate(ids(16)):
        h.feed(event(who, "vault:result:write", T0 + timedelta(seconds=3 * n), role="technician",
                     ids=(pid,)))
    found = h.by_rule("write-volume")
    assert found and found[0].severity is Severity.CRITICAL and found[0].evidence["limit"] == 15


def test_patients_reading_their_results_at_night_are_not_off_hours() -> None:
    h, who = Harness(), actor()
    for day in range(7):
        h.feed(event(who, READ, workday(day, 12.0), role="patient", source=f"198.51.100.{day}",
                     ids=(uuid.uuid4(),)))
    h.feed(event(who, READ, workday(8, 23.5), role="patient", source="203.0.113.1",
                 ids=(uuid.uuid4(),)))
    assert h.all == []


def test_a_spray_paced_by_the_throttle_stays_in_view() -> None:
    h = Harness()
    for n in range(5):  # one try every 6 minutes: under any 10-minute window
        h.feed(event(actor(), LOGIN_FAILURE, T0 + timedelta(minutes=6 * n), source="192.0.2.9",
                     outcome="failed"))
    assert h.by_rule("password-spraying")


def test_a_patient_with_no_order_yet_is_not_unexplained() -> None:
    who = actor()
    h = Harness(facts=Facts(accounts={who: SITE_A}))
    assert h.feed(event(who, "vault:patient:read", T0, role="technician",
                        ids=(uuid.uuid4(),))) == []
