"""Authenticated patient reads through the HTTP API at 100,000 patients, with and without the
audit, in the same run: requests/s, p50/p99 latency at a fixed arrival rate, and the ratio.

    python bench/api.py [--patients 100000] [--rate 200] [--seconds 30] [--dir PATH]

The server is uvicorn in a process of its own on 127.0.0.1; the load generator (asyncio +
httpx, open loop: request i is due at t0 + i/rate and its latency counts from that time, so a
slow server cannot hide its queue) runs in this process. Each request is a biologist's
``GET /patients/{id}`` on a random patient: the session is checked, the vault checks the
permission, appends the audit event and decrypts the identity. The baseline is the same server
and vault with the audit sink replaced by one that does nothing (a bench-only construction: the
product has no switch for it). ``--dir`` keeps the loaded vault between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, percentile

PASSWORD = "bench horse battery staple 42"


def build(data_dir: Path, patients: int) -> None:
    from labvault import Settings, Vault, local_operator
    from labvault.synthetic import SyntheticLab

    ids_file = data_dir / "bench-ids.txt"
    if ids_file.exists():
        return
    vault = Vault.init(Settings.embedded(data_dir))
    op = local_operator("benchmark load")
    t = time.perf_counter()
    ids = []
    lab = SyntheticLab(seed=4, results_per_patient=2)
    batch = []
    for rec in lab.records(patients):
        batch.append(rec)
        ids.append(rec.patient.id)
        if len(batch) == 2000:
            vault.put_patients(op, batch)
            batch = []
    if batch:
        vault.put_patients(op, batch)
    vault.close()
    ids_file.write_text("\n".join(str(i) for i in ids))
    print(f"loaded {patients:,} patients in {time.perf_counter() - t:.0f} s")


def account(data_dir: Path):
    """A fresh biologist account, enrolled; returns (email, totp)."""
    import uuid

    import pyotp

    from labvault import Settings, Vault, local_operator
    from labvault.access.principal import Role
    from labvault.secret import Secret

    vault = Vault.open(Settings.load(data_dir))
    op = local_operator("benchmark account")
    email = f"bench-{uuid.uuid4().hex[:8]}@lab.example"
    _, token = vault.accounts.create_account(op, email=email, display_name="Bench Biologist",
                                             roles=[Role.BIOLOGIST])
    start = vault.accounts.begin_enrolment(token, Secret(PASSWORD))
    totp = pyotp.TOTP(start.secret.reveal())
    vault.accounts.confirm_enrolment(token, totp.now())
    vault.close()
    return email, totp


def serve(data_dir: Path, port: int, audited: bool) -> None:
    import uvicorn

    from labvault import Settings, Vault
    from labvault.api import create_app

    vault = Vault.open(Settings.load(data_dir))
    if not audited:
        class NoAudit:
            def append(self, event) -> None:
                return None

        vault._audit = NoAudit()  # the baseline only
    uvicorn.run(create_app(vault), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, server_header=False)


async def _wait_up(client, url: str) -> None:
    for _ in range(200):
        try:
            if (await client.get(url + "/health")).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("server did not start")


async def _login(client, url: str, email: str, totp) -> dict[str, str]:
    r = await client.post(url + "/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    step = int(time.time()) // 30
    while int(time.time()) // 30 == step:  # the enrolment used this step's code
        await asyncio.sleep(0.5)
    r = await client.post(url + "/auth/mfa", json={"challenge": r.json()["challenge"],
                                                   "code": totp.now()})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def load(url: str, headers: dict[str, str], ids: list[str], rate: float,
               seconds: float) -> dict[str, float]:
    import httpx

    rng = random.Random(7)
    n = int(rate * seconds)
    lat: list[float] = []
    errors = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=30) as client:
        t0 = time.perf_counter() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            r = await client.get(f"{url}/patients/{rng.choice(ids)}", headers=headers)
            lat.append((time.perf_counter() - due) * 1000)
            if r.status_code != 200:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return {"n": n, "rps": n / elapsed, "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "max": lat[-1], "errors": errors}


async def saturate(url: str, headers: dict[str, str], ids: list[str], seconds: float,
                   workers: int = 16) -> float:
    import httpx

    rng = random.Random(9)
    done = 0
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=workers), timeout=30) as c:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                r = await c.get(f"{url}/patients/{rng.choice(ids)}", headers=headers)
                r.raise_for_status()
                done += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return done / (time.perf_counter() - t)


def run_mode(data_dir: Path, audited: bool, port: int, ids: list[str], args) -> dict[str, float]:
    import httpx

    email, totp = account(data_dir)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir), "--port",
                             str(port), "--mode", "audited" if audited else "unaudited"])
    url = f"http://127.0.0.1:{port}"
    try:
        async def go() -> dict[str, float]:
            async with httpx.AsyncClient(timeout=30) as client:
                await _wait_up(client, url)
                headers = await _login(client, url, email, totp)
            await load(url, headers, ids, args.rate, 3)  # warm-up
            out = await load(url, headers, ids, args.rate, args.seconds)
            out["max_rps"] = await saturate(url, headers, ids, 10)
            return out

        return asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--serve", type=Path, default=None)
    ap.add_argument("--port", type=int, default=18443)
    ap.add_argument("--mode", default="audited")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.mode == "audited")
        return
    import tempfile

    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="labvault-bench-api-")
        args.dir = Path(tmp.name) / "vault"
    build(args.dir, args.patients)
    ids = (args.dir / "bench-ids.txt").read_text().split()
    print(machine())
    print(f"{len(ids):,} patients; GET /patients/{{id}} as a biologist; open loop at "
          f"{args.rate:.0f} req/s for {args.seconds:.0f} s; server and load generator share "
          "the machine's 2 cores")
    results = {}
    for audited in (False, True):
        name = "audited" if audited else "unaudited (baseline)"
        r = run_mode(args.dir, audited, args.port + int(audited), ids, args)
        results[audited] = r
        print(f"  {name:22} {r['rps']:7.1f} req/s  p50 {r['p50']:6.2f} ms  p90 {r['p90']:6.2f} ms"
              f"  p99 {r['p99']:6.2f} ms  max {r['max']:7.2f} ms  errors {r['errors']}"
              f"  | saturated: {r['max_rps']:6.0f} req/s")
    a, b = results[True], results[False]
    print(f"  ratio audited/unaudited: p50 {a['p50'] / b['p50']:.2f}x, p99 {a['p99'] / b['p99']:.2f}x,"
          f" saturated throughput {b['max_rps'] / a['max_rps']:.2f}x (cost per request)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
