"""Store N results (≈ N/10 patients) through the vault, sealed with AES-256-GCM, and the same
through the same code with an identity cipher, in one run. Prints results/s and the ratio.

    python bench/ingest.py [--patients 10000] [--backend sqlite|postgres] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import IdentityCipher, machine, temp_vault
from labvault import local_operator
from labvault.synthetic import SyntheticLab


def run(records, backend: str, cipher_factory, pg_url: str | None) -> float:
    with temp_vault(backend, cipher_factory, pg_url) as (vault, _):
        started = time.perf_counter()
        vault.put_patients(local_operator("benchmark"), records)
        return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--postgres-url", default=os.environ.get("LABVAULT_TEST_POSTGRES_URL"))
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    print(f"machine: {machine()}")
    t = time.perf_counter()
    records = list(SyntheticLab(seed=42).records(args.patients))
    results = sum(r.result_count() for r in records)
    print(f"generated {args.patients} patients, {results} results in "
          f"{time.perf_counter() - t:.1f} s (not timed below)")
    best = {"aes-256-gcm": float("inf"), "identity (baseline)": float("inf")}
    for rnd in range(args.rounds):
        # alternate the order so neither side always runs on a warmer machine
        order = [("identity (baseline)", IdentityCipher), ("aes-256-gcm", None)]
        for name, factory in (order if rnd % 2 == 0 else order[::-1]):
            took = run(records, args.backend, factory, args.postgres_url)
            best[name] = min(best[name], took)
            print(f"  round {rnd + 1} {name:20s} {took:6.2f} s  {results / took:9,.0f} results/s")
    enc = results / best["aes-256-gcm"]
    base = results / best["identity (baseline)"]
    print(f"backend {args.backend}: {results} results, {args.patients} patients, best of "
          f"{args.rounds}")
    print(f"  encrypted  {enc:9,.0f} results/s")
    print(f"  baseline   {base:9,.0f} results/s (identity cipher, same code path)")
    print(f"  ratio      {enc / base:.2f}x  (target >= 0.70x and >= 5,000 results/s)")


if __name__ == "__main__":
    main()
