"""Audit chain: append rate and `verify` time over N events (default 1,000,000), in one run,
with a baseline of plain SHA-256 over the same bodies; then the same through the database
(SQLite): the append rate of `ChainedAuditLog` (one transaction per event) against a plain
insert of the same row without the chain, and `audit verify` of N events stored in a vault and
read back from it, in a fresh process (its peak RSS is the verification's).

    python bench/audit_verify.py [--events 1000000] [--appends 20000] [--skip-memory]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, set_chain_head
from labvault import Settings, Vault, local_operator
from labvault.audit.chain import ChainedEvent, ChainWriter, Checkpoint, verify
from labvault.audit.log import FIELDS, body_of, columns_of
from labvault.audit.sink import AuditEvent
from labvault.crypto.keys import LocalKeyFile
from labvault.crypto.signing import Signer
from labvault.secret import Secret
from labvault.vault.audit import VERIFIER_FILE, read_verifier_key


def _event(i: int, start: datetime) -> AuditEvent:
    return AuditEvent(start + timedelta(milliseconds=i), f"biologist:{i % 50}", "biologist",
                      f"10.0.{i % 8}.{i % 250}", "result review", "vault:result:read",
                      "allowed", (uuid.UUID(int=i + 1),), {"by": "id"}, f"{i:032x}",
                      ("orders", "results"))


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the
    parent that started it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_append(appends: int) -> None:
    """One transaction per event: the chain against a plain insert of the same row."""
    with tempfile.TemporaryDirectory(prefix="labvault-bench-") as tmp:
        vault = Vault.init(Settings.embedded(Path(tmp) / "vault"))
        try:
            chain = vault._audit.chain
            start = datetime(2026, 11, 23, 10, tzinfo=UTC)
            events = [_event(i, start) for i in range(appends)]
            conn = chain.engine.raw_connection()
            cur = conn.cursor()
            # The same table, indexes and patient index, without position, hash or tag.
            sql = (f"INSERT INTO audit_event ({', '.join(FIELDS)}) "
                   f"VALUES ({', '.join('?' * len(FIELDS))})")
            best_plain = best_chain = float("inf")
            for _ in range(2):  # alternating rounds, best of each
                t = time.perf_counter()
                for n, ev in enumerate(events):
                    values = columns_of(ev)
                    cur.execute(sql, tuple(values.values()))
                    cur.executemany("INSERT INTO audit_event_patient (patient_id, seq) "
                                    "VALUES (?, ?)", [(p.hex, -n - 1) for p in ev.patient_ids])
                    conn.commit()
                best_plain = min(best_plain, time.perf_counter() - t)
                cur.execute("DELETE FROM audit_event WHERE seq IS NULL")
                cur.execute("DELETE FROM audit_event_patient WHERE seq < 0")
                conn.commit()
                t = time.perf_counter()
                for ev in events:
                    chain.append(ev)
                best_chain = min(best_chain, time.perf_counter() - t)
            conn.close()
        finally:
            vault.close()
    print(f"SQLite, one transaction per event, {appends:,} events, best of 2 (2 cores):")
    print(f"  plain insert (baseline):    {appends / best_plain:,.0f} events/s "
          f"({best_plain / appends * 1e6:.0f} µs/event)")
    print(f"  ChainedAuditLog.append:     {appends / best_chain:,.0f} events/s "
          f"({best_chain / appends * 1e6:.0f} µs/event), {best_chain / best_plain:.2f}x the "
          "baseline")


def build_stored_log(data_dir: Path, events: int) -> None:
    """A vault whose audit table holds `events` chained events (rows precomputed, inserted
    in bulk, head and checkpoints set as the log would have)."""
    vault = Vault.init(Settings.embedded(data_dir))
    try:
        chain = vault._audit.chain
        k0 = read_verifier_key(data_dir / VERIFIER_FILE)
        writer = ChainWriter(k0, signer=chain._signer)
        start = datetime(2026, 11, 23, 10, tzinfo=UTC)
        conn = chain.engine.raw_connection()
        cur = conn.cursor()
        insert = chain._sql["insert"]
        for first in range(0, events, 50_000):
            rows, index = [], []
            for i in range(first, min(events, first + 50_000)):
                ev = _event(i, start)
                values = columns_of(ev)
                chained, mark = writer.append(body_of(values))
                rows.append((*values.values(), chained.seq, chained.hash, chained.tag))
                index.append((ev.patient_ids[0].hex, chained.seq))
                if mark is not None:
                    chain._store_checkpoint(cur, mark, start)
            cur.executemany(insert, rows)
            cur.executemany(chain._sql["index"], index)
            conn.commit()
        set_chain_head(vault, writer, cur, start)
        conn.commit()
        conn.close()
    finally:
        vault.close()


def verify_stored(data_dir: Path) -> None:
    """`audit verify` with k0 and the stored checkpoints, from the database (fresh process)."""
    vault = Vault.open(Settings.load(data_dir))
    try:
        k0 = read_verifier_key(data_dir / VERIFIER_FILE)
        t = time.perf_counter()
        report = vault.audit_log.verify(local_operator("benchmark"), k0)
        took = time.perf_counter() - t
    finally:
        vault.close()
    print(f"  audit verify {report.checked:,} stored events (tags, {report.checkpoints} signed "
          f"checkpoints, read back from SQLite): {took:.2f} s ({report.checked / took:,.0f} "
          f"events/s), peak RSS {_peak_mib():.0f} MiB (2 cores)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=20_000)
    ap.add_argument("--skip-memory", action="store_true", help="only the database figures")
    ap.add_argument("--verify-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.verify_dir:
        verify_stored(args.verify_dir)
        return
    print(f"machine: {machine()} (2 cores: single-process figures)")
    if not args.skip_memory:
        in_memory(args)
    bench_append(args.appends)
    with tempfile.TemporaryDirectory(prefix="labvault-bench-") as tmp:
        data_dir = Path(tmp) / "vault"
        t = time.perf_counter()
        build_stored_log(data_dir, args.events)
        size = (data_dir / "labvault.sqlite").stat().st_size / 2**20
        print(f"  (stored {args.events:,} chained events in {time.perf_counter() - t:.1f} s; "
              f"database {size:.0f} MiB)")
        subprocess.run([sys.executable, __file__, "--verify-dir", str(data_dir)], check=True)


def in_memory(args: argparse.Namespace) -> None:
    bodies = [json.dumps({"at": "2026-11-23T10:00:00+00:00", "actor": f"user{i % 50}",
                          "role": "biologist", "action": "vault:result:read", "outcome":
                          "allowed", "patients": [f"{i:032x}"]}, sort_keys=True).encode()
              for i in range(args.events)]
    with tempfile.TemporaryDirectory() as tmp:
        LocalKeyFile.create(Path(tmp) / "k")
        signer = Signer(LocalKeyFile.open(Path(tmp) / "k"))
    key = Secret(os.urandom(32))

    t = time.perf_counter()
    for b in bodies:
        hashlib.sha256(b).digest()
    base = time.perf_counter() - t

    writer = ChainWriter(key, signer=signer)
    events: list[ChainedEvent] = []
    marks: list[Checkpoint] = []
    t = time.perf_counter()
    for b in bodies:
        ev, mark = writer.append(b)
        events.append(ev)
        if mark is not None:
            marks.append(mark)
    append = time.perf_counter() - t

    t = time.perf_counter()
    n = verify(events, key, checkpoints=marks, public_key=signer.public_key)
    took = time.perf_counter() - t
    print(f"baseline SHA-256 of each body: {args.events / base:,.0f} events/s ({base:.2f} s)")
    print(f"chain append (in memory):       {args.events / append:,.0f} events/s "
          f"({append:.2f} s, {len(marks)} signed checkpoints)")
    print(f"verify {n:,} events:          {took:.2f} s ({n / took:,.0f} events/s), "
          f"{took / base:.1f}x the baseline")


if __name__ == "__main__":
    main()
