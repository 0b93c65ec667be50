"""The audit hook of the vault: every call appends an event before any data moves.

An event carries who, from where, why, which action, on which internal patient ids, and the
outcome — never a personal value. `AuditSink.append` raises `AuditUnavailable` when the event
cannot be written, and the vault then refuses the call (fail closed). The vault's sink is
`labvault.audit.copy.AuditTrail`: the chained log in the database (`labvault.audit.log`) and
an optional second copy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: datetime
    actor: str
    role: str
    source: str
    purpose: str
    action: str  # source:subject:action, e.g. vault:patient:read
    outcome: str  # allowed | denied
    patient_ids: tuple[uuid.UUID, ...] = ()
    detail: dict[str, object] = field(default_factory=dict)
    request_id: str = ""
    categories: tuple[str, ...] = ()  # field categories touched: identity, results...


class AuditSink(Protocol):
    def append(self, event: AuditEvent) -> object:
        """Write the event durably, or raise `AuditUnavailable`."""
        ...

    def rekey(self) -> None:
        """Move any key the sink keeps to the active master key version (rotation)."""
        ...

    def close(self) -> None: ...
