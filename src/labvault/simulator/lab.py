"""The simulated laboratory: a vault on the embedded SQLite default, synthetic patients, decoys,
staff accounts of every role enrolled with a password and a TOTP secret, patient accounts, and
one analyser gateway with its service token.

Everything is drawn from the seed, on a shared `FixedClock` that starts on a Monday at 00:00,
laboratory time (Europe/Paris). Every person has a lab site (one of `SyntheticLab.lab_finess`)
and a fixed workstation address (``10.<site>.<role>.<n>``); patients read from home
(``90.x.y.z``); the gateway posts from ``10.250.0.10``. Decoys are stored by
`WatchDesk.seed_decoys` with a seed, so that the simulator can regenerate their ids, last names
and birth dates (their NIRs are random: nobody can know them).

What the simulator keeps of a patient (a NIR, a last name, a birth date) stays in memory to
build searches: nothing of it is ever printed or written to the report, which holds ids only.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyotp

from labvault.access.permissions import Permission
from labvault.access.principal import Role, local_operator
from labvault.clock import FixedClock
from labvault.config import Settings
from labvault.domain.records import Order, PatientRecord
from labvault.secret import Secret
from labvault.synthetic import SyntheticLab
from labvault.vault import Vault

ZONE = ZoneInfo("Europe/Paris")
START = datetime(2026, 1, 5, 0, 0, tzinfo=ZONE)  # a Monday, after SyntheticLab's reference date
GATEWAY_ADDRESS = "10.250.0.10"
GATEWAY_SCOPES = [Permission.PATIENT_SEARCH, Permission.PATIENT_READ, Permission.RESULT_WRITE]
ROLE_CODE = {Role.SECRETARY: 1, Role.TECHNICIAN: 2, Role.BIOLOGIST: 3}
# Shifts (laboratory time), alternated between the people of a role; Saturday: mornings.
SHIFTS = {Role.SECRETARY: ((time(7, 0), time(15, 0)), (time(11, 30), time(19, 30))),
          Role.TECHNICIAN: ((time(6, 45), time(14, 45)), (time(11, 45), time(19, 45))),
          Role.BIOLOGIST: ((time(8, 30), time(18, 30)), (time(7, 45), time(17, 45)))}
SATURDAY = (time(7, 30), time(12, 30))


@dataclass
class Person:
    """An account the simulator logs in with: staff or patient."""

    role: Role
    index: int
    account_id: uuid.UUID
    email: str
    password: str = field(repr=False)
    totp_secret: str = field(repr=False)
    address: str
    site: str | None = None
    shift: tuple[time, time] = (time(8, 0), time(16, 0))
    saturday: bool = False
    patient_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        return f"account:{self.account_id}"

    @property
    def label(self) -> str:
        return f"{self.role.value}-{self.index:02d}"

    def totp(self) -> pyotp.TOTP:
        return pyotp.TOTP(self.totp_secret)


@dataclass
class SimPatient:
    id: uuid.UUID
    nir: str | None = field(repr=False)
    last_name: str = field(repr=False)
    birth_date: date = field(repr=False)
    sites: set[str] = field(default_factory=set)
    account: Person | None = None

    def search(self, by_nir: bool) -> dict[str, str]:
        if by_nir and self.nir:
            return {"nir": self.nir}
        return {"last_name": self.last_name, "birth_date": self.birth_date.isoformat()}


@dataclass
class Gateway:
    account_id: uuid.UUID
    token_id: uuid.UUID
    token: str = field(repr=False)
    address: str = GATEWAY_ADDRESS
    token_ids: list[uuid.UUID] = field(default_factory=list)  # every token it was given

    def actor(self, token_id: uuid.UUID | None = None) -> str:
        return f"account:{self.account_id}/token:{token_id or self.token_id}"


@dataclass
class Lab:
    vault: Vault
    clock: FixedClock
    settings: Settings
    sites: tuple[str, ...]
    staff: list[Person]
    patients: dict[uuid.UUID, SimPatient]
    pools: dict[str, list[uuid.UUID]]  # patients with an order at the site
    decoys: list[SimPatient]
    gateway: Gateway
    order_templates: list[dict[str, Any]] = field(repr=False)
    newcomers: SyntheticLab = field(repr=False)
    start: datetime = START

    def of_role(self, role: Role) -> list[Person]:
        return [p for p in self.staff if p.role is role]

    def local(self, day: int, at: time) -> datetime:
        """A laboratory-time instant of simulated day `day`, as UTC."""
        d = self.start.date() + timedelta(days=day)
        return datetime.combine(d, at, tzinfo=ZONE).astimezone(UTC)

    def link(self, patient: SimPatient, site: str) -> None:
        """The patient now has an order at the site (a care link)."""
        if site not in patient.sites:
            patient.sites.add(site)
            self.pools[site].append(patient.id)

    def issue_gateway_token(self, purpose: str) -> str:
        """A new token for the gateway (the helpdesk, after a revocation)."""
        tid, token = self.vault.accounts.issue_token(
            local_operator(purpose), self.gateway.account_id, scopes=list(GATEWAY_SCOPES),
            ttl=timedelta(days=365), label="analyser gateway")
        self.gateway.token_id, self.gateway.token = tid, token.reveal()
        self.gateway.token_ids.append(tid)
        return self.gateway.token


@contextmanager
def cheap_password_hashing() -> Iterator[None]:
    """Argon2id at 1 MiB and one pass instead of OWASP's 19 MiB, 2 passes: for tests and
    benchmarks only. `labvault.access.passwords` offers no setting for it (on purpose), so the
    module's hasher is swapped for the duration and restored after; the dummy hash of unknown
    accounts is recomputed on each side."""
    from argon2 import PasswordHasher, Type

    from labvault.access import passwords

    saved = passwords.HASHER
    passwords.HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1,
                                      hash_len=32, salt_len=16, type=Type.ID)
    passwords._dummy_hash.cache_clear()
    try:
        yield
    finally:
        passwords.HASHER = saved
        passwords._dummy_hash.cache_clear()


def staff_roles(n: int) -> list[Role]:
    """About a third secretaries, 38 % technicians, the rest biologists (at least 3)."""
    if n < 6:
        raise ValueError("at least 6 staff accounts (3 biologists, 2 secretaries, 1 technician)")
    secretaries, technicians = max(2, round(n * 0.32)), max(1, round(n * 0.38))
    biologists = n - secretaries - technicians
    if biologists < 3:
        technicians -= 3 - biologists
        biologists = 3
    return ([Role.SECRETARY] * secretaries + [Role.TECHNICIAN] * technicians
            + [Role.BIOLOGIST] * biologists)


def _password(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits
    return "-".join("".join(rng.choice(alphabet) for _ in range(6)) for _ in range(4))


def _enrol(vault: Vault, clock: FixedClock, rng: random.Random, role: Role, index: int,
           email: str, address: str, **more: Any) -> Person:
    op = local_operator("simulator: build the lab")
    pid = more.get("patient_id")
    account_id, token = vault.accounts.create_account(
        op, email=email, display_name=f"Simulated {role.value} {index}", roles=[role],
        site=more.get("site"), patient_id=pid)
    password = _password(rng)
    start = vault.accounts.begin_enrolment(token, Secret(password))
    secret = start.secret.reveal()
    vault.accounts.confirm_enrolment(token, pyotp.TOTP(secret).at(clock.now()))
    return Person(role, index, account_id, email, password, secret, address, **more)


def _template(order: Order) -> dict[str, Any]:
    pres = order.prescriber
    return {"prescriber": {"last_name": pres.last_name, "first_name": pres.first_name,
                           "rpps": pres.rpps} if pres else None,
            "results": [{"code_system": r.code_system, "code": r.code, "label": r.label,
                         "value": r.value, "unit": r.unit, "reference_range": r.reference_range,
                         "abnormal_flag": r.abnormal_flag.value if r.abnormal_flag else None}
                        for r in order.results]}


def _sim_patient(record: PatientRecord) -> SimPatient:
    p = record.patient
    return SimPatient(p.id, p.nir, p.last_name, p.birth_date,
                      {o.lab_finess for o in record.orders})


def build_lab(data_dir: Path, *, staff: int, patients: int, seed: int,
              progress: Any = None) -> Lab:
    """Create the vault in `data_dir` (which must hold no vault) and everything in it."""
    rng = random.Random(seed)  # noqa: S311 - synthetic workload, not cryptography
    roles = staff_roles(staff)
    clock = FixedClock(START.astimezone(UTC) - timedelta(hours=2))
    settings = Settings.embedded(data_dir)
    vault = Vault.init(settings, clock=clock)
    op = local_operator("simulator: load synthetic patients")
    source = SyntheticLab(seed, results_per_patient=4)
    sites = source.lab_finess
    sim: dict[uuid.UUID, SimPatient] = {}

    def stream() -> Iterator[PatientRecord]:
        for record in source.records(patients):
            sim[record.id] = _sim_patient(record)
            yield record

    vault.put_patients(op, stream(), progress=progress)
    decoy_seed = seed * 7919 + 1
    count = max(5, round(patients / 1000))
    vault.watch.seed_decoys(local_operator("simulator: seed decoys"), count, seed=decoy_seed)
    decoys = [_sim_patient(r) for r in SyntheticLab(decoy_seed, results_per_patient=4).records(count)]
    pools: dict[str, list[uuid.UUID]] = {s: [] for s in sites}
    for p in sim.values():
        for s in sorted(p.sites):
            pools[s].append(p.id)
    people: list[Person] = []
    per_role: dict[Role, int] = {}
    for role in roles:
        i = per_role[role] = per_role.get(role, -1) + 1
        s = i % len(sites)
        people.append(_enrol(vault, clock, rng, role, i, f"{role.value}{i:02d}@lab.example",
                             f"10.{s + 1}.{ROLE_CODE[role]}.{10 + i}", site=sites[s],
                             shift=SHIFTS[role][i % 2], saturday=i % 3 == 0))
    holders = rng.sample(sorted(sim, key=str), max(3, patients // 50))
    for n, pid in enumerate(holders):
        sim[pid].account = _enrol(vault, clock, rng, Role.PATIENT, n, f"patient{n:04d}@mail.example",
                                  f"90.{n // 250 % 250 + 1}.{n % 250 + 1}.{rng.randrange(1, 250)}",
                                  patient_id=pid)
    account_id, _ = vault.accounts.create_account(
        local_operator("simulator: gateway"), email="gateway@lab.example",
        display_name="Analyser gateway", roles=[Role.SERVICE])
    gateway = Gateway(account_id, uuid.UUID(int=0), "")
    templates = [_template(o) for r in SyntheticLab(seed + 7, results_per_patient=5).records(120)
                 for o in r.orders if o.results]
    lab = Lab(vault, clock, settings, sites, people, sim, pools, decoys, gateway, templates,
              SyntheticLab(seed + 11, results_per_patient=0))
    lab.issue_gateway_token("simulator: gateway token")
    return lab


__all__ = ["START", "ZONE", "Gateway", "Lab", "Person", "SimPatient", "build_lab",
           "cheap_password_hashing", "staff_roles"]
