"""Am I affected? The public check answers everybody the same, in the same time, and answers
the person out of band; the patient's own space lists their incidents, and nobody else's."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import random
import statistics
import uuid
from datetime import date, timedelta
from time import perf_counter_ns

import pytest
from exposure_support import (
    all_audit_text,
    answers,
    audit_rows,
    body,
    config,
    count_work,
    half_spread,
    median_se,
    member,
    other_date,
    sign_z,
    spellings,
    stable_headers,
    stranger_nir,
)
from fastapi.testclient import TestClient
from sms_gateway import rewrite_scope
from sqlalchemy import delete, insert, select, update
from stdnum.fr import nir as stdnum_nir

from labvault.access.principal import Principal, Role
from labvault.breach.exposure import (
    REFUSED_PER_HOUR,
    ScopeUnverified,
    advice,
    entry_of,
    exposure_desk,
)
from labvault.breach.exposure_worker import parse_details, source_network
from labvault.breach.scope import Selectors
from labvault.ingest.base import Parsed, Position
from labvault.store.tables import incident_scope
from labvault.synthetic import SyntheticLab

URL = "/exposure-check"
CHECK = "breach:exposure:check"
ROUNDS = 150


@pytest.fixture
def make_desk(vault):
    def make(per_source: int = 5, per_identity: int = 3):
        return exposure_desk(vault, config(per_source, per_identity))

    return make


@pytest.fixture
def kinds(records) -> dict[str, dict[str, str]]:
    p = member(records)
    return {"member": body(p.nir, p.birth_date),
            "stranger": body(stranger_nir(records), p.birth_date),
            "wrong date": body(p.nir, other_date(p.birth_date))}


def assert_same(responses, status: int) -> None:
    first = responses[0]
    for r in responses:
        assert r.status_code == status
        assert r.content == first.content
        assert stable_headers(r) == stable_headers(first)


# -- (a), (c): the same answer; the lookup happens later, and answers only the person -----------
def test_members_and_strangers_get_the_same_answer(client, records, kinds, make_desk, vault):
    desk = make_desk(per_source=20)
    by_json = [client.post(URL, json=b) for b in kinds.values()]
    by_form = [client.post(URL, data=b) for b in kinds.values()]
    assert_same(by_json, 202)
    assert_same(by_form, 200)
    assert len({r.headers["x-request-id"] for r in by_json + by_form}) == 6
    assert by_json[0].json()["message"].startswith("Si vous êtes patient du laboratoire, la "
                                                   "réponse a été envoyée au contact")
    assert by_form[0].headers["content-type"] == "text/html; charset=utf-8"
    assert "Si vous êtes patient du laboratoire" in by_form[0].text
    for r in by_json + by_form:
        assert not [v for v in spellings(member(records)) if v in r.text]

    assert desk.pending == 6 and answers(vault) == []  # nothing was looked up yet
    assert desk.drain() == ["match", "miss", "mismatch"] * 2
    sent = answers(vault)
    assert sent and {r.patient_id for r in sent} == {member(records).id}
    assert {r.kind for r in sent} == {"exposure-answer"}


# -- (b): the same time ---------------------------------------------------------------------------
def test_the_answer_takes_the_same_time_whoever_is_named(client, kinds, make_desk, backend):
    desk = make_desk(per_source=100_000, per_identity=3)
    payloads = {k: json.dumps(b).encode() for k, b in kinds.items()}
    assert len({len(p) for p in payloads.values()}) == 1
    headers = {"content-type": "application/json"}
    names = list(kinds)
    for i in range(15):  # warm-up: connections, caches, the first epoch key
        client.post(URL, content=payloads[names[i % 3]], headers=headers)
    rng = random.Random(7)
    times: dict[str, list[float]] = {k: [] for k in names}
    rounds: list[dict[str, float]] = []
    gc.collect()
    for _ in range(ROUNDS):  # each round sends every kind once, in a random order
        order = names[:]
        rng.shuffle(order)
        this = {}
        for k in order:
            start = perf_counter_ns()
            r = client.post(URL, content=payloads[k], headers=headers)
            this[k] = (perf_counter_ns() - start) / 1000  # µs
            assert r.status_code == 202
        rounds.append(this)
        for k in names:
            times[k].append(this[k])

    # What an oracle would show: the lookup itself, member (found, birth date opened, counted)
    # against stranger (an index miss), timed one check at a time off the request path.
    lookups: dict[str, list[float]] = {}
    for _ in range(45):
        start = perf_counter_ns()
        [outcome] = desk.drain(1)
        lookups.setdefault(outcome, []).append((perf_counter_ns() - start) / 1000)

    medians = {k: statistics.median(v) for k, v in times.items()}
    report = [f"[{backend}] request medians (µs): " + ", ".join(f"{k} {v:.0f}"
                                                              for k, v in medians.items())]
    for a, b in (("member", "stranger"), ("member", "wrong date"), ("stranger", "wrong date")):
        diff = medians[a] - medians[b]
        se = median_se(times[a], times[b])
        z = sign_z([(r[a], r[b]) for r in rounds])
        spread = max(half_spread(times[a]), half_spread(times[b]))
        report.append(f"  {a} - {b}: {diff:+.1f} µs, bootstrap SE {se:.1f}, halves' spread "
                      f"{spread:.1f}, sign z {z:+.2f}")
        # Under "no difference" a pair is equally likely either way: |z| > 4.5 happens by
        # chance about once in 150,000 runs; load bursts hit both sides of each pair alike.
        assert abs(z) < 4.5, report
        # The medians differ by less than 5 standard errors of their own difference.
        assert abs(diff) < 5 * se, report
    effect = statistics.median(lookups["limited"]) - statistics.median(lookups["miss"])
    report.append(f"  lookup off the path: limited {statistics.median(lookups['limited']):.0f}"
                  f" µs, miss {statistics.median(lookups['miss']):.0f} µs: an oracle would "
                  f"differ by about {effect:.0f} µs")
    print("\n".join(report))


# -- (d): limits ------------------------------------------------------------------------------------
def test_a_source_is_limited_per_hour_and_the_limit_says_nothing_more(client, kinds, make_desk,
                                                                      clock, vault):
    desk = make_desk(per_source=5)
    member_b, stranger_b = kinds["member"], kinds["stranger"]
    for i in range(5):
        assert client.post(URL, json=(member_b, stranger_b)[i % 2]).status_code == 202
    over = [client.post(URL, json=b) for b in (member_b, stranger_b, kinds["wrong date"])]
    assert_same(over, 429)
    assert over[0].json() == {"error": "rate_limited"}
    to_the_hour = 3600 - (clock.now().minute * 60 + clock.now().second)
    assert over[0].headers["retry-after"] == str(to_the_hour)
    assert_same([client.post(URL, data=b) for b in (member_b, stranger_b)], 429)
    assert desk.pending == 5
    # The block is audited once, when it starts: a flood past the limit writes no more.
    assert [r.outcome for r in audit_rows(vault, CHECK)] == ["queued"] * 5 + ["limited"]
    clock.advance(timedelta(seconds=to_the_hour))
    assert client.post(URL, json=member_b).status_code == 202

    def source(address: str) -> TestClient:
        return TestClient(client.app, base_url="http://127.0.0.1", client=(address, 40000))

    # IPv6: one /64 is one source (a subscriber gets a whole /64, often more).
    with source("2001:db8:1:2::1") as a, source("2001:db8:1:2:ffff::9") as b, \
            source("2001:db8:1:3::1") as c:
        for _ in range(5):
            assert a.post(URL, json=member_b).status_code == 202
        assert b.post(URL, json=stranger_b).status_code == 429
        assert c.post(URL, json=member_b).status_code == 202
    assert source_network("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_network("::ffff:192.0.2.7") == source_network("192.0.2.7") == "192.0.2.7/32"
    assert source_network("testclient") == "testclient"


def test_the_daily_limit_per_person_never_shows_on_the_request_path(client, records, kinds,
                                                                    make_desk, vault, clock):
    desk = make_desk(per_source=100, per_identity=2)
    first = client.post(URL, json=kinds["member"])
    assert desk.drain() == ["match"]
    per_answer = len(answers(vault))  # one notice per channel the contact on file allows
    later = [client.post(URL, json=kinds["member"]) for _ in range(3)]
    later.append(client.post(URL, json=kinds["stranger"]))
    assert_same([first, *later], 202)
    drained = desk.drain()  # in the order queued; which of the three is answered is random
    assert sorted(drained[:3]) == ["limited", "limited", "match"] and drained[3] == "miss"
    assert len(answers(vault)) == 2 * per_answer
    clock.advance(timedelta(days=1))
    assert client.post(URL, json=kinds["member"]).content == first.content
    assert desk.drain() == ["match"]
    assert len(answers(vault)) == 3 * per_answer

    # In `labvault serve` a thread drains the queue; stopping it drains what is left. It does
    # not run on a fixed beat: each wait is drawn anew within half a tick either way.
    worker = desk.start(every=3600)  # no tick comes during the test
    waits = [worker.delay() for _ in range(50)]
    assert all(1800 <= w <= 5400 for w in waits) and len(set(waits)) > 40
    client.post(URL, json=kinds["stranger"])
    client.post(URL, json=kinds["member"])
    worker.stop()
    assert desk.pending == 0 and len(answers(vault)) == 4 * per_answer
    assert {r.patient_id for r in answers(vault)} == {member(records).id}


def test_the_worker_looks_checks_up_in_a_random_order(kinds, make_desk, monkeypatch):
    desk = make_desk(per_source=100)
    details, _ = desk.parse(kinds["member"]["nir"], kinds["member"]["birth_date"])
    queued = [f"r{i:02d}" for i in range(30)]
    for request_id in queued:
        desk.submit(details, source="192.0.2.1", request_id=request_id)
    seen: list[str] = []
    monkeypatch.setattr(desk._lookup, "run",
                        lambda check: seen.append(check.request_id) or check.request_id)
    assert desk.drain() == queued  # the outcomes, in the order the checks were queued
    assert sorted(seen) == queued and seen != queued  # 1 chance in 30! of the same order


def test_a_lookup_does_the_same_work_whoever_it_finds(client, kinds, make_desk, vault,
                                                      monkeypatch):
    """A stranger's check opens, counts and writes as a member's does (the decoy's): the
    worker's time, seen through contention on the databases, does not tell them apart."""
    desk = make_desk(per_source=100, per_identity=1)
    work = count_work(vault, monkeypatch)
    done: dict[str, dict[str, int]] = {}
    for kind in ("member", "member", "stranger", "wrong date"):
        assert client.post(URL, json=kinds[kind]).status_code == 202
        work.clear()
        [outcome] = desk.drain()
        done[outcome] = dict(work)
    assert list(done) == ["match", "limited", "miss", "mismatch"]
    # Two keys unwrapped (birth date, contact), two key reads, four writes: the counter, the
    # lookup's event, then the answer's event and notices (or the decoy's two writes).
    assert done["match"] == {"unwraps": 2, "key reads": 2, "writes": 4}, done
    assert all(w == done["match"] for w in done.values()), done
    assert [r.outcome for r in audit_rows(vault, "breach:exposure:lookup")] == list(done)

    # The decoy's key was wrapped under the master key version then active; retired, it is
    # wrapped anew (once), and a check that finds nobody still does the same work.
    old = vault._keys.active_version()
    vault._keys.add_version()
    vault._keys.retire(old)
    client.post(URL, json=kinds["stranger"])
    assert desk.drain() == ["miss"]
    client.post(URL, json=kinds["stranger"])
    work.clear()
    assert desk.drain() == ["miss"] and dict(work) == done["match"]


# -- (e): the audit -------------------------------------------------------------------------------------
def test_the_audit_names_the_source_and_the_match_never_a_value(client, records, kinds,
                                                                make_desk, vault, caplog):
    caplog.set_level(logging.DEBUG)
    desk = make_desk(per_source=20)
    p = member(records)
    sent = [client.post(URL, json=kinds[k]) for k in ("member", "stranger", "wrong date")]
    sent.append(client.post(URL, json={"nir": p.nir[:-1], "birth_date": "1980-01-01"}))
    desk.drain()
    rows = audit_rows(vault)
    checks = [r for r in rows if r.action == "breach:exposure:check"]
    assert [r.outcome for r in checks] == ["queued", "queued", "queued", "invalid"]
    assert [r.request_id for r in checks] == [r.headers["x-request-id"] for r in sent]
    for r in checks:
        assert (r.actor, r.source, r.purpose, json.loads(r.patient_ids)) == (
            "public", "testclient", "exposure check", [])
    assert json.loads(checks[-1].detail)["fields"] == ["nir"]
    lookups = {r.request_id: r for r in rows if r.action == "breach:exposure:lookup"}
    expected = {0: ("match", [p.id]), 1: ("miss", []), 2: ("mismatch", [p.id])}
    for i, (outcome, ids) in expected.items():
        row = lookups[sent[i].headers["x-request-id"]]
        assert (row.outcome, [uuid.UUID(x) for x in json.loads(row.patient_ids)]) == (outcome, ids)
        assert (row.actor, row.source, row.purpose) == ("labvault:exposure-check", "testclient",
                                                        "exposure check")
    assert len(lookups) == 3
    values = [v for v in [*spellings(p), kinds["stranger"]["nir"]] if len(v) >= 4]
    text = all_audit_text(vault) + caplog.text + json.dumps(
        [[str(v) for v in r] for r in answers(vault)])
    assert [v for v in values if v in text] == []


# -- the shape of a request, and where it comes from ------------------------------------------------
def test_a_malformed_or_cross_site_request_is_refused_for_that_alone(client, records, make_desk,
                                                                     clock):
    desk = make_desk(per_source=5)
    p = member(records)
    wrong_key = p.nir[:13] + ("01" if p.nir[13:] != "01" else "02")
    r = client.post(URL, json={"nir": wrong_key, "birth_date": "31/02/1980"})
    assert r.status_code == 422
    assert r.json() == {"error": "invalid", "fields": [
        {"field": "nir", "reason": "check key does not match"},
        {"field": "birth_date", "reason": "not a date: year-month-day or day/month/year"}]}
    future = (clock.now().date() + timedelta(days=1)).isoformat()
    assert client.post(URL, json={"nir": p.nir, "birth_date": future}).json()["fields"] == [
        {"field": "birth_date", "reason": "out of range"}]
    assert client.post(URL, json=["x"]).json()["fields"][0]["field"] == "body"
    assert client.post(URL, content=b"nir=1", headers={"content-type": "text/plain"}
                       ).status_code == 415
    r = client.post(URL, data={"nir": wrong_key, "birth_date": ""})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "clé comprise" in r.text and 'aria-invalid="true"' in r.text
    assert wrong_key not in r.text  # the form is not filled back in
    assert desk.pending == 0

    # A form posted from another site: refused, so that a page elsewhere cannot make its
    # visitors' browsers send checks (and patients answers).
    good = body(p.nir, p.birth_date)
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"},
                    {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):
        r = client.post(URL, data=good, headers=headers)
        assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
        r = client.post(URL, json=good, headers=headers)
        assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    assert desk.pending == 0
    for same_site in ({"origin": "http://127.0.0.1"}, {"sec-fetch-site": "same-origin"},
                      {"sec-fetch-site": "same-origin", "origin": "https://lab.example"}):
        assert client.post(URL, data=good, headers=same_site).status_code == 200
    for _ in range(2):  # malformed and cross-site requests were not counted against the source
        assert client.post(URL, json=good).status_code == 202
    assert client.post(URL, json=good).status_code == 429

    r = client.get(URL)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for part in ('lang="fr"', 'method="post"', 'name="nir"', 'name="birth_date"',
                 "Laboratoire d&#39;essai", "dpo@lab.example", "ne dit jamais qui est concerné"):
        assert part in r.text


def test_refused_requests_are_counted_per_source_and_a_flood_is_audited_once(
        client, records, make_desk, vault, clock):
    make_desk(per_source=5)
    good = body(member(records).nir, member(records).birth_date)
    malformed = {"nir": "x", "birth_date": "y"}
    senders = [lambda: client.post(URL, json=malformed),
               lambda: client.post(URL, data=malformed),
               lambda: client.post(URL, content=b"a", headers={"content-type": "text/plain"}),
               lambda: client.post(URL, json=good, headers={"sec-fetch-site": "cross-site"})]
    sent = [senders[i % 4]() for i in range(REFUSED_PER_HOUR + 40)]
    statuses = [r.status_code for r in sent]
    assert statuses[:REFUSED_PER_HOUR] == [422, 422, 415, 403] * (REFUSED_PER_HOUR // 4)
    assert set(statuses[REFUSED_PER_HOUR:]) == {429}
    # Past the limit, the same answer whatever was sent: the form's page, or the JSON.
    over = list(enumerate(sent))[REFUSED_PER_HOUR:]
    assert_same([r for i, r in over if i % 4 != 1], 429)
    assert_same([r for i, r in over if i % 4 == 1], 429)
    assert sent[-1].json() == {"error": "rate_limited"}
    to_the_hour = 3600 - (clock.now().minute * 60 + clock.now().second)
    assert sent[-1].headers["retry-after"] == str(to_the_hour)

    events = audit_rows(vault, CHECK)
    assert len(events) == REFUSED_PER_HOUR + 1  # one per refusal, then one for the block
    assert [r.outcome for r in events[:4]] == ["invalid", "invalid", "unsupported", "cross_site"]
    block = events[-1]
    assert (block.outcome, json.loads(block.detail), block.request_id) == (
        "limited", {"counter": "refused"}, sent[REFUSED_PER_HOUR].headers["x-request-id"])

    # Checks are counted apart: the source's well-formed checks still go through, and another
    # source is refused for what it sends, not limited.
    assert client.post(URL, json=good).status_code == 202
    with TestClient(client.app, base_url="http://127.0.0.1", client=("192.0.2.9", 40000)) as other:
        assert other.post(URL, json=good).status_code == 202
        assert other.post(URL, json=malformed).status_code == 422
    assert len(audit_rows(vault, CHECK)) == REFUSED_PER_HOUR + 4
    clock.advance(timedelta(seconds=to_the_hour))  # a new hour: refused for what it sends again
    assert client.post(URL, json=malformed).status_code == 422


# -- (f): the patient's own space ---------------------------------------------------------------------
PLAN = json.dumps({"labvault_plan": 1, "created_at": "2026-03-02T08:30:00+00:00", "created_by": "t",
                   "sources": [{"index": 0, "name": "x.hl7", "format": "hl7v2", "size": 0,
                                "sha256": "", "units": 0}]}).encode()


def _stage(vault, operator, clock):
    """One patient imported through a staging area (a migration)."""
    mid = uuid.uuid4()
    vault.imports.begin(operator, mid, PLAN, clock.now() + timedelta(days=30))
    [staged] = SyntheticLab(seed=42, results_per_patient=1).records(1)
    vault.imports.import_units(operator, mid, 0, [Parsed(
        1, Position("x.hl7", 1), staged, hashlib.sha256(staged.id.bytes).digest(),
        source_patient_id="S1")])
    return mid, staged.patient


def test_a_patient_sees_the_incidents_that_concern_them_and_nobody_else(
        client, records, make_desk, vault, operator, login, clock):
    desk = make_desk()
    a, b, c = (r.patient for r in records[:3])
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "203.0.113.5", "care")
    dpo = Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")
    vault.get_record(thief, a.id)
    clock.advance(timedelta(minutes=1))
    b_read_at = clock.now()
    vault.get_patient(thief, b.id)
    stolen = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="stolen-credentials",
                                        description="x")
    vault.breach.scope(dpo, stolen.id, Selectors(actor=thief.actor_id))
    mid, s = _stage(vault, operator, clock)
    leak = vault.breach.open_incident(dpo, detected_at=clock.now(), vector="exposed-staging",
                                      description="x")
    vault.breach.scope(dpo, leak.id, Selectors(staging=str(mid)))

    sessions: dict[uuid.UUID, dict[str, str]] = {}

    def mine(patient) -> list[dict]:
        if patient.id not in sessions:
            sessions[patient.id] = login(Role.PATIENT, patient.id).headers
        r = client.get("/me/exposures", headers=sessions[patient.id])
        assert r.status_code == 200
        assert not [v for v in (patient.last_name, patient.first_names, patient.nir)
                    if v and v in r.text]
        return r.json()["exposures"]

    [seen] = mine(a)
    assert seen["incident_id"] == str(stolen.id) and seen["exposure"] == "decrypted"
    assert {"identity", "results", "nir"} <= set(seen["categories"])
    assert seen["detected_at"] == stolen.detected_at.isoformat()
    assert [x["code"] for x in seen["advice"]] == ["phishing", "health-insurance", "health-data",
                                                   "contact"]
    assert "dpo@lab.example" in seen["advice"][-1]["text"]
    [seen_b] = mine(b)
    assert "results" not in seen_b["categories"]
    assert "health-data" not in [x["code"] for x in seen_b["advice"]]
    assert mine(c) == []
    [seen_s] = mine(s)
    assert (seen_s["incident_id"], seen_s["exposure"]) == (str(leak.id), "sealed")
    assert [x["code"] for x in seen_s["advice"]] == ["sealed", "contact"]

    read = [r for r in audit_rows(vault) if r.action == "breach:exposure:read"]
    assert [(r.outcome, json.loads(r.patient_ids)) for r in read] == [
        ("allowed", [p.id.hex]) for p in (a, b, c, s)]
    before = len(audit_rows(vault))
    assert [e.incident_id for e in desk.exposures_of(a.id)] == [stolen.id]  # plain: no event
    assert len(audit_rows(vault)) == before

    # The latest scope is the one that counts: recomputed from b's read on, a is not in it.
    vault.breach.scope(dpo, stolen.id, Selectors(actor=thief.actor_id, since=b_read_at))
    assert mine(a) == [] and len(mine(b)) == 1

    assert client.get("/me/exposures").status_code == 401
    for role in (Role.ADMIN, Role.DPO):
        r = client.get("/me/exposures", headers=login(role).headers)
        assert r.status_code == 403 and r.json() == {"error": "forbidden"}
    assert [r.outcome for r in audit_rows(vault, "breach:exposure:read")][-2:] == ["denied"] * 2

    # A scope altered in the database is not read.
    vault.breach.scope(dpo, leak.id, Selectors(staging=str(mid)))
    with vault._records.engine.connect() as conn:
        latest = conn.execute(incident_scope.select().order_by(incident_scope.c.id.desc())).first()
    rewrite_scope(vault, latest.id, lambda text: text.replace('"sealed"', '"decrypted"'))
    r = client.get("/me/exposures", headers=sessions[s.id])
    assert r.status_code == 400 and r.json() == {"error": "refused"}


def test_a_scope_is_read_only_for_the_incident_it_was_signed_for(client, records, make_desk,
                                                                 vault, login, clock):
    desk = make_desk()
    a = records[0].patient
    thief = Principal(f"account:{uuid.uuid4()}", Role.BIOLOGIST, "203.0.113.5", "care")
    dpo = Principal(f"account:{uuid.uuid4()}", Role.DPO, "10.1.0.2", "incident response")
    vault.get_record(thief, a.id)
    first, second = (vault.breach.open_incident(dpo, detected_at=clock.now(), description="x",
                                                vector="stolen-credentials") for _ in range(2))
    vault.breach.scope(dpo, first.id, Selectors(actor=thief.actor_id))
    assert [e.incident_id for e in desk.exposures_of(a.id)] == [first.id]
    headers = login(Role.PATIENT, a.id).headers

    # The first incident's scope copied to the second: its signature checks, its incident not.
    s = incident_scope.c
    with vault._records.engine.begin() as conn:
        row = conn.execute(select(incident_scope).where(s.incident_id == first.id)).one()
        copy = {k: v for k, v in row._mapping.items() if k != "id"} | {"incident_id": second.id}
        copied = conn.execute(insert(incident_scope).values(copy)).inserted_primary_key[0]
    with pytest.raises(ScopeUnverified, match="does not check"):
        desk.exposures_of(a.id)
    r = client.get("/me/exposures", headers=headers)
    assert r.status_code == 400 and r.json() == {"error": "refused"}

    # A stored digest that is not the document's.
    with vault._records.engine.begin() as conn:
        conn.execute(delete(incident_scope).where(s.id == copied))
    latest = vault.breach.scope(dpo, first.id, Selectors(actor=thief.actor_id))
    with vault._records.engine.begin() as conn:
        conn.execute(update(incident_scope).where(s.id == latest.id).values(
            digest=hashlib.sha256(b"another document").digest()))
    with pytest.raises(ScopeUnverified, match="does not check"):
        desk.exposures_of(a.id)


# -- pure parts --------------------------------------------------------------------------------------
def test_details_are_checked_for_shape_only():
    today = date(2026, 3, 2)
    good = "1840578006084" + stdnum_nir.calc_check_digits("1840578006084")
    spaced = f"{good[0]} {good[1:3]} {good[3:5]} {good[5:7]} {good[7:10]} {good[10:13]} {good[13:]}"
    details, errors = parse_details(spaced, "14/05/1984", today)
    assert errors == [] and details is not None
    assert details.nir.reveal() == good and details.birth_date.reveal() == date(1984, 5, 14)
    assert good not in repr(details) and "1984" not in repr(details)
    corsica = "284052A056123" + stdnum_nir.calc_check_digits("284052A056123")
    assert parse_details(corsica.lower(), "1984-05-14", today)[1] == []
    assert parse_details(None, 19840514, today)[1] == [
        ("nir", "missing"), ("birth_date", "not a date: year-month-day or day/month/year")]
    assert parse_details(["x"], "1889-12-31", today)[1] == [
        ("nir", "not a string"), ("birth_date", "out of range")]
    assert parse_details(good, "2021-W01-1", today)[1][0][0] == "birth_date"
    assert parse_details(good + "0" * 60, "1984-05-14", today)[1] == [("nir", "input too long")]


def test_advice_follows_what_was_exposed_and_entries_are_found_by_bisection():
    assert [a.code for a in advice("sealed", ["results"], ["hiv"])] == ["sealed", "contact"]
    assert [a.code for a in advice("decrypted", ["membership"], [])] == ["membership", "contact"]
    assert [a.code for a in advice("decrypted", ["identity"], ["hiv"])] == [
        "phishing", "health-data", "contact"]
    ids = sorted(str(uuid.uuid4()) for _ in range(50))
    entries = [{"id": i} for i in ids]
    assert entry_of(ids, entries, uuid.UUID(ids[17])) == {"id": ids[17]}
    assert entry_of(ids, entries, uuid.uuid4()) is None


def test_without_the_settings_an_answer_needs_the_check_is_closed_to_everyone(
        client, kinds, vault):
    desk = exposure_desk(vault)  # no breach.toml: no lab name, no page address, no DPO
    assert desk.config.missing_for_notices()
    answers = [client.post(URL, json=kinds[k]) for k in kinds]
    assert_same(answers, 503)
    assert answers[0].json() == {"error": "not_configured"} and desk.pending == 0
