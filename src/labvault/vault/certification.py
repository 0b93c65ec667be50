"""What the vault states about a migration: its verification and its signed certificate.

Reports are written by the vault from what it holds — the plan registered when the migration
began, the units' outcomes, the counts it kept while comparing — never from a body a caller
hands in. The certificate is built and signed here too, with a context prefix, so the signing
key never signs anything but a migration certificate of this vault.
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from labvault.access.principal import Principal
from labvault.crypto.signing import Signer, public_bytes
from labvault.ingest.base import Parsed, Unit
from labvault.ingest.content import canonical_bytes

if TYPE_CHECKING:
    from labvault.vault.imports import ImportDesk, UnitCheck

CERTIFICATE_KIND = "labvault-migration-certificate"
SIGNING_CONTEXT = b"labvault/migration-certificate/v1\n"
SHOWN = 100


def signed_message(body: dict[str, Any]) -> bytes:
    return SIGNING_CONTEXT + canonical_bytes(body)


class Verification:
    """A verification in progress. Its counts are kept by the vault, not by the caller."""

    def __init__(self, desk: ImportDesk, principal: Principal, migration_id: uuid.UUID,
                 planned: dict[int, int]) -> None:
        self._desk = desk
        self._principal = principal
        self._mid = migration_id
        self._planned = planned  # units per file, from the registered plan
        self._next: dict[int, int] = {}
        self._gap = False
        self._statuses: Counter[str] = Counter()
        self._results = 0
        self._problems: list[dict[str, Any]] = []
        self._report: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Verification(migration={self._mid})"

    def check(self, file_index: int, units: list[Unit]) -> list[UnitCheck]:
        """Reconcile the next units of a file (in order) and count the outcome."""
        if self._report is not None:
            raise RuntimeError("this verification is finished")
        checks = self._desk.reconcile(self._principal, self._mid, file_index, units)
        for unit, check in zip(units, checks, strict=True):
            if unit.seq != self._next.get(file_index, 1):
                self._gap = True
            self._next[file_index] = unit.seq + 1
            self._statuses[check.status] += 1
            if check.status == "match" and isinstance(unit, Parsed):
                self._results += unit.record.result_count()
            if check.status in ("mismatch", "missing") and len(self._problems) < SHOWN:
                self._problems.append({"file": file_index, "position": str(check.position),
                                       "status": check.status, "field": check.detail})
        return checks

    def finish(self) -> dict[str, Any]:
        """Count the extras, check every planned unit was compared, store the report."""
        if self._report is not None:
            return self._report
        last = {f: self._next.get(f, 1) - 1 for f in self._planned}
        covered = not self._gap and all(last[f] == n for f, n in self._planned.items())
        extra = self._desk.extras(self._principal, self._mid, last)
        s = self._statuses
        compared = s["match"] + s["mismatch"] + s["missing"]
        units = sum(s.values())
        self._report = {
            "units": units, "results_compared": self._results,
            "match": s["match"], "mismatch": s["mismatch"], "missing": s["missing"],
            "extra": extra, "quarantined": s["quarantined"], "duplicate": s["duplicate"],
            "erased_since": s["erased"], "covered": covered,
            "match_rate": round(1.0 if compared == 0 else s["match"] / compared, 6),
            "complete": (covered and units > 0 and s["mismatch"] == 0 and s["missing"] == 0
                         and extra == 0),
            "problems": self._problems,
        }
        self._desk._report(self._principal, self._mid, "verify", self._report)
        return self._report


def _last(reports: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    found = [r for r in reports if r["kind"] == kind]
    if not found:
        return None
    r = found[-1]
    body = {k: v for k, v in r["body"].items() if k != "problems"}
    return {"at": r["at"].isoformat(), "by": r["actor"], **body}


def certificate_body(plan: dict[str, Any], reports: list[dict[str, Any]],
                     counts: dict[int, Counter[str]], quarantine: list[tuple[str, str, int]],
                     info: Any, issued_at: datetime, issued_by: str) -> dict[str, Any]:
    units = {k: sum(c[k] for c in counts.values())
             for k in ("new", "stored", "quarantined", "duplicate")}
    read = sum(int(s["units"]) for s in plan["sources"])
    return {
        "kind": CERTIFICATE_KIND,
        "version": 1,
        "migration_id": str(info.id),
        "issued_at": issued_at.isoformat(),
        "issued_by": issued_by,
        "plan_sha256": info.plan_sha256.hex(),
        "planned_at": plan["created_at"],
        "planned_by": plan["created_by"],
        # Attached report files appear by size and digest only: their names are often the
        # patient's.
        "sources": [{"name": s["name"], "size": s["size"], "sha256": s["sha256"],
                     "format": s["format"], "units": s["units"],
                     "attachments": [{"size": a["size"], "sha256": a["sha256"]}
                                     for a in s.get("attachments", [])]}
                    for s in plan["sources"]],
        "runs": [{"at": r["at"].isoformat(), "by": r["actor"]} for r in reports
                 if r["kind"] == "run"],
        "counts": {
            "read": read,
            "stored": units["new"] + units["stored"],
            "patients_created": units["new"],
            "quarantined": units["quarantined"],
            "duplicates": units["duplicate"],
            "not_yet_imported": read - sum(units.values()),
            "adds_up": read == sum(units.values()),
        },
        "reconciliation": _last(reports, "verify"),
        "quarantine": [{"field": f, "reason": r, "units": n} for f, r, n in quarantine],
        "staging": {"deadline": info.staging_deadline.isoformat(),
                    "erasure": _last(reports, "erase")},
    }


def sign_certificate(signer: Signer, body: dict[str, Any]) -> dict[str, Any]:
    return {"certificate": body, "algorithm": "Ed25519", "key_id": signer.key_id,
            "public_key": base64.b64encode(public_bytes(signer.public_key)).decode(),
            "signature": base64.b64encode(signer.sign(signed_message(body))).decode()}


__all__ = ["CERTIFICATE_KIND", "SIGNING_CONTEXT", "Verification", "certificate_body",
           "sign_certificate", "signed_message"]
