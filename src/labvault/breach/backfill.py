"""Findings for records stored before results and comments were classified at storage.

A vault upgraded from an earlier version holds rows without findings; a scope counts them as
unclassified. `classify_stored` opens those patients' records once, classifies them and seals
the findings beside each row. It decrypts records, so it is the DPO's act, audited per batch
with the patients it opened; rows that have findings are left as they are, so it can be run
again after an interruption.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from labvault import codec
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.breach import findings
from labvault.errors import KeyUnavailable
from labvault.store.engine import guarded
from labvault.store.tables import comment, result

if TYPE_CHECKING:
    from labvault.vault.core import Vault


def _unclassified(vault: Vault, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    found: set[uuid.UUID] = set()
    with guarded("reading findings"), vault._records.engine.connect() as conn:
        for table in (result, comment):
            q = select(table.c.patient_id).where(table.c.patient_id.in_(ids),
                                                 table.c.findings.is_(None)).distinct()
            found.update(conn.execute(q).scalars())
    return sorted(found)


def classify_stored(vault: Vault, principal: Principal,
                    progress: Callable[[int], None] | None = None) -> int:
    """Seal findings on every row that has none; returns how many rows were classified."""
    from labvault.vault.core import _comment_ref, _open, _result_ref

    vault._authorize(principal, Permission.BREACH_MANAGE)
    done = 0
    for ids in vault._records.iter_ids(200):
        todo = _unclassified(vault, ids)
        if todo:
            vault._event(principal, Permission.BREACH_MANAGE, "allowed", todo,
                         ("results", "comments"), what="classify-stored")
        updates: list[tuple[object, uuid.UUID, object]] = []
        for pid in todo:
            rows = vault._records.load(pid, with_results=True)
            try:
                cipher = vault._cipher_for(pid, vault._keystore.get(pid))
            except KeyUnavailable:  # erased meanwhile
                continue
            for r in rows.results if rows is not None else ():
                if r.findings is None:
                    ref = _result_ref(r.id, pid, r.order_id, r.position)
                    f = _open(cipher, "result", ref, r, codec.RESULT)
                    updates.append((result, r.id, cipher.seal("result", "findings", ref,
                                    findings.of_result(f["code_system"], f["code"],
                                                       f["label"]))))
            for c in rows.comments if rows is not None else ():
                if c.findings is None:
                    ref = _comment_ref(c.id, pid, c.order_id, c.result_id, c.position)
                    text = cipher.open("comment", "text", ref, c.text).decode("utf-8")
                    updates.append((comment, c.id, cipher.seal("comment", "findings", ref,
                                                               findings.of_comment(text))))
        if updates:
            with guarded("storing findings"), vault._records.engine.begin() as conn:
                for table, row_id, sealed in updates:
                    conn.execute(update(table).where(table.c.id == row_id,
                                                     table.c.findings.is_(None))
                                 .values(findings=sealed))
            done += len(updates)
        if progress:
            progress(len(ids))
    return done


__all__ = ["classify_stored"]
