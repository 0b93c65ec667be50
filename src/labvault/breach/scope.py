"""The scope of a breach, from the audit log: which patients, which of their data, by whom.

Selectors narrow the log's allowed reads (identity, record, export, search hits) to what the
incident concerns: an actor (an account, with its tokens), one API token, a source address or
network, a time window. Every selected event names the internal ids it returned and the field
categories it touched; per patient they become the data categories exposed:

=============== ==========================================================================
event category  data categories exposed
=============== ==========================================================================
identifiers     membership (a search hit says the person is a patient of the laboratory)
identity        identity
administrative  contact, nir, insurance
orders          prescriber, orders
results         results
comments        comments
attachments     attachments
=============== ==========================================================================

The scope is reproducible: it is computed over the log up to a position (the head when it is
first computed), and names that position and the chain hash there, so the same selectors over
the same log give the same document, byte for byte. The document is canonical JSON (sorted
keys, patients sorted by id) and is signed with the vault's Ed25519 key: a regulator or a court
can check that the list they hold is the one labvault computed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from labvault.errors import InvalidRecord

SCOPED_ACTIONS = ("vault:patient:read", "vault:result:read", "vault:patient:export",
                  "vault:patient:search")
CATEGORY_MAP: dict[str, tuple[str, ...]] = {
    "identifiers": ("membership",),
    "identity": ("identity",),
    "administrative": ("contact", "nir", "insurance"),
    "orders": ("prescriber", "orders"),
    "results": ("results",),
    "comments": ("comments",),
    "attachments": ("attachments",),
}
DOCUMENT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Selectors:
    """What an incident concerns; at least one of actor, token, source is required."""

    actor: str | None = None  # account:<id> (its tokens included) or an exact actor
    token: str | None = None  # an API token's id
    source: str | None = None  # an address or a network (CIDR)
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if not (self.actor or self.token or self.source):
            raise InvalidRecord("selectors", "name an actor, a token or a source")
        if self.token is not None:
            try:
                uuid.UUID(self.token)
            except ValueError:
                raise InvalidRecord("token", "not a token id") from None
        if self.source is not None:
            try:
                ipaddress.ip_network(self.source, strict=False)
            except ValueError:
                raise InvalidRecord("source", "not an address or a network") from None
        if self.since and self.until and self.since >= self.until:
            raise InvalidRecord("since", "the window must end after it starts")

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in asdict(self).items() if v is not None}


def _source_matches(network: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
                    source: str) -> bool:
    if network is None:
        return True
    try:
        return ipaddress.ip_address(source) in network
    except ValueError:
        return False


def compute(rows: Iterable[Any], selectors: Selectors, up_to_seq: int,
            head_hash: bytes) -> dict[str, Any]:
    """The scope document of the selected events (rows of the audit log, in order)."""
    network = (ipaddress.ip_network(selectors.source, strict=False)
               if selectors.source is not None else None)
    token_suffix = f"/token:{selectors.token}" if selectors.token else None
    patients: dict[str, dict[str, Any]] = {}
    events = 0
    actors: set[str] = set()
    for r in rows:
        if token_suffix is not None and not r.actor.endswith(token_suffix):
            continue
        if not _source_matches(network, r.source):
            continue
        ids = json.loads(r.patient_ids)
        if not ids:
            continue
        events += 1
        actors.add(r.actor)
        exposed = {c for cat in (r.categories or "").split(",") if cat
                   for c in CATEGORY_MAP.get(cat, (cat,))}
        at = (r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)).isoformat()
        for hex_id in ids:
            pid = str(uuid.UUID(hex_id))
            p = patients.get(pid)
            if p is None:
                p = patients[pid] = {"categories": set(), "events": 0, "first": at, "last": at}
            p["categories"] |= exposed
            p["events"] += 1
            p["last"] = at
    listed = [{"id": pid, "categories": sorted(p["categories"]), "events": p["events"],
               "first": p["first"], "last": p["last"]} for pid, p in sorted(patients.items())]
    totals: dict[str, int] = {}
    for p in listed:
        for c in p["categories"]:
            totals[c] = totals.get(c, 0) + 1
    return {"version": DOCUMENT_VERSION, "selectors": selectors.as_dict(),
            "audit": {"up_to_seq": up_to_seq, "chain_hash": head_hash.hex()},
            "actors": sorted(actors), "events": events, "patients": listed,
            "totals": {"patients": len(listed), "by_category": dict(sorted(totals.items()))}}


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def digest(document: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical(document)).digest()


__all__ = ["CATEGORY_MAP", "SCOPED_ACTIONS", "Selectors", "canonical", "compute", "digest"]
