"""How long each kind of record is kept, which records a policy sends to erasure, and the signed
certificate that states what a run erased. Pure (no I/O).

The terms come from ``[retention]`` of ``breach.toml`` (`labvault.breach.config`), in whole years
(staging areas in days). Each is counted from the record's clinical date: an order's sampling
time, else its request time, else when the row was stored; a result's observation time, else
its order's date; a comment and an attached report take the date of what they are attached to.

What the defaults rest on (checked against the texts cited; everything else is the DPO's call):

- ``results_years = orders_years = comments_years = attachments_years = 10``. Code de la santé
  publique, art. L. 1142-28 (version of loi n° 2016-1917 of 29 December 2016): actions against
  health professionals "à l'occasion d'actes de prévention, de diagnostic ou de soins" are time
  barred ten years after the consolidation of the damage. The Syndicat des biologistes
  (css.sdbio.eu, "Les LBM doivent conserver les comptes rendus d'examens pendant 10 ans") reads
  it as a ten-year archiving term for a laboratory's reports (patient, prescriber and partial
  copies, traces of delivery), where the GBEA (arrêté du 26 novembre 1999) had five, and states
  twenty years in public establishments and for assisted reproduction. The ten years start at
  the consolidation of a damage, which may come long after the exam: the exam date is a floor,
  not a proof; the DPO sets the term the laboratory can justify.
- ``inactive_patient_years = 10``: a patient with no order and no result within the term is
  erased whole (identity included). By analogy with R. 1112-7 below (twenty years after the
  last stay, for a health establishment); no text fixed it for a laboratory that we verified:
  to be set by the laboratory's DPO.
- ``keep_until_age = 28``: nothing of a patient is erased before their 28th birthday. This is
  R. 1112-7's rule for an establishment's medical file (kept twenty years from the last stay or
  consultation, extended to the holder's 28th birthday, ten years after a death within ten
  years of the last visit); applied here as a prudent floor for minors, to be confirmed by the
  DPO (0 disables it). Deaths are not recorded in labvault, so that part is not applied.
- ``genetic_years = 30``: the reports of genetic examinations, which an authorised laboratory
  keeps thirty years (CSP art. R. 1131-20). A result is genetic when its findings, classified
  and sealed when it was stored (`labvault.breach.classify`: the LOINC codes and label words
  of genetic tests), say so; its comments and attached reports, and the order that holds it,
  are kept as long, and its patient is not erased whole as inactive meanwhile. A result
  stored before classification existed has no findings: it is kept as if it were genetic
  (erasing too early cannot be undone) and counted ``unclassified`` in the plan until
  ``labvault breach classify-stored`` has run.
- ``staging_days = 30``: the migration staging default (``docs/migration.md``).

The erasure certificate is canonical JSON (sorted keys, no spaces) signed with the vault's
Ed25519 key after a context prefix of its own, so the key never signs a certificate of one kind
that could pass for another. It lists internal ids only. `check` raises `InvalidSignature`.

Not covered by these terms: hospital laboratories (twenty years, R. 1112-7); the arrêté du
5 août 2010 was not checked.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from labvault.access.principal import Principal
from labvault.crypto.signing import Signer, check_signed, public_bytes
from labvault.errors import ConfigurationError

YEAR_TERMS = ("results_years", "orders_years", "comments_years", "attachments_years",
              "genetic_years", "inactive_patient_years")
INACTIVE = "inactive"
CATEGORIES = ("orders", "results", "comments", "attachments")
CERTIFICATE_KIND = "labvault-erasure-certificate"
SIGNING_CONTEXT = b"labvault/erasure-certificate/v1\n"


def years_before(at: datetime, years: int) -> datetime:
    """The same instant `years` calendar years earlier (29 February becomes the 28th)."""
    try:
        return at.replace(year=at.year - years)
    except ValueError:
        return at.replace(year=at.year - years, day=28)


def birthday(born: date, age: int) -> date:
    try:
        return born.replace(year=born.year + age)
    except ValueError:
        return born.replace(year=born.year + age, day=28)


def aware(at: datetime) -> datetime:
    """Stored times without an offset are UTC (SQLite keeps none; legacy imports may lack one)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    results_years: int = 10
    orders_years: int = 10
    comments_years: int = 10
    attachments_years: int = 10
    genetic_years: int = 30
    inactive_patient_years: int = 10
    keep_until_age: int = 28
    staging_days: int = 30

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> RetentionPolicy:
        """The ``[retention]`` section; a term that is not a whole number in range is refused,
        naming the setting. Terms missing from the section take the class defaults."""
        values: dict[str, int] = {}
        defaults = {f.name: f.default for f in fields(cls)}
        for name in (*YEAR_TERMS, "keep_until_age", "staging_days"):
            value = section.get(name, defaults[name])
            low = 0 if name == "keep_until_age" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 200:
                raise ConfigurationError(f"breach.toml: retention.{name} must be a whole number "
                                         f"from {low} to 200")
            values[name] = value
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in (*YEAR_TERMS, "keep_until_age",
                                                       "staging_days")}

    def staging_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.staging_days)


# -- what a scan knows of a patient (ids and dates; no other value) ----------------------------
@dataclass(slots=True)
class ResultFacts:
    id: uuid.UUID
    at: datetime
    genetic: bool = False  # by its sealed findings (or unclassified: kept as genetic)
    comments: list[uuid.UUID] = field(default_factory=list)
    attachments: list[uuid.UUID] = field(default_factory=list)


@dataclass(slots=True)
class OrderFacts:
    id: uuid.UUID
    at: datetime
    results: list[ResultFacts] = field(default_factory=list)
    comments: list[uuid.UUID] = field(default_factory=list)  # on the order itself


@dataclass(slots=True)
class PatientFacts:
    id: uuid.UUID
    created_at: datetime
    birth_date: date | None
    orders: list[OrderFacts] = field(default_factory=list)
    unclassified: int = 0  # results stored before classification (kept as genetic)


@dataclass(frozen=True, slots=True)
class Expired:
    """A living patient's records past their term (internal ids only)."""

    patient_id: uuid.UUID
    orders: tuple[uuid.UUID, ...] = ()
    results: tuple[uuid.UUID, ...] = ()
    comments: tuple[uuid.UUID, ...] = ()
    attachments: tuple[uuid.UUID, ...] = ()

    def __len__(self) -> int:
        return len(self.orders) + len(self.results) + len(self.comments) + len(self.attachments)

    def as_dict(self) -> dict[str, Any]:
        return {"patient": str(self.patient_id),
                **{kind: sorted(str(i) for i in getattr(self, kind))
                   for kind in ("orders", "results", "comments", "attachments")}}


def expiry(policy: RetentionPolicy, facts: PatientFacts, now: datetime) -> str | Expired | None:
    """`INACTIVE` (erase the whole patient), the records past their term, or None."""
    if (policy.keep_until_age and facts.birth_date is not None
            and now.date() < birthday(facts.birth_date, policy.keep_until_age)):
        return None
    dates = [o.at for o in facts.orders] + [r.at for o in facts.orders for r in o.results]
    last = max(dates) if dates else facts.created_at
    cut_genetic = years_before(now, policy.genetic_years)
    # A genetic report still within its term keeps its patient (identity included): erasing
    # the patient whole would erase the report with them.
    genetic_kept = any(r.genetic and r.at >= cut_genetic for o in facts.orders for r in o.results)
    if last < years_before(now, policy.inactive_patient_years) and not genetic_kept:
        return INACTIVE
    cut_results, cut_orders, cut_comments, cut_files = (
        years_before(now, y) for y in (policy.results_years, policy.orders_years,
                                       policy.comments_years, policy.attachments_years))
    orders, results, comments, files = [], [], [], []
    for o in facts.orders:
        # A genetic report, its comments and attached files follow the longer of the terms.
        gone = {r.id for r in o.results
                if r.at < (min(cut_results, cut_genetic) if r.genetic else cut_results)}
        results += sorted(gone)
        # An order is kept while it holds a result that is kept.
        order_gone = o.at < cut_orders and all(r.id in gone for r in o.results)
        if order_gone:
            orders.append(o.id)
        # The order's own comments (an indication, say) go with a genetic report it holds.
        genetic_order = cut_genetic if any(r.genetic for r in o.results) else None
        if order_gone or o.at < _earlier(cut_comments, genetic_order):
            comments += o.comments
        for r in o.results:
            parent_gone = order_gone or r.id in gone
            kept_from = cut_genetic if r.genetic else None
            if parent_gone or r.at < _earlier(cut_comments, kept_from):
                comments += r.comments
            if parent_gone or r.at < _earlier(cut_files, kept_from):
                files += r.attachments
    found = Expired(facts.id, tuple(orders), tuple(results), tuple(comments), tuple(files))
    return found if len(found) else None


def _earlier(cut: datetime, genetic: datetime | None) -> datetime:
    """The cut-off of a record under its own term and, for a genetic result's, the genetic one:
    whichever keeps it longer (the earlier date)."""
    return cut if genetic is None else min(cut, genetic)


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """What a policy sends to erasure now: internal ids, never a value."""

    at: datetime
    policy: RetentionPolicy
    patients: tuple[uuid.UUID, ...]  # inactive past the term: erased whole
    records: tuple[Expired, ...]  # records past their term, of patients still active
    staging: tuple[uuid.UUID, ...]  # migrations whose staging area is past its term
    unreadable: tuple[uuid.UUID, ...] = ()  # patients the scan could not open (a re-key pending)
    unclassified: int = 0  # results without findings, kept as if genetic

    def counts(self) -> dict[str, int]:
        return {"patients": len(self.patients), "rekeyed_patients": len(self.records),
                **{k: sum(len(getattr(e, k)) for e in self.records) for k in CATEGORIES},
                "staging_areas": len(self.staging), "unreadable": len(self.unreadable),
                "unclassified_results": self.unclassified}

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "policy": self.policy.as_dict(), "counts": self.counts(),
                "patients": [str(p) for p in self.patients],
                "records": [e.as_dict() for e in self.records],
                "staging": [str(m) for m in self.staging],
                "unreadable": [str(p) for p in self.unreadable]}


# -- the certificate ------------------------------------------------------------------------------
def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_message(body: dict[str, Any]) -> bytes:
    return SIGNING_CONTEXT + canonical(body)


def certificate_body(principal: Principal, plan: RetentionPlan, audit_head: tuple[int, bytes],
                     erased: list[dict[str, Any]], rekeyed: list[dict[str, Any]],
                     staging: list[dict[str, Any]], resumed: list[str],
                     skipped: list[dict[str, str]]) -> dict[str, Any]:
    """What a run did: patients erased whole, records crypto-shredded (with the key versions
    destroyed and drawn), staging areas erased, what was left for the next run, and the audit
    position that holds the run's events."""
    return {
        "kind": CERTIFICATE_KIND, "version": 1, "run_at": plan.at.isoformat(),
        "issued_by": principal.actor_id, "role": str(principal.role),
        "purpose": principal.purpose, "policy": plan.policy.as_dict(),
        "patients_erased": erased, "records_erased": rekeyed, "staging_erased": staging,
        "rekeys_resumed": resumed, "skipped": skipped,
        "counts": {"patients": len(erased), "rekeyed_patients": len(rekeyed),
                   **{k: sum(len(r[k]) for r in rekeyed) for k in CATEGORIES},
                   "staging_areas": len(staging), "skipped": len(skipped)},
        "audit": {"up_to_seq": audit_head[0], "hash": audit_head[1].hex()},
    }


def signed_document(signer: Signer, body: dict[str, Any], signature: bytes,
                    certificate_id: int) -> dict[str, Any]:
    return {"id": certificate_id, "certificate": body, "algorithm": "Ed25519",
            "key_id": signer.key_id,
            "public_key": base64.b64encode(public_bytes(signer.public_key)).decode(),
            "signature": base64.b64encode(signature).decode()}


def check(document: dict[str, Any], trusted: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """Verify an erasure certificate; return its body. Raises `InvalidSignature`.

    With `trusted` (the lab's published key, `labvault keys public`) it must be signed by that
    key; without, only its integrity under the key it embeds is checked.
    """
    return check_signed(document, "certificate", (CERTIFICATE_KIND,), signed_message,
                        "erasure certificate", trusted)


__all__ = ["CATEGORIES", "CERTIFICATE_KIND", "INACTIVE", "SIGNING_CONTEXT", "Expired", "OrderFacts",
           "PatientFacts", "ResultFacts", "RetentionPlan", "RetentionPolicy", "aware", "birthday",
           "canonical", "certificate_body", "check", "expiry", "signed_document", "signed_message",
           "years_before"]
