"""Authenticated patient reads through the HTTP API at 100,000 patients, with and without the
audit, in the same run: requests/s, p50/p99 latency at a fixed arrival rate, and the ratio.

    python bench/api.py [--patients 100000] [--rate 200] [--seconds 30] [--dir PATH]

The server is uvicorn in a process of its own on 127.0.0.1; the load generator (raw asyncio
keep-alive connections, open loop: request i is due at t0 + i/rate and its latency counts from that time, so a
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
    email = f"reader-{uuid.uuid4().hex[:8]}@lab.example"
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


class Connection:
    """One keep-alive HTTP/1.1 connection with the least client work: the request is a few
    bytes written, the answer is read up to its Content-Length. (A general-purpose client
    spends more CPU per request than the server under test, on the same two cores.)"""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _connections(url: str, headers: dict[str, str], n: int) -> list[Connection]:
    host, port = url.removeprefix("http://").split(":")
    conns = [Connection(host, int(port), headers) for _ in range(n)]
    for c in conns:
        await c.open()
    return conns


async def load(url: str, headers: dict[str, str], ids: list[str], rate: float,
               seconds: float, connections: int = 32) -> dict[str, float]:
    """Open loop: request i is due at t0 + i/rate; a free connection takes the next due
    request; latency counts from the due time, so queueing is measured, not hidden."""
    rng = random.Random(7)
    n = int(rate * seconds)
    lat: list[float] = []
    errors = 0
    conns = await _connections(url, headers, connections)
    t0 = time.perf_counter() + 0.1
    next_i = 0

    async def worker(conn: Connection) -> None:
        nonlocal next_i, errors
        while next_i < n:
            i = next_i
            next_i += 1
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await conn.get(f"/patients/{rng.choice(ids)}")
            lat.append((time.perf_counter() - due) * 1000)
            if status != 200:
                errors += 1

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    lat.sort()
    return {"n": n, "rps": n / elapsed, "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "max": lat[-1], "errors": errors}


async def saturate(url: str, headers: dict[str, str], ids: list[str], seconds: float,
                   workers: int = 16) -> float:
    """Closed loop: `workers` connections, each sending its next request on the answer."""
    rng = random.Random(9)
    done = 0
    conns = await _connections(url, headers, workers)
    end = time.perf_counter() + seconds

    async def worker(conn: Connection) -> None:
        nonlocal done
        while time.perf_counter() < end:
            if await conn.get(f"/patients/{rng.choice(ids)}") != 200:
                raise RuntimeError("a read was refused")
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.close()
    return done / (time.perf_counter() - t)


def served(script: str, data_dir: Path, port: int, mode: str, login, measure) -> dict:
    """Run `script --serve` in a process of its own, log in once it answers (`login(client,
    url)`), then measure (`measure(url, auth)`); the server is stopped whatever happens."""
    import httpx

    proc = subprocess.Popen([sys.executable, script, "--serve", str(data_dir), "--port",
                             str(port), "--mode", mode])
    url = f"http://127.0.0.1:{port}"
    try:
        async def go() -> dict:
            async with httpx.AsyncClient(timeout=30) as client:
                await _wait_up(client, url)
                auth = await login(client, url)
            return await measure(url, auth)

        return asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(10)


def run_mode(data_dir: Path, audited: bool, port: int, ids: list[str], args) -> dict[str, float]:
    email, totp = account(data_dir)

    async def measure(url: str, headers: dict[str, str]) -> dict[str, float]:
        await load(url, headers, ids, args.rate, 3)  # warm-up
        out = await load(url, headers, ids, args.rate, args.seconds)
        out["max_rps"] = await saturate(url, headers, ids, 10)
        return out

    return served(__file__, data_dir, port, "audited" if audited else "unaudited",
                  lambda client, url: _login(client, url, email, totp), measure)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--serve", type=Path, default=None)
    ap.add_argument("--port", type=int, default=18443)
    ap.add_argument("--mode", default="audited")
    ap.add_argument("--rounds", type=int, default=2)
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
    for name in ("labvault.sqlite", "keys.sqlite"):  # both modes start with a warm OS cache
        with open(args.dir / name, "rb") as f:
            while f.read(1 << 20):
                pass
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for round_ in range(args.rounds):
        for audited in (False, True):  # alternated, so that neither mode gets the warmer slot
            name = "audited" if audited else "unaudited (baseline)"
            r = run_mode(args.dir, audited, args.port + 2 * round_ + int(audited), ids, args)
            results[audited].append(r)
            print(f"  round {round_ + 1} {name:22} {r['rps']:6.1f} req/s  p50 {r['p50']:6.2f} ms"
                  f"  p90 {r['p90']:6.2f} ms  p99 {r['p99']:6.2f} ms  max {r['max']:7.2f} ms"
                  f"  errors {r['errors']}  | saturated: {r['max_rps']:4.0f} req/s")

    def mean(audited: bool, key: str) -> float:
        return sum(r[key] for r in results[audited]) / len(results[audited])

    print(f"  mean of {args.rounds} rounds: audited p50 {mean(True, 'p50'):.2f} ms, p99 "
          f"{mean(True, 'p99'):.2f} ms, saturated {mean(True, 'max_rps'):.0f} req/s; unaudited "
          f"p50 {mean(False, 'p50'):.2f} ms, p99 {mean(False, 'p99'):.2f} ms, saturated "
          f"{mean(False, 'max_rps'):.0f} req/s")
    print(f"  ratio audited/unaudited: p50 {mean(True, 'p50') / mean(False, 'p50'):.2f}x, p99 "
          f"{mean(True, 'p99') / mean(False, 'p99'):.2f}x, cost per request at saturation "
          f"{mean(False, 'max_rps') / mean(True, 'max_rps'):.2f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
