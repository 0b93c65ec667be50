"""Breach scope over a large audit log, and notices rendered per second.

A vault with P patients stored for real (sealed, with their findings) and an audit log of E
chained events (built with the log's own chain writer and inserted in bulk, as
bench/audit_verify.py does): staff reading one patient at a time from the lab's network, and a
thief with one stolen account reading A distinct patients' whole records from outside. Then
`vault.breach.scope` by the stolen account, checked against the ground truth (exactly the A
patients), timed in its two parts: reading the log, opening the findings.

Baselines in the same run: a bare SQL scan that only counts the same rows (the floor of any
scope over this log), and special categories by opening and classifying each exposed record
(what the findings avoid), on a sample, per patient.

Notices: article 34 messages rendered from their Jinja2 templates per second (e-mail and SMS
in turn, each with a fresh verification code; no I/O), against a baseline of `str.format` on a
text of the same length, in the same run.

    python bench/breach.py [--patients 100000] [--events 10000000] [--attacker 50000]
    python bench/breach.py --notices-only
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, set_chain_head
from labvault import Settings, Vault, local_operator
from labvault.access.principal import Principal, Role
from labvault.audit.chain import ChainWriter
from labvault.audit.rows import body_of, columns_of
from labvault.audit.sink import AuditEvent
from labvault.breach.classify import classify_record
from labvault.breach.scope import Selectors
from labvault.synthetic import SyntheticLab
from labvault.vault.audit import VERIFIER_FILE, read_verifier_key

FULL = ("identity", "administrative", "orders", "results", "comments", "attachments")
THIEF = f"account:{uuid.UUID(int=666)}"


def store_patients(vault: Vault, n: int) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    lab = SyntheticLab(seed=7, results_per_patient=3)
    op = local_operator("benchmark")
    t0 = time.perf_counter()
    batch = []
    for rec in lab.records(n):
        batch.append(rec)
        ids.append(rec.id)
        if len(batch) == 2000:
            vault.put_patients(op, batch)
            batch = []
    if batch:
        vault.put_patients(op, batch)
    print(f"  stored {n:,} patients in {time.perf_counter() - t0:.0f} s")
    return ids


def build_log(vault: Vault, data_dir: Path, ids: list[uuid.UUID], events: int,
              stolen: set[uuid.UUID]) -> None:
    chain = vault._audit.chain
    writer = ChainWriter(read_verifier_key(data_dir / VERIFIER_FILE), signer=chain._signer)
    # Continue the chain the vault started (the patients' creation events).
    head = chain.engine.raw_connection()
    cur = head.cursor()
    cur.execute("SELECT seq FROM audit_event WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")
    done = cur.fetchone()[0]
    head.close()
    start = vault._clock.now() + timedelta(minutes=1)  # after the records were stored
    rng = random.Random(11)
    thief_order = list(stolen)
    rng.shuffle(thief_order)
    thief_every = max(1, (events - done) // len(thief_order))
    conn = chain.engine.raw_connection()
    cur = conn.cursor()
    insert, index = chain._sql["insert"], chain._sql["index"]
    # Rebuild the writer's state up to the vault's own events: verify reads them back.
    cur.execute("SELECT " + ", ".join(columns_of(AuditEvent(
        start, "x", "x", "x", "x", "x", "x")).keys()) + " FROM audit_event ORDER BY seq")
    for row in cur.fetchall():
        writer.append(body_of(dict(zip(columns_of(AuditEvent(
            start, "x", "x", "x", "x", "x", "x")).keys(), row, strict=True))))
    t0 = time.perf_counter()
    taken = 0
    total = events - done
    for first in range(0, total, 50_000):
        rows, idx = [], []
        for i in range(first, min(total, first + 50_000)):
            at = start + timedelta(milliseconds=500 * i)
            if i % thief_every == 0 and taken < len(thief_order):
                pid, taken = thief_order[taken], taken + 1
                ev = AuditEvent(at, THIEF, "biologist", "203.0.113.66", "care",
                                "vault:result:read", "allowed", (pid,), {}, f"{i:032x}", FULL)
            else:
                pid = ids[rng.randrange(len(ids))]
                staff = rng.randrange(200)
                action, cats = (("vault:result:read", FULL) if staff % 3 else
                                ("vault:patient:read", ("identity", "administrative")))
                ev = AuditEvent(at, f"account:{uuid.UUID(int=staff + 1)}", "biologist",
                                f"10.1.{staff % 8}.{staff}", "care", action, "allowed", (pid,),
                                {}, f"{i:032x}", cats)
            values = columns_of(ev)
            chained, mark = writer.append(body_of(values))
            rows.append((*values.values(), chained.seq, chained.hash, chained.tag))
            idx.append((pid.hex, chained.seq))
            if mark is not None:
                chain._store_checkpoint(cur, mark, at)
        cur.executemany(insert, rows)
        cur.executemany(index, idx)
        conn.commit()
    set_chain_head(vault, writer, cur, start)
    conn.commit()
    conn.close()
    print(f"  wrote {total:,} events ({taken:,} by the thief) in "
          f"{time.perf_counter() - t0:.0f} s")


def bench_notices(n: int = 20_000) -> None:
    from labvault.breach.notice_text import measure_rendering

    measure_rendering(200)  # templates compiled, caches warm
    got = measure_rendering(n)
    text = "Madame, Monsieur, {lab} vous informe {what} le {day}. Code : {code}. " * 20
    t0 = time.perf_counter()
    for i in range(n):
        text.format(lab="Laboratoire", what="d'un incident", day="2 mars 2026", code=f"{i:010d}")
    base = time.perf_counter() - t0
    print(f"  notices rendered: {got['per_second']:,.0f}/s ({n:,} in {got['seconds']:.2f} s); "
          f"baseline str.format {n / base:,.0f}/s; ratio {n / base / got['per_second']:.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--attacker", type=int, default=50_000)
    ap.add_argument("--sample", type=int, default=2_000)
    ap.add_argument("--verify", action="store_true", help="verify the chain built (slow)")
    ap.add_argument("--notices-only", action="store_true")
    args = ap.parse_args()
    print(f"breach response — {machine()} (2 cores), SQLite")
    bench_notices()
    if args.notices_only:
        return
    with tempfile.TemporaryDirectory(prefix="labvault-bench-") as tmp:
        data_dir = Path(tmp) / "vault"
        vault = Vault.init(Settings.embedded(data_dir))
        try:
            ids = store_patients(vault, args.patients)
            stolen = set(random.Random(3).sample(ids, args.attacker))
            build_log(vault, data_dir, ids, args.events, stolen)
        finally:
            vault.close()
        vault = Vault.open(Settings.load(data_dir))
        try:
            if args.verify:  # the log built here is a real chain
                report = vault.audit_log.verify(
                    local_operator("benchmark"), read_verifier_key(data_dir / VERIFIER_FILE))
                print(f"  audit verify: {report!r}")
            measure(vault, stolen, args.sample)
        finally:
            vault.close()


def measure(vault: Vault, stolen: set[uuid.UUID], sample: int) -> None:
    dpo = Principal("account:dpo", Role.DPO, "10.1.0.2", "incident response")
    inc = vault.breach.open_incident(dpo, detected_at=vault._clock.now(),
                                     vector="stolen-credentials", description="benchmark")
    conn = vault._records.engine.raw_connection()
    t0 = time.perf_counter()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM audit_event WHERE actor = ? AND outcome = 'allowed'",
                (THIEF,))
    floor_n = cur.fetchone()[0]
    floor = time.perf_counter() - t0
    conn.close()
    t0 = time.perf_counter()
    scope = vault.breach.scope(dpo, inc.id, Selectors(actor=THIEF))
    took = time.perf_counter() - t0
    got = {uuid.UUID(p["id"]) for p in scope.document["patients"]}
    tp = len(got & stolen)
    print(f"  scope: {took:.1f} s for {len(got):,} patients over the log "
          f"(precision {tp / max(1, len(got)):.2%}, recall {tp / len(stolen):.2%}); "
          f"by special category: {scope.document['totals']['by_special']}")
    print(f"  baseline, bare SQL count of the thief's events ({floor_n:,}): {floor:.1f} s; "
          f"scope / baseline {took / floor:.1f}x")
    # Special categories by opening and classifying each record, on a sample (per patient).
    picked = sorted(stolen)[:sample]
    t0 = time.perf_counter()
    for pid in picked:
        classify_record(vault._load(pid, with_results=True))
    per_open = (time.perf_counter() - t0) / len(picked)
    from labvault.breach.special import add_special
    doc = {"patients": [{"id": str(p), "categories": ["results", "comments"], "special": [],
                         "exposure": "decrypted", "last": None} for p in picked]}
    t0 = time.perf_counter()
    add_special(vault, vault.breach._store, doc)
    per_finding = (time.perf_counter() - t0) / len(picked)
    print(f"  special categories per patient: sealed findings {per_finding * 1e3:.2f} ms, "
          f"baseline open + classify the record {per_open * 1e3:.2f} ms "
          f"({per_open / per_finding:.1f}x); {len(stolen):,} patients by the baseline would "
          f"take {per_open * len(stolen):.0f} s")


if __name__ == "__main__":
    main()
