"""Audit chain: append rate and `verify` time over N events (default 1,000,000), in one run,
with a baseline of plain SHA-256 over the same bodies.

    python bench/audit_verify.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine
from labvault.audit.chain import ChainedEvent, ChainWriter, Checkpoint, verify
from labvault.crypto.keys import LocalKeyFile
from labvault.crypto.signing import Signer
from labvault.secret import Secret


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    print(f"machine: {machine()} (2 cores: single-process figures)")
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
