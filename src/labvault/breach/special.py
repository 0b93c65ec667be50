"""Special categories of a scope, from the findings sealed beside the records it exposed.

For each listed patient whose results or comments were exposed, the two-byte findings of those
rows are opened with the patient's data key — the text of a comment never is — and only rows
that existed at the patient's last exposure count (a result entered after the thief's read was
not exposed). Identifiers found in an exposed comment add their data categories. Rows stored
before findings existed are counted as unclassified rather than guessed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from labvault.breach import findings
from labvault.breach.scope import totals
from labvault.errors import KeyUnavailable
from labvault.store.breach import BreachStore

if TYPE_CHECKING:
    from labvault.crypto.envelope import FieldCipher
    from labvault.vault.core import Vault

BATCH = 500


def _cutoff(last: str | None) -> datetime | None:
    return datetime.fromisoformat(last).astimezone(UTC) if last else None


def _at(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_special(vault: Vault, store: BreachStore, document: dict[str, Any],
                migration_id: uuid.UUID | None = None) -> None:
    """Fill `special` per patient, widen `categories` by identifiers found in exposed comments,
    and recount the totals with the number of records exposed."""
    from labvault.vault.core import _comment_ref, _result_ref

    listed = {p["id"]: p for p in document["patients"]}
    wanted = [uuid.UUID(pid) for pid, p in listed.items()
              if {"results", "comments"} & set(p["categories"])]
    records = {"results": 0, "comments": 0, "unclassified": 0}
    special: dict[str, set[str]] = {}
    added: dict[str, set[str]] = {}
    it = iter(wanted)
    while chunk := list(islice(it, BATCH)):
        keys = vault._keystore.get_many(chunk)
        ciphers: dict[uuid.UUID, FieldCipher | None] = {}
        for kind, row in store.finding_rows(chunk, migration_id):
            pid = str(row.patient_id)
            p = listed[pid]
            cutoff = _cutoff(p["last"])
            if kind not in p["categories"] or (cutoff and _at(row.created_at) > cutoff):
                continue
            records[kind] += 1
            if row.findings is None:
                records["unclassified"] += 1
                continue
            if row.patient_id not in ciphers:
                try:
                    ciphers[row.patient_id] = vault._cipher_for(row.patient_id,
                                                                keys.get(row.patient_id))
                except KeyUnavailable:  # erased since: nothing left to expose or to open
                    ciphers[row.patient_id] = None
            cipher = ciphers[row.patient_id]
            if cipher is None:
                continue
            if kind == "results":
                ref = _result_ref(row.id, row.patient_id, row.order_id, row.position)
                table = "result"
            else:
                ref = _comment_ref(row.id, row.patient_id, row.order_id, row.result_id,
                                   row.position)
                table = "comment"
            cats, kinds = findings.decode(cipher.open(table, "findings", ref, row.findings))
            special.setdefault(pid, set()).update(c.value for c in cats)
            added.setdefault(pid, set()).update(findings.IDENTIFIER_CATEGORIES[k] for k in kinds)
    for pid, p in listed.items():
        p["special"] = sorted(special.get(pid, ()))
        p["categories"] = sorted(set(p["categories"]) | added.get(pid, set()))
    document["totals"] = {**totals(document["patients"]), "records": records}


__all__ = ["add_special"]
