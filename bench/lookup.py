"""Lookup by NIR at 10,000 and 100,000 patients: p50 and p99 in ms, through the vault (blind
index + audit event) against a plaintext indexed lookup on the same store, in the same run.

    python bench/lookup.py [--sizes 10000 100000] [--lookups 2000] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from sqlalchemy import Column, MetaData, String, Table, Uuid, insert, select

from _common import machine, percentile, temp_vault
from labvault import local_operator
from labvault.crypto.blind import NIR_INDEX
from labvault.domain.normalize import normalize_nir
from labvault.synthetic import SyntheticLab

# The baseline: what an unencrypted lab system does, a clear NIR column with an index.
plain_meta = MetaData()
plain = Table("bench_plain_patient", plain_meta,
              Column("id", Uuid, primary_key=True),
              Column("nir", String(15), index=True))
# The blind-index query alone, without the vault around it (to show where time goes).
bidx_meta = MetaData()


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return out


def bench_size(n: int, lookups: int, backend: str, pg_url: str | None) -> dict[str, list[float]]:
    with temp_vault(backend, postgres_url=pg_url) as (vault, _):
        op = local_operator("benchmark")
        lab = SyntheticLab(seed=n, results_per_patient=1.0)
        nirs, rows = [], []
        t = time.perf_counter()

        def stream():
            for record in lab.records(n):
                if record.patient.nir:
                    nirs.append(record.patient.nir)
                    rows.append({"id": record.id, "nir": normalize_nir(record.patient.nir)})
                yield record

        vault.put_patients(op, stream(), batch_size=1000)
        engine = vault._records.engine
        plain_meta.create_all(engine)
        with engine.begin() as conn:
            for i in range(0, len(rows), 5000):
                conn.execute(insert(plain), rows[i:i + 5000])
        print(f"  {n} patients loaded in {time.perf_counter() - t:.1f} s")
        rng = random.Random(7)
        sample = [rng.choice(nirs) for _ in range(lookups)]
        misses = [n_[:-2] + ("00" if n_[-2:] != "00" else "01") for n_ in sample[: lookups // 10]]
        index = vault._nir_index

        def plain_lookup(nir: str):
            with engine.connect() as conn:
                return conn.execute(select(plain.c.id).where(plain.c.nir == normalize_nir(nir))).all()

        def blind_query(nir: str):
            return vault._records.ids_by_index("nir_bidx", index.compute(normalize_nir(nir)))

        def vault_find(nir: str):
            ids = vault.find_patients(op, nir=nir)
            assert ids
            return ids

        def vault_find_and_read(nir: str):
            return vault.get_patient(op, vault.find_patients(op, nir=nir)[0])

        timed(plain_lookup, sample[:200])  # warm caches for both sides
        timed(vault_find, sample[:200])
        out = {}
        for name, fn, items in (
            ("plaintext indexed lookup (baseline)", plain_lookup, sample),
            ("blind-index query only", blind_query, sample),
            ("vault.find_patients (HMAC + query + audit)", vault_find, sample),
            ("vault find + get_patient (decrypt identity)", vault_find_and_read, sample),
            ("vault.find_patients, misses", lambda x: vault.find_patients(op, nir=x), misses),
        ):
            out[name] = timed(fn, items)
        assert index.name == NIR_INDEX
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--postgres-url", default=os.environ.get("LABVAULT_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    print(f"machine: {machine()}")
    for n in args.sizes:
        print(f"backend {args.backend}, {n} patients, {args.lookups} lookups:")
        res = bench_size(n, args.lookups, args.backend, args.postgres_url)
        base = res["plaintext indexed lookup (baseline)"]
        b50, b99 = percentile(base, 50), percentile(base, 99)
        for name, ms in res.items():
            p50, p99 = percentile(ms, 50), percentile(ms, 99)
            print(f"  {name:46s} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  "
                  f"({p50 / b50:4.2f}x / {p99 / b99:4.2f}x baseline)")
    print("target: vault.find_patients p99 <= 5 ms and <= 2x the baseline")


if __name__ == "__main__":
    main()
