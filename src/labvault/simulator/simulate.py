"""`run`: build the lab, start the watcher, serve the API on loopback, replay the days, report.

The watcher runs with the default thresholds (and the ``watch.toml`` of the data directory if
one is there: none in a fresh one), its alerts routed to a signed webhook received on loopback.
"""

from __future__ import annotations

import logging
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from labvault.access.principal import local_operator
from labvault.api import ApiConfig, create_app
from labvault.secret import Secret
from labvault.simulator.attacks import Attacks
from labvault.simulator.lab import Lab, build_lab, cheap_password_hashing
from labvault.simulator.report import attack_entry, normal_entry, targets
from labvault.simulator.runner import Api, ApiServer, Driver, WebhookReceiver
from labvault.simulator.workload import Workload
from labvault.watch.channels import WebhookChannel
from labvault.watch.config import WatchConfig

ROUTES = {"alerting": {"routes": {"critical": ["webhook"], "high": ["webhook"],
                                  "medium": ["webhook"], "low": []}}}


@dataclass
class Options:
    days: int = 30
    staff: int = 50
    patients: int = 5000
    seed: int = 1
    out_dir: Path | None = None  # the vault stays there; a temporary directory otherwise
    fast_kdf: bool = False  # cheap argon2 for the accounts: tests and benchmarks only
    watch: dict[str, Any] = field(default_factory=dict)  # watch.toml values for this run


@dataclass
class Outcome:
    report: dict[str, Any]
    data_dir: Path
    sites: tuple[str, ...]
    pools: dict[str, list[str]]  # patient ids with an order at each site


@contextmanager
def _quiet() -> Iterator[None]:
    """The watcher logs each alert at WARNING and the API its refusals: ids only, but noise
    over the progress bar. Server errors are counted by the simulator instead."""
    names = ("labvault.watch", "labvault.api", "labvault.audit", "uvicorn.error")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _config(data_dir: Path, extra: dict[str, Any]) -> WatchConfig:
    base = WatchConfig.load(data_dir).doc
    doc = {**{k: v for k, v in base.items() if k != "alerting"}, **ROUTES, **extra}
    return WatchConfig.from_mapping(doc)


def run(options: Options, progress: Callable[[str, int, int], None] | None = None) -> Outcome:
    """Run the simulation; `progress(stage, done, total)` follows it."""
    if options.days < 1:
        raise ValueError("days must be at least 1")
    tell = progress or (lambda stage, done, total: None)
    with ExitStack() as stack:
        stack.enter_context(cheap_password_hashing() if options.fast_kdf else nullcontext())
        stack.enter_context(_quiet())
        if options.out_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labvault-sim-")))
            data_dir /= "vault"
        else:
            data_dir = options.out_dir
        loaded = 0

        def loading(n: int) -> None:
            nonlocal loaded
            loaded += n
            tell("patients", loaded, options.patients)

        started = time.perf_counter()
        lab = build_lab(data_dir, staff=options.staff, patients=options.patients,
                        seed=options.seed, progress=loading)
        try:
            report = _replay(lab, options, tell)
        finally:
            lab.vault.watch.stop()
            lab.vault.close()
        report["simulation"]["wall_seconds"] = round(time.perf_counter() - started, 1)
        pools = {s: [str(p) for p in ids] for s, ids in lab.pools.items()}
        return Outcome(report, data_dir, lab.sites, pools)
    raise AssertionError("unreachable")  # pragma: no cover


def _replay(lab: Lab, options: Options, tell: Callable[[str, int, int], None]) -> dict[str, Any]:
    rng = random.Random(options.seed + 1)  # noqa: S311 - synthetic workload, not cryptography
    key = secrets.token_bytes(32)
    receiver = WebhookReceiver(key, lab.clock)
    try:
        channel = WebhookChannel(receiver.url, Secret(key), clock=lab.clock, attempts=2,
                                 base_delay=0.05, jitter=False)
        watcher = lab.vault.watch.start(_config(lab.settings.data_dir, options.watch),
                                        channels={"webhook": channel}, background=True)
        notifier = watcher.notifier
        assert notifier is not None
        with ApiServer(create_app(lab.vault, ApiConfig())) as server:
            api = Api(server.url, lab.clock)
            try:
                driver = Driver(lab.clock, after_step=notifier.flush)
                workload = Workload(lab, api, driver, rng)
                attacks = Attacks(lab, api, driver, rng, options.days)
                lab.clock.set(lab.local(0, clock_time(0, 0)))
                planned = attacks.schedule()
                for day in range(options.days):
                    workload.start_day(day)
                    driver.run_until(lab.local(day + 1, clock_time(0, 0)))
                    tell("days", day + 1, options.days)
                notifier.flush()
            finally:
                api.close()
        alerts = lab.vault.watch.alerts(local_operator("simulator: report"), limit=10_000_000)
    finally:
        receiver.close()
    attributed: set[Any] = set()
    entries = []
    for attack in planned:
        entry, ids = attack_entry(attack, alerts, receiver.received)
        entries.append(entry)
        attributed |= ids
    normal = normal_entry(alerts, attributed, api.user_days)
    normal["unlocked_by_helpdesk"] = [actor for _, actor in workload.unlocked]
    return {
        "simulation": {
            "days": options.days, "staff": options.staff, "patients": options.patients,
            "seed": options.seed, "fast_kdf": options.fast_kdf, "start": lab.start.isoformat(),
            "sites": list(lab.sites), "decoys": len(lab.decoys),
            "roles": {r: sum(1 for p in lab.staff if p.role.value == r)
                      for r in ("secretary", "technician", "biologist")},
            "patient_accounts": sum(1 for p in lab.patients.values() if p.account is not None),
            "requests": api.requests, "server_errors": api.server_errors,
            "alerts": len(alerts), "webhook_refused": receiver.refused,
        },
        "attacks": entries,
        "skipped_attacks": attacks.skipped,
        "normal": normal,
        "targets": targets(entries, normal),
    }


__all__ = ["Options", "Outcome", "run"]
