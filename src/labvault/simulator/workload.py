"""The normal laboratory day, role by role, through the API.

A visit flows through the site where it happens: a secretary receives the patient (a search by
NIR or by name and birth date, then the identity; about 15 % are new and registered after the
search misses), a technician of that site samples them a little later (search, the record
unless the patient is new, an order at the site with preliminary results), and a biologist of
that site validates the order hours later (the record, then validation). The analyser gateway
posts orders of its own (search by NIR, identity, order). A patient with an account often reads
their results once validated, mostly in the evening. About 3 % of the staff's work is for
another site (covering a colleague): those reads are the review queue's legitimate share.

Volumes per person and day: a secretary ~30 patients, a technician ~25, a biologist ~40, on
weekday shifts (two shifts per role) and Saturday mornings for a third of them. Lab open
Monday to Saturday; nobody works on Sunday.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from datetime import datetime, time, timedelta
from typing import Any

from labvault.access.principal import Role, local_operator
from labvault.domain.records import ResultStatus
from labvault.simulator.lab import SATURDAY, Lab, Person, SimPatient
from labvault.simulator.runner import Actor, Api, Driver, Step

NEW_PATIENTS = 0.15
CROSS_SITE = 0.03
VOLUME = {Role.SECRETARY: 30, Role.TECHNICIAN: 25, Role.BIOLOGIST: 40}
GATEWAY_SHARE = 0.25  # the gateway's orders, against the technicians'
PATIENT_READS = 0.6  # share of validated orders whose patient (with an account) reads them


def actor_of(person: Person) -> Actor:
    key = "patient" if person.role is Role.PATIENT else "staff"
    return Actor(person.label, person.address, person.email, person.password, person.totp(),
                 day_key=f"{key}:{person.account_id}")


class Workload:
    def __init__(self, lab: Lab, api: Api, driver: Driver, rng: random.Random) -> None:
        self.lab, self.api, self.driver, self.rng = lab, api, driver, rng
        self.actors = {p.account_id: actor_of(p) for p in lab.staff}
        self.gateway = Actor("gateway", lab.gateway.address, bearer=lab.gateway.token,
                             service=True, day_key="service:gateway")
        self.to_sample: dict[str, deque[tuple[datetime, SimPatient]]] = {
            s: deque() for s in lab.sites}
        self.to_validate: dict[str, deque[tuple[datetime, SimPatient, str]]] = {
            s: deque() for s in lab.sites}
        self.patient_actors: dict[Any, Actor] = {}
        self.unlocked: list[tuple[datetime, str]] = []

    @property
    def now(self) -> datetime:
        return self.lab.clock.now()

    # -- the day -----------------------------------------------------------------------------------
    def start_day(self, day: int) -> None:
        weekday = day % 7  # the simulation starts on a Monday
        self.driver.spawn(self.helpdesk(), self.lab.local(day, time(6, 40)))
        if weekday == 6:
            return
        for person in self.lab.staff:
            if weekday == 5 and not person.saturday:
                continue
            begin, end = SATURDAY if weekday == 5 else person.shift
            start, stop = self.lab.local(day, begin), self.lab.local(day, end)
            start += timedelta(minutes=self.rng.uniform(0, 10))
            work = {Role.SECRETARY: self.secretary, Role.TECHNICIAN: self.technician,
                    Role.BIOLOGIST: self.biologist}[person.role]
            self.driver.spawn(work(person, stop), start)
        begin, end = SATURDAY if weekday == 5 else (time(6, 35), time(19, 45))
        self.driver.spawn(self.gateway_day(self.lab.local(day, end)), self.lab.local(day, begin))

    def _count(self, role: Role, stop: datetime) -> int:
        hours = (stop - self.now).total_seconds() / 3600
        return max(1, round(self.rng.gauss(VOLUME[role], VOLUME[role] / 8) * min(1.0, hours / 8)))

    def _times(self, n: int, stop: datetime) -> list[datetime]:
        span = max(60.0, (stop - self.now).total_seconds() - 900)
        return sorted(self.now + timedelta(seconds=self.rng.uniform(0, span)) for _ in range(n))

    def _pick(self, site: str) -> SimPatient:
        rng, pools = self.rng, self.lab.pools
        if rng.random() < CROSS_SITE:
            site = rng.choice([s for s in self.lab.sites if s != site])
        return self.lab.patients[rng.choice(pools[site])]

    def _search(self, a: Actor, patient: SimPatient, by_nir: bool) -> Step:
        r = yield from self.api.act(a, "POST", "/patients/search", patient.search(by_nir))
        return r is not None and r.status_code == 200 and str(patient.id) in r.json()["patient_ids"]

    # -- roles -------------------------------------------------------------------------------------
    def secretary(self, person: Person, stop: datetime) -> Step:
        a, site = self.actors[person.account_id], person.site
        assert site is not None
        for at in self._times(self._count(Role.SECRETARY, stop), stop):
            yield at
            if self.rng.random() < NEW_PATIENTS:
                patient = yield from self._register(a)
            else:
                patient = self._pick(site)
                if not (yield from self._search(a, patient, self.rng.random() < 0.6)):
                    continue
            if patient is None:
                continue
            yield timedelta(seconds=self.rng.uniform(10, 40))
            r = yield from self.api.act(a, "GET", f"/patients/{patient.id}")
            if r is not None and r.status_code == 200:
                ready = self.now + timedelta(minutes=self.rng.uniform(5, 40))
                self.to_sample[site].append((ready, patient))

    def _register(self, a: Actor) -> Step:
        p = self.lab.newcomers.patient()
        body: dict[str, Any] = {"last_name": p.last_name, "first_names": p.first_names,
                                "birth_date": p.birth_date.isoformat(), "sex": p.sex.value,
                                "birth_name": p.birth_name, "nir": p.nir,
                                "birth_place": p.birth_place, "phone": p.phone, "email": p.email}
        if p.address is not None:
            body["address"] = {"line1": p.address.line1, "postal_code": p.address.postal_code,
                               "city": p.address.city}
        patient = SimPatient(p.id, p.nir, p.last_name, p.birth_date)
        r = yield from self.api.act(a, "POST", "/patients/search", patient.search(True))
        if r is None or r.status_code != 200 or r.json()["patient_ids"]:
            return None
        yield timedelta(seconds=self.rng.uniform(60, 180))  # typing the identity in
        r = yield from self.api.act(a, "POST", "/patients", {k: v for k, v in body.items()
                                                             if v is not None})
        if r is None or r.status_code != 201:
            return None
        patient.id = uuid.UUID(r.json()["patient_id"])
        self.lab.patients[patient.id] = patient
        return patient

    def order(self, site: str) -> dict[str, Any]:
        t = self.rng.choice(self.lab.order_templates)
        now = self.now.isoformat()
        return {"lab_finess": site, "sampled_at": now, "requested_at": now,
                "prescriber": t["prescriber"], "lab_file_number": f"S{self.rng.randrange(10**7):07d}",
                "results": [{**r, "status": ResultStatus.PRELIMINARY.value, "observed_at": now}
                            for r in t["results"]]}

    def _enter(self, a: Actor, patient: SimPatient, site: str) -> Step:
        r = yield from self.api.act(a, "POST", f"/patients/{patient.id}/orders", self.order(site))
        if r is not None and r.status_code == 201:
            self.lab.link(patient, site)
            ready = self.now + timedelta(minutes=self.rng.uniform(60, 240))
            self.to_validate[site].append((ready, patient, r.json()["order_id"]))

    def technician(self, person: Person, stop: datetime) -> Step:
        a, site = self.actors[person.account_id], person.site
        assert site is not None
        done, quota = 0, self._count(Role.TECHNICIAN, stop)
        while done < quota and self.now < stop - timedelta(minutes=10):
            queue = self.to_sample[site]
            if not queue or queue[0][0] > self.now:
                yield timedelta(minutes=self.rng.uniform(4, 12))
                continue
            _, patient = queue.popleft()
            done += 1
            new = not patient.sites
            if not (yield from self._search(a, patient, self.rng.random() < 0.7)):
                continue
            yield timedelta(seconds=self.rng.uniform(20, 60))
            if not new:  # a new patient has no earlier results to look at
                yield from self.api.act(a, "GET", f"/patients/{patient.id}/record")
                yield timedelta(seconds=self.rng.uniform(60, 180))
            yield from self._enter(a, patient, site)
            yield timedelta(seconds=self.rng.uniform(60, 300))

    def biologist(self, person: Person, stop: datetime) -> Step:
        a, own = self.actors[person.account_id], person.site
        assert own is not None
        done, quota = 0, self._count(Role.BIOLOGIST, stop)
        while done < quota and self.now < stop - timedelta(minutes=10):
            site = own
            if self.rng.random() < CROSS_SITE:
                site = self.rng.choice([s for s in self.lab.sites if s != own])
            queue = self.to_validate[site]
            if not queue or queue[0][0] > self.now:
                yield timedelta(minutes=self.rng.uniform(5, 15))
                continue
            _, patient, order_id = queue.popleft()
            done += 1
            r = yield from self.api.act(a, "GET", f"/patients/{patient.id}/record")
            if r is None or r.status_code != 200:
                continue
            yield timedelta(seconds=self.rng.uniform(40, 200))
            r = yield from self.api.act(a, "POST",
                                        f"/patients/{patient.id}/orders/{order_id}/validate")
            if r is not None and r.status_code == 200 and patient.account is not None \
                    and self.rng.random() < PATIENT_READS:
                self._patient_reads(patient)
            yield timedelta(seconds=self.rng.uniform(30, 240))

    def _patient_reads(self, patient: SimPatient) -> None:
        assert patient.account is not None
        a = self.patient_actors.setdefault(patient.id, actor_of(patient.account))
        evening = self.rng.random() < 0.7
        hours = self.rng.uniform(18.5, 22.5) if evening else self.rng.uniform(8, 18)
        day = (self.now.astimezone(self.lab.start.tzinfo).date() - self.lab.start.date()).days
        at = self.lab.local(day + self.rng.choice((0, 1, 1)), time(0, 0))
        at = max(at + timedelta(hours=hours), self.now + timedelta(minutes=20))

        def read() -> Step:
            yield from self.api.act(a, "GET", "/me/record")

        self.driver.spawn(read(), at)

    def gateway_day(self, stop: datetime) -> Step:
        techs = len(self.lab.of_role(Role.TECHNICIAN))
        n = round(VOLUME[Role.TECHNICIAN] * techs * GATEWAY_SHARE * min(
            1.0, (stop - self.now).total_seconds() / 3600 / 13))
        a = self.gateway
        for at in self._times(n, stop):
            yield at
            if a.bearer is None:
                continue  # revoked: the helpdesk issues a new one
            site = self.rng.choice(self.lab.sites)
            patient = self.lab.patients[self.rng.choice(self.lab.pools[site])]
            if not patient.nir:
                continue
            r = yield from self.api.act(a, "POST", "/patients/search", {"nir": patient.nir})
            if r is not None and r.status_code == 401:
                a.bearer = None
                self.driver.spawn(self.reissue(), self.now + timedelta(minutes=30))
                continue
            if r is None or str(patient.id) not in r.json().get("patient_ids", ()):
                continue
            r = yield from self.api.act(a, "GET", f"/patients/{patient.id}")
            if r is not None and r.status_code == 200:
                yield from self._enter(a, patient, site)

    def reissue(self) -> Step:
        """The helpdesk gives the gateway a new token after its token was revoked."""
        self.gateway.bearer = self.lab.issue_gateway_token("helpdesk: new gateway token")
        return
        yield

    def helpdesk(self) -> Step:
        """Every morning, accounts that the watcher locked are reviewed and unlocked (the local
        operator unlocks alone); their holders log in afresh."""
        store = self.lab.vault.watch._store
        people = list(self.lab.staff) + [p.account for p in self.lab.patients.values()
                                         if p.account is not None]
        for person in people:
            row = store.account_row(person.account_id)
            if row is not None and row.status == "locked":
                self.lab.vault.watch.unlock(local_operator("helpdesk: unlock after review"),
                                            person.account_id)
                self.unlocked.append((self.now, person.actor))
                a = self.actors.get(person.account_id)
                if a is not None:
                    a.bearer, a.blocked_until = None, None
        return
        yield


__all__ = ["Workload", "actor_of"]
