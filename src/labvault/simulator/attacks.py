"""The attacks, each a scripted actor injected after the learning period (7 simulated days).

- fast-enumeration: a biologist's stolen password and TOTP secret, from an address the account
  never used, at night; it walks NIR serial numbers around ones it knows in each birth block
  (a few either side), and reads the record of every hit, as fast as it can;
- slow-extraction: another biologist's credentials, from elsewhere; one patient from a leaked
  list of NIRs every ~5 minutes, around the clock, for up to three days;
- insider: a secretary, from her own workstation during her shift, looks up a neighbour by name
  and birth date and opens her file: a patient with orders at another site only;
- credential-stuffing: one address tries a leaked password list on ~30 e-mail addresses (some
  unknown), honouring Retry-After; one secretary reused her password there;
- leaked-token: the analyser gateway's token used from an address outside the lab;
- bulk-export: a biologist's phished password and code, used at lunchtime from her own
  workstation: step-up, then ``GET /export``;
- honeytoken: a technician's account looks up a decoy patient and tries to open it.

An attacker stops when it cannot get in any more (account locked, token revoked).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from stdnum.fr import nir as stdnum_nir

from labvault.access.principal import Role
from labvault.simulator.lab import Lab, Person, SimPatient
from labvault.simulator.runner import Actor, Api, Driver, Step, Truth
from labvault.watch.state import network_of

LEARNING_DAYS = 7
# (attack, day, laboratory time): over a month, one attack at a time; compressed otherwise.
SPREAD = (("credential-stuffing", 7, time(2, 30)), ("fast-enumeration", 8, time(3, 10)),
          ("insider", 9, time(14, 20)), ("leaked-token", 10, time(10, 5)),
          ("bulk-export", 11, time(12, 40)), ("slow-extraction", 14, time(0, 0)),
          ("honeytoken", 18, time(11, 0)))
COMPRESSED = (("credential-stuffing", 7, time(2, 30)), ("fast-enumeration", 7, time(3, 30)),
              ("leaked-token", 7, time(10, 5)), ("insider", 7, time(14, 20)),
              ("slow-extraction", 7, time(19, 0)), ("honeytoken", 8, time(11, 0)),
              ("bulk-export", 8, time(12, 40)))
SLOW_HOURS = 72
ADDRESSES = {"fast-enumeration": "185.220.101.37", "slow-extraction": "45.83.64.12",
             "credential-stuffing": "203.0.113.77", "leaked-token": "198.51.100.23"}


@dataclass
class Attack:
    name: str
    at: datetime
    actors: set[str]  # who the alerts about this attack name
    victim: str  # the account (or token) actor it uses
    address: str
    truth: Truth = field(default_factory=Truth)
    note: dict[str, object] = field(default_factory=dict)


class Attacks:
    def __init__(self, lab: Lab, api: Api, driver: Driver, rng: random.Random, days: int) -> None:
        self.lab, self.api, self.driver, self.rng, self.days = lab, api, driver, rng, days
        self.planned: list[Attack] = []
        self.skipped: list[str] = []

    @property
    def now(self) -> datetime:
        return self.lab.clock.now()

    def schedule(self) -> list[Attack]:
        """Spawn every attack that fits in the simulated days."""
        s = sorted(self.lab.of_role(Role.SECRETARY), key=lambda p: p.index)
        b = sorted(self.lab.of_role(Role.BIOLOGIST), key=lambda p: p.index)
        t = sorted(self.lab.of_role(Role.TECHNICIAN), key=lambda p: p.index)
        scripts: dict[str, tuple[Person | None, Callable[..., Step]]] = {
            "credential-stuffing": (s[1], self.stuffing), "fast-enumeration": (b[0], self.fast),
            "leaked-token": (None, self.token), "insider": (s[0], self.insider),
            "slow-extraction": (b[1], self.slow), "honeytoken": (t[0], self.decoy),
            "bulk-export": (b[2], self.export)}
        end = self.lab.local(self.days, time(0, 0))
        for name, day, at in SPREAD if self.days >= 21 else COMPRESSED:
            person, script = scripts[name]
            start = self.lab.local(day, at)
            if day < LEARNING_DAYS or start + timedelta(hours=8) > end:
                self.skipped.append(name)
                continue
            address = ADDRESSES.get(name) or (person.address if person else "")
            victim = person.actor if person else self.lab.gateway.actor()
            actors = {victim}
            if name == "credential-stuffing":  # spraying is about the source (or its network)
                actors |= {f"source:{address}", f"source:{network_of(address)}"}
            attack = Attack(name, start, actors, victim, address)
            if name == "slow-extraction":
                attack.note["hours"] = min(SLOW_HOURS, int((end - start).total_seconds() // 3600) - 6)
            self.planned.append(attack)
            self.driver.spawn(script(attack, person), start)
        return self.planned

    def _actor(self, attack: Attack, person: Person | None) -> Actor:
        if person is None:
            return Actor(attack.name, attack.address, truth=attack.truth)
        return Actor(attack.name, attack.address, person.email, person.password, person.totp(),
                     truth=attack.truth)

    def _leaked(self, n: int) -> list[SimPatient]:
        known = [p for p in self.lab.patients.values() if p.nir and p.sites]
        known.sort(key=lambda p: str(p.id))
        return self.rng.sample(known, min(n, len(known)))

    def fast(self, attack: Attack, person: Person) -> Step:
        a = self._actor(attack, person)
        for patient in self._leaked(300):
            assert patient.nir is not None
            block, serial = patient.nir[:10], int(patient.nir[10:13])
            width = self.rng.randint(1, 3)
            for n in range(max(1, serial - width), min(999, serial + width) + 1):
                body = f"{block}{n:03d}"
                nir = body + stdnum_nir.calc_check_digits(body)
                if not (yield from self._find_and_read(a, nir, "/patients/{}/record", 0.4)):
                    return

    def _find_and_read(self, a: Actor, nir: str, path: str, pause: float) -> Step:
        """Search a NIR, then read every patient found (`path` with the id); False once a
        request is refused (locked, revoked): the attacker stops there."""
        r = yield from self.api.act(a, "POST", "/patients/search", {"nir": nir})
        if r is None or r.status_code != 200:
            return False
        yield timedelta(seconds=pause)
        for pid in r.json()["patient_ids"]:
            r = yield from self.api.act(a, "GET", path.format(pid))
            if r is None or r.status_code != 200:
                return False
            yield timedelta(seconds=pause)
        return True

    def slow(self, attack: Attack, person: Person) -> Step:
        a = self._actor(attack, person)
        stop = self.now + timedelta(hours=int(attack.note["hours"]))  # type: ignore[call-overload]
        for patient in self._leaked(SLOW_HOURS * 13):
            if self.now >= stop:
                return
            r = yield from self.api.act(a, "POST", "/patients/search", {"nir": patient.nir})
            if r is None or r.status_code != 200:
                return
            yield timedelta(seconds=self.rng.uniform(5, 30))
            if str(patient.id) in r.json()["patient_ids"]:
                r = yield from self.api.act(a, "GET", f"/patients/{patient.id}/record")
                if r is None or r.status_code != 200:
                    return
            yield timedelta(minutes=self.rng.uniform(4, 6))

    def insider(self, attack: Attack, person: Person) -> Step:
        a = self._actor(attack, person)
        far = sorted((p for p in self.lab.patients.values()
                      if p.sites and person.site not in p.sites and p.account is None),
                     key=lambda p: str(p.id))
        neighbour = self.rng.choice(far)
        r = yield from self.api.act(a, "POST", "/patients/search", neighbour.search(False))
        if r is None or str(neighbour.id) not in r.json().get("patient_ids", ()):
            return
        yield timedelta(seconds=25)
        yield from self.api.act(a, "GET", f"/patients/{neighbour.id}")

    def stuffing(self, attack: Attack, person: Person) -> Step:
        a = Actor(attack.name, attack.address, truth=attack.truth)
        others = sorted(p.email for p in self.lab.staff if p is not person)
        emails = self.rng.sample(others, min(25, len(others)))
        emails += [f"{w}@lab.example" for w in ("contact", "direction", "qualite", "rh", "accueil")]
        self.rng.shuffle(emails)
        emails.insert(min(7, len(emails)), person.email)  # the reused password comes 8th
        attack.note["accounts_tried"] = len(emails)
        for email in emails:
            password = person.password if email == person.email else f"Leaked-{self.rng.randrange(10**8)}"
            r = self.api.call(a, "POST", "/auth/login", {"email": email, "password": password},
                              auth=False)
            if r.status_code == 200:
                attack.note["password_accepted"] = True
                yield timedelta(seconds=3)
                r = self.api.call(a, "POST", "/auth/mfa", {"challenge": r.json()["challenge"],
                                                           "code": f"{self.rng.randrange(10**6):06d}"},
                                  auth=False)
                attack.note["session_opened"] = r.status_code == 200
            retry = r.headers.get("retry-after")
            yield timedelta(seconds=int(retry) + 1 if retry else self.rng.uniform(1, 3))

    def token(self, attack: Attack, person: None) -> Step:
        gateway = self.lab.gateway
        attack.victim = gateway.actor()
        attack.actors = {attack.victim}
        a = Actor(attack.name, attack.address, bearer=gateway.token, service=True,
                  truth=attack.truth)
        for patient in self._leaked(20):
            if not (yield from self._find_and_read(a, str(patient.nir), "/patients/{}", 2)):
                return

    def export(self, attack: Attack, person: Person) -> Step:
        a = self._actor(attack, person)
        r = yield from self.api.act(a, "GET", "/export")  # asked for a step-up, it gives one
        if r is not None and r.status_code == 200:
            last = r.text.strip().rsplit("\n", 1)[-1]
            attack.note["export_last_line"] = last[:200]

    def decoy(self, attack: Attack, person: Person) -> Step:
        a = self._actor(attack, person)
        decoy = self.lab.decoys[0]
        ok = yield from self.api.login(a)
        if not ok:
            return
        yield timedelta(seconds=20)
        r = self.api.call(a, "POST", "/patients/search", decoy.search(False))
        attack.note["sent_at"] = self.api.last_sent
        attack.note["search_status"] = r.status_code
        if r.status_code != 200 or not r.json()["patient_ids"]:
            return
        yield timedelta(seconds=15)
        yield from self.api.act(a, "GET", f"/patients/{r.json()['patient_ids'][0]}")


__all__ = ["LEARNING_DAYS", "Attack", "Attacks"]
