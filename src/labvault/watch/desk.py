"""The watch desk (`vault.watch`): starting the watcher, alerts, unlocking, decoy patients.

Reading alerts needs `watch:alert:read` (the DPO, admins), acknowledging `watch:alert:ack`
(the DPO); both are audited like any other access. An acknowledgement carries a reason from a
fixed list, never free text: a note typed in a hurry would end up holding a patient's name in
clear. Unlocking an account locked by the automatic response needs two people: an admin and the
DPO each ask (`access:account:unlock`), the second request unlocks, and the account's next call
needs a fresh second factor; its open critical alerts are acknowledged as ``unlocked`` and the
rules forget its past so that the reads that locked it do not lock it again.

Decoys (honeytokens) are synthetic patients stored through the vault like any other: they are
in every index and every list. Their identifiers come from a range never assigned (INSEE
commune numbers 990–998 exist in no department, so no real NIR carries them) and their e-mail
addresses are at a domain the laboratory monitors: mail sent to one is phishing built from
leaked data. Only a keyed tag of each decoy's id is stored (``honeytoken``), so the database
does not say which patients are decoys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

from labvault.access.permissions import Permission
from labvault.access.principal import Principal, Role
from labvault.crypto.blind import BlindIndex
from labvault.domain.records import Patient, PatientRecord
from labvault.errors import AccessDenied, InvalidRecord, NotFound
from labvault.store.alerts import AlertStore
from labvault.watch.alerts import Alert, Finding, Severity
from labvault.watch.config import WatchConfig
from labvault.watch.engine import DECOY_KEY, Watcher, alert_of
from labvault.watch.notify import Notifier

if TYPE_CHECKING:
    from labvault.vault.core import Vault
    from labvault.watch.channels import Channel

ADDRESS = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}")
ACK_REASONS = ("confirmed", "false-positive", "investigating", "duplicate", "unlocked")
DEFAULT_DECOY_DOMAIN = "decoy.invalid"


class WatchDesk:
    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._store = AlertStore(vault._records.engine)
        self.watcher: Watcher | None = None

    def __repr__(self) -> str:
        return f"WatchDesk(watching={self.watcher is not None})"

    def start(self, config: WatchConfig | None = None, *,
              channels: dict[str, Channel] | None = None, background: bool = True) -> Watcher:
        """Watch every event this vault appends from now on (in process)."""
        if self.watcher is not None:
            return self.watcher
        config = config or WatchConfig()
        notifier = Notifier(self._store, channels or {}, config, self._vault._clock,
                            background=background)
        self.watcher = Watcher(self._vault, config, notifier=notifier)
        self._vault._audit.listeners.append(self.watcher.observe)  # type: ignore[attr-defined]
        return self.watcher

    def stop(self) -> None:
        if self.watcher is not None:
            listeners = self._vault._audit.listeners  # type: ignore[attr-defined]
            if self.watcher.observe in listeners:
                listeners.remove(self.watcher.observe)
            if self.watcher.notifier is not None:
                self.watcher.notifier.close()
                for channel in self.watcher.notifier.channels.values():
                    close = getattr(channel, "close", None)
                    if close is not None:
                        close()
            self.watcher = None

    def _gate(self, principal: Principal, permission: Permission, **detail: Any) -> None:
        self._vault._authorize(principal, permission)
        self._vault._event(principal, permission, "allowed", **detail)

    # -- alerts ------------------------------------------------------------------------------------
    def alerts(self, principal: Principal, *, status: str | None = None,
               limit: int = 100) -> list[Alert]:
        self._gate(principal, Permission.ALERT_READ, what="list", status=status, limit=limit)
        return [alert_of(r) for r in self._store.alerts(status=status, limit=limit)]

    def alert(self, principal: Principal, alert_id: uuid.UUID) -> tuple[Alert, list[dict[str, Any]]]:
        """An alert and its delivery attempts."""
        self._gate(principal, Permission.ALERT_READ, what="show", alert_id=str(alert_id))
        row = self._store.alert(alert_id)
        if row is None:
            raise NotFound("alert", alert_id)
        deliveries = [{"level": d.level, "channel": d.channel, "at": d.at.isoformat(),
                       "outcome": d.outcome, "reason": d.reason}
                      for d in self._store.deliveries(alert_id)]
        return alert_of(row), deliveries

    def acknowledge(self, principal: Principal, alert_id: uuid.UUID, reason: str) -> Alert:
        if reason not in ACK_REASONS:
            raise InvalidRecord("reason", f"one of {', '.join(ACK_REASONS)}")
        self._gate(principal, Permission.ALERT_ACK, what="ack", alert_id=str(alert_id),
                   reason=reason)
        row = self._store.alert(alert_id)
        if row is None:
            raise NotFound("alert", alert_id)
        if _about(row.actor, principal.actor_id):  # nobody closes an alert about themselves
            self._vault._event(principal, Permission.ALERT_ACK, "denied", alert_id=str(alert_id),
                               reason="own alert")
            raise AccessDenied(principal.actor_id, principal.role, Permission.ALERT_ACK)
        self._ack(row, principal.actor_id, reason)
        return alert_of(self._store.alert(alert_id))

    def _ack(self, row: Any, by: str, reason: str) -> None:
        # The dedup key is freed: the same pattern seen again is a new alert, with its response.
        if self._store.acknowledge(row.id, by, self._vault._clock.now(), reason):
            self._store.update(row.id, dedup_key=f"{row.dedup_key[:250]}|ack:{row.id.hex}")

    # -- unlocking ---------------------------------------------------------------------------------
    def unlock(self, principal: Principal, account_id: uuid.UUID) -> bool:
        """Ask to unlock a locked account; True once it is unlocked (admin and DPO asked)."""
        self._vault._authorize(principal, Permission.ACCOUNT_UNLOCK)
        row = self._store.account_row(account_id)
        if row is None or row.status != "locked":
            self._vault._event(principal, Permission.ACCOUNT_UNLOCK, "invalid",
                               account_id=str(account_id))
            raise InvalidRecord("account_id", "no locked account has this id")
        asked = dict(r.split("=", 1) for r in (row.unlock_requests or "").split(",") if r)
        if principal.actor_id in asked.values() or _about(f"account:{account_id}",
                                                          principal.actor_id):
            self._vault._event(principal, Permission.ACCOUNT_UNLOCK, "denied",
                               account_id=str(account_id), reason="asked already")
            raise AccessDenied(principal.actor_id, principal.role, Permission.ACCOUNT_UNLOCK)
        role = "dpo" if principal.role is Role.DPO else "admin"
        asked[role] = principal.actor_id
        done = principal.role is Role.LOCAL_OPERATOR or {"admin", "dpo"} <= set(asked)
        self._vault._event(principal, Permission.ACCOUNT_UNLOCK, "allowed",
                           account_id=str(account_id), unlocked=done, requested_by=sorted(asked))
        now = self._vault._clock.now()
        self._store.unlock_request(account_id, ",".join(f"{k}={v}" for k, v in sorted(asked.items())),
                                   done, now)
        if done:
            actor = f"account:{account_id}"
            for alert in self._store.alerts(status="open", limit=10_000):
                if alert.actor.startswith(actor) and alert.response == "locked":
                    self._ack(alert, principal.actor_id, "unlocked")
            if self.watcher is not None:
                self.watcher.forget(actor)
        return done

    # -- decoys ------------------------------------------------------------------------------------
    def seed_decoys(self, principal: Principal, count: int, *,
                    mail_domain: str = DEFAULT_DECOY_DOMAIN, seed: int | None = None) -> list[str]:
        """Store `count` decoy patients; the contacts to monitor (their e-mail addresses)."""
        from labvault.synthetic import SyntheticLab

        self._vault._authorize(principal, Permission.HONEYTOKEN_MANAGE)
        if not 1 <= count <= 10_000:
            raise InvalidRecord("count", "between 1 and 10000")
        lab = SyntheticLab(seed if seed is not None else secrets.randbits(64), results_per_patient=4)
        # The lab's own sites on the decoys' orders: a site nobody works at would give them away.
        sites = self._store.known_sites() or list(lab.lab_finess)
        records = [_decoy(r, mail_domain, sites) for r in lab.records(count)]
        self._vault._event(principal, Permission.HONEYTOKEN_MANAGE, "allowed", count=count)
        # Stored like a registration: the create event must not say "decoys" by its purpose or
        # share the seeding's request id; the decoy table keeps only the day.
        self._vault.put_patients(dataclasses.replace(
            principal, purpose="patient registration", request_id=uuid.uuid4().hex), records)
        index, now = self._decoy_index(), self._vault._clock.now()
        self._store.add_decoys([(index.compute(str(r.id)), _contact_tag(index, r.patient.email))
                                for r in records],
                               now.replace(hour=0, minute=0, second=0, microsecond=0),
                               principal.actor_id)
        if self.watcher is not None:
            self.watcher.facts.refresh()
        return [r.patient.email for r in records if r.patient.email]

    def index_sites(self, principal: Principal, *, batch_size: int = 200,
                    progress: Callable[[int], None] | None = None) -> int:
        """Link every stored patient to the lab sites of its orders (`patient_site`), for a
        vault whose patients were stored before those links existed: it opens each order's
        site (an audited bulk read of orders). How many links were added or confirmed."""
        from labvault import codec
        from labvault.store.records import RowBatch
        from labvault.vault.core import _order_ref

        vault = self._vault
        vault._authorize(principal, Permission.PATIENT_EXPORT)
        decode = codec.ORDER["lab_finess"][1]
        links = 0
        for ids in vault._records.iter_ids(batch_size):
            vault._event(principal, Permission.PATIENT_EXPORT, "allowed", ids, ("orders",),
                         what="care-site index")
            keys = vault._keystore.get_many(ids)
            batch, ciphers = RowBatch(), {}
            for o in vault._records.orders_of(ids):
                if o.patient_id not in keys:
                    continue  # erased meanwhile
                cipher = ciphers.get(o.patient_id)
                if cipher is None:
                    cipher = ciphers[o.patient_id] = vault._cipher_for(o.patient_id,
                                                                       keys[o.patient_id])
                batch.sites.add((o.patient_id, decode(cipher.open(
                    "lab_order", "lab_finess", _order_ref(o.id, o.patient_id, o.position),
                    o.lab_finess))))
            vault._records.insert(batch)
            links += len(batch.sites)
            if progress:
                progress(len(ids))
        return links

    def _decoy_index(self) -> BlindIndex:
        return BlindIndex(DECOY_KEY, self._vault._keys.index_key(DECOY_KEY))

    def report_mail(self, principal: Principal, message: bytes,
                    watcher: Watcher | None = None) -> list[Alert]:
        """A message that reached the laboratory's mail (piped by its mail server): if it was
        sent to a decoy's monitored address, someone holds this vault's data and uses it —
        a critical alert naming the decoy's tag, when it was seeded and the sender's domain.
        Nothing of the message is stored."""
        self._vault._authorize(principal, Permission.HONEYTOKEN_MANAGE)
        # Every address-like string of the raw headers counts, parsed or not: a message built
        # to break the parser must not slip past the check.
        head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("latin-1")
        recipients = {a.lower() for a in ADDRESS.findall(head)}
        sender_domain, digest = "unknown", hashlib.sha256(message).hexdigest()
        try:
            parsed = BytesParser(policy=policy.default).parsebytes(message, headersonly=True)
            recipients |= {addr.lower() for _, addr in getaddresses(
                [str(v) for h in ("To", "Cc", "Delivered-To", "X-Original-To")
                 for v in parsed.get_all(h, [])]) if "@" in addr}
            sender = (getaddresses([str(parsed.get("From", ""))]) or [("", "")])[0][1]
            if "@" in sender:
                sender_domain = re.sub(r"[^a-z0-9.-]", "", sender.rsplit("@", 1)[-1].lower())[
                    :100] or "unknown"
            if parsed.get("Message-ID"):
                digest = hashlib.sha256(str(parsed["Message-ID"]).encode()).hexdigest()
        except Exception:  # noqa: BLE001, S110 - a malformed message is checked on its raw addresses
            pass
        index, hits = self._decoy_index(), []
        for addr in sorted(recipients):
            decoy = self._store.decoy_of_contact(_contact_tag(index, addr) or b"")
            if decoy is not None:
                hits.append(decoy.hex()[:12])
        self._vault._event(principal, Permission.HONEYTOKEN_MANAGE, "allowed", what="report-mail",
                           decoys=len(hits))
        if not hits:
            return []
        watcher = watcher or self.watcher or Watcher(self._vault)
        finding = Finding(
            "decoy-contact", Severity.CRITICAL, f"external:{sender_domain}", digest[:32],
            f"a message from {sender_domain} reached the monitored address of {len(hits)} decoy "
            "patient(s): data of this vault, or of a copy of it, is in someone's hands and is "
            "used to write to patients", {"decoys": hits, "sender_domain": sender_domain,
                                          "message": digest[:16]})
        alert = watcher.raise_finding(finding, self._vault._clock.now())
        return [alert] if alert is not None else []


def _about(actor: str, caller: str) -> bool:
    """Whether an alert's actor is the caller's own account (or one of its tokens)."""
    own = caller.split("/", 1)[0]
    return own.startswith("account:") and actor.split("/", 1)[0] == own


def _contact_tag(index: BlindIndex, email: str | None) -> bytes | None:
    return index.compute(f"contact:{email.strip().lower()}") if email else None


def _decoy(record: PatientRecord, mail_domain: str, sites: list[str]) -> PatientRecord:
    """A synthetic record turned decoy: a birth commune no real NIR carries, a monitored
    e-mail address (a random local part, so decoys cannot be told apart by their address)."""
    from stdnum.fr import nir as stdnum_nir

    from labvault.domain.records import IdentityStatus, Ins, InsOid

    p: Patient = record.patient
    place = (p.birth_place or "75056")[:2]
    if not place.isdigit() or place in ("97", "98", "99"):
        place = "75"
    place += f"99{secrets.randbelow(9)}"
    body = f"{1 if p.sex.value == 'M' else 2}{p.birth_date.year % 100:02d}{p.birth_date.month:02d}"
    body += place + f"{secrets.randbelow(999) + 1:03d}"
    nir = body + stdnum_nir.calc_check_digits(body)
    ins = Ins(matricule=nir, oid=InsOid.TEST_NIR,
              status=p.ins.status if p.ins else IdentityStatus.PROVISIONAL)
    local = f"{secrets.token_hex(3)}.{secrets.token_hex(2)}"
    patient = dataclasses.replace(p, birth_place=place, nir=nir, ins=ins,
                                  email=f"{local}@{mail_domain}")
    orders = tuple(dataclasses.replace(o, lab_finess=sites[secrets.randbelow(len(sites))])
                   for o in record.orders)
    return dataclasses.replace(record, patient=patient, orders=orders)


__all__ = ["ACK_REASONS", "WatchDesk"]
