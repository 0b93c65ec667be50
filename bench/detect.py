"""Detection: the simulator over a month, and what detection costs the API's read latency.

    python bench/detect.py [--days 30] [--staff 50] [--patients 5000] [--seed 1]
                           [--rate 100] [--seconds 30] [--rounds 3] [--sessions 4] [--dir PATH]

Part 1 runs `labvault.simulator` (the real API on loopback, uvicorn in a thread, a shared fixed
clock) over ``--days`` simulated days with ``--staff`` staff accounts and ``--patients``
patients, the attacks injected after a week of learning, and prints per attack the records
exposed, the time to the first alert and its rule, then the false alerts of the normal workload
per 1,000 user-days, each target with PASS/FAIL. Passwords use cheap argon2 (``--fast-kdf``):
the simulation logs in thousands of times and the hash cost has nothing to do with detection.

Part 2 serves the vault the simulation left (same patients) from a process of its own, with
detection on (``vault.watch.start``) or off (no watcher), and measures ``GET
/patients/{id}/record`` by several biologist sessions, open loop at a fixed rate (latency counted
from each request's due time, as in bench/api.py); modes alternated, rounds repeated, in the
same run. With detection on the watcher runs every rule on every event; the load's sessions
read far more patients per minute than a person, so the volume limits of the biologist role
are raised for this part only (the rules still count every read) — otherwise the first minute
would lock the sessions. The readers have a site and read patients of that site: the
unexplained-read rule looks each patient's sites up, as in normal work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, percentile
from api import Connection, served

PASSWORD_CHARS = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
UNLIMITED = {"1m": 10**9, "10m": 10**9, "1h": 10**9, "1d": 10**9}
BENCH_WATCH = {"volume": {"limits": {"biologist": UNLIMITED}}}


def simulate(args, out: Path):
    from labvault.simulator import Options, run
    from labvault.simulator.report import lines

    t = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "days" and (done % 5 == 0 or done == total):
            print(f"  simulated day {done}/{total} ({time.perf_counter() - t:.0f} s)", flush=True)

    outcome = run(Options(days=args.days, staff=args.staff, patients=args.patients,
                          seed=args.seed, out_dir=out / "vault", fast_kdf=True), progress)
    sim = outcome.report["simulation"]
    print(f"simulation: {sim['days']} days, {sim['staff']} staff ({sim['roles']}), "
          f"{sim['patients']:,} patients, {sim['decoys']} decoys, {sim['patient_accounts']} patient "
          f"accounts, 3 sites; {sim['requests']:,} API requests, {sim['server_errors']} server "
          f"errors, {sim['alerts']:,} alerts; {sim['wall_seconds']:.0f} s wall clock on 2 cores")
    print()
    for line in lines(outcome.report):
        print(line)
    return outcome


def serve(data_dir: Path, port: int, detection: bool) -> None:
    import uvicorn

    from labvault import Settings, Vault
    from labvault.api import create_app
    from labvault.watch.config import WatchConfig

    vault = Vault.open(Settings.load(data_dir))
    if detection:
        vault.watch.start(WatchConfig.from_mapping(BENCH_WATCH), background=True)
    uvicorn.run(create_app(vault), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, server_header=False)


def readers(data_dir: Path, site: str, n: int):
    """`n` biologists of `site`, enrolled at a clock two minutes back (so that a code of now is
    a fresh one); (email, password, totp) each."""
    import pyotp

    from labvault import FixedClock, Settings, Vault, local_operator
    from labvault.access.principal import Role
    from labvault.secret import Secret

    clock = FixedClock(datetime.now(UTC) - timedelta(minutes=2))
    vault = Vault.open(Settings.load(data_dir), clock=clock)
    op = local_operator("benchmark readers")
    rng = random.Random(11)
    out = []
    try:
        for _ in range(n):
            email = f"reader-{uuid.uuid4().hex[:8]}@lab.example"
            password = "".join(rng.choice(PASSWORD_CHARS) for _ in range(20))
            _, token = vault.accounts.create_account(op, email=email, display_name="Bench reader",
                                                     roles=[Role.BIOLOGIST], site=site)
            start = vault.accounts.begin_enrolment(token, Secret(password))
            totp = pyotp.TOTP(start.secret.reveal())
            vault.accounts.confirm_enrolment(token, totp.at(clock.now()))
            out.append((email, password, totp))
    finally:
        vault.close()
    return out


async def _login(client, url: str, email: str, password: str, totp) -> dict[str, str]:
    r = await client.post(url + "/auth/login", json={"email": email, "password": password})
    r.raise_for_status()
    r = await client.post(url + "/auth/mfa", json={"challenge": r.json()["challenge"],
                                                   "code": totp.now()})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def load(url: str, sessions: list[dict[str, str]], ids: list[str], rate: float,
               seconds: float, connections: int = 16) -> dict[str, float]:
    """Open loop over `connections` keep-alive connections, each in one of the sessions."""
    host, port = url.removeprefix("http://").split(":")
    conns = [Connection(host, int(port), sessions[i % len(sessions)]) for i in range(connections)]
    for c in conns:
        await c.open()
    rng = random.Random(7)
    n, lat, errors, next_i = int(rate * seconds), [], 0, 0
    t0 = time.perf_counter() + 0.1

    async def worker(conn: Connection) -> None:
        nonlocal next_i, errors
        while next_i < n:
            i = next_i
            next_i += 1
            due = t0 + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            status = await conn.get(f"/patients/{rng.choice(ids)}/record")
            lat.append((time.perf_counter() - due) * 1000)
            errors += status != 200

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.close()
    lat.sort()
    return {"n": n, "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "max": lat[-1], "errors": errors}


def run_mode(data_dir: Path, detection: bool, port: int, people, ids: list[str], args):
    async def login(client, url: str) -> list[dict[str, str]]:
        return [await _login(client, url, *p) for p in people]

    async def measure(url: str, sessions: list[dict[str, str]]) -> dict[str, float]:
        await load(url, sessions, ids, args.rate, 3)  # warm-up
        return await load(url, sessions, ids, args.rate, args.seconds)

    return served(__file__, data_dir, port, "on" if detection else "off", login, measure)


def latency(outcome, args) -> None:
    data_dir = outcome.data_dir
    site = outcome.sites[0]
    ids = outcome.pools[site]
    for name in ("labvault.sqlite", "keys.sqlite"):  # both modes start with a warm OS cache
        with open(data_dir / name, "rb") as f:
            while f.read(1 << 20):
                pass
    people = readers(data_dir, site, args.sessions * 2 * args.rounds)
    print(f"\nread latency: GET /patients/{{id}}/record on {len(ids):,} patients of one site by "
          f"{args.sessions} biologist sessions, open loop at {args.rate:.0f} req/s for "
          f"{args.seconds:.0f} s per mode; server (uvicorn, one process) and load generator "
          "share the machine's 2 cores")
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    k = 0
    for round_ in range(args.rounds):
        for detection in (False, True):  # alternated: neither mode always gets the warmer slot
            mine = people[k * args.sessions:(k + 1) * args.sessions]
            r = run_mode(data_dir, detection, args.port + k, mine, ids, args)
            k += 1
            results[detection].append(r)
            print(f"  round {round_ + 1} detection {'on ' if detection else 'off'}  p50 "
                  f"{r['p50']:6.2f} ms  p90 {r['p90']:6.2f} ms  p99 {r['p99']:6.2f} ms  max "
                  f"{r['max']:7.2f} ms  errors {r['errors']}")

    def mean(on: bool, key: str) -> float:
        return sum(r[key] for r in results[on]) / len(results[on])

    ratio = mean(True, "p99") / mean(False, "p99")
    print(f"  mean of {args.rounds} rounds: detection on p50 {mean(True, 'p50'):.2f} ms, p99 "
          f"{mean(True, 'p99'):.2f} ms; off p50 {mean(False, 'p50'):.2f} ms, p99 "
          f"{mean(False, 'p99'):.2f} ms")
    print(f"  ratio on/off: p50 {mean(True, 'p50') / mean(False, 'p50'):.2f}x, p99 {ratio:.2f}x"
          f"  [{'PASS' if ratio <= 1.10 else 'FAIL'}] detection adds <= 10 % to the p99 read "
          "latency")
    alerts = _alerts_of_readers(data_dir)
    print(f"  alerts raised about the benchmark's readers: {alerts}")


def _alerts_of_readers(data_dir: Path) -> int:
    from labvault import Settings, Vault, local_operator

    vault = Vault.open(Settings.load(data_dir))
    try:
        op = local_operator("benchmark: alerts")
        found = vault.watch.alerts(op, limit=10_000_000)
        since = datetime.now(UTC) - timedelta(hours=6)
        return sum(1 for a in found if a.raised_at >= since)
    finally:
        vault.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--staff", type=int, default=50)
    ap.add_argument("--patients", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--serve", type=Path, default=None)
    ap.add_argument("--port", type=int, default=18543)
    ap.add_argument("--mode", default="on")
    ap.add_argument("--skip-simulation", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.mode == "on")
        return
    print(machine())
    with tempfile.TemporaryDirectory(prefix="labvault-bench-detect-") as tmp:
        outcome = simulate(args, args.dir or Path(tmp))
        latency(outcome, args)


if __name__ == "__main__":
    main()
