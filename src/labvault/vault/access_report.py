"""A patient's right of access (GDPR art. 15): their data and who accessed it, in one document.

`build` reads the record through `Vault.get_record` and the accesses through
`AuditDesk.who_read`, both audited under the purpose "right of access (GDPR art. 15)" whatever
purpose the principal came with; it therefore needs a principal that may read identity and
results and read the audit log (the local operator; no staff role holds all three). The
document holds the identity, every order with its results, comments and attached reports (the
files' bytes in base64), each access to the record (when, actor, role, action, purpose,
outcome, refusals included, the report's own reads last) and, when given, the retention terms.
Actors are internal account ids, not staff names. The document holds personal data in clear by
nature: written 0600, to hand over and then delete.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape

from labvault.access.principal import Principal
from labvault.domain.records import Attachment, Order

if TYPE_CHECKING:
    from labvault.vault.core import Vault
    from labvault.vault.retention_policy import RetentionPolicy

PURPOSE = "right of access (GDPR art. 15)"
REPORT_KIND = "labvault-access-report"


def build(vault: Vault, principal: Principal, patient_id: uuid.UUID,
          policy: RetentionPolicy | None = None) -> dict[str, Any]:
    """The right-of-access document of one patient (raises `AccessDenied`, `NotFound`)."""
    principal = dataclasses.replace(principal, purpose=PURPOSE)
    record = vault.get_record(principal, patient_id)
    accesses = vault.audit_log.who_read(principal, patient_id)
    return {
        "kind": REPORT_KIND, "version": 1, "patient_id": str(patient_id),
        "generated_at": vault._clock.now().isoformat(), "generated_by": principal.actor_id,
        "purpose": PURPOSE,
        "identity": _plain(record.patient, skip=("id",)),
        "orders": [_order(o) for o in record.orders],
        "accesses": [{"seq": a.seq, "at": a.at.isoformat(), "actor": a.actor, "role": a.role,
                      "action": a.action, "purpose": a.purpose, "outcome": a.outcome}
                     for a in accesses],
        "retention": policy.as_dict() if policy is not None else None,
    }


def _order(order: Order) -> dict[str, Any]:
    out = _plain(order, skip=("results", "comments"))
    out["comments"] = [c.text for c in order.comments]
    out["results"] = []
    for r in order.results:
        res = _plain(r, skip=("comments", "attachments"))
        res["comments"] = [c.text for c in r.comments]
        res["attachments"] = [_attachment(a) for a in r.attachments]
        out["results"].append(res)
    return out


def _attachment(a: Attachment) -> dict[str, Any]:
    return {"id": str(a.id), "name": a.name, "media_type": a.media_type, "size": len(a.content),
            "sha256": hashlib.sha256(a.content).hexdigest(),
            "content_base64": base64.b64encode(a.content).decode("ascii")}


def _plain(obj: Any, skip: tuple[str, ...] = ()) -> Any:
    """A record as JSON values: dates in ISO 8601, enums by value, nested records as objects,
    absent values left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name not in skip and getattr(obj, f.name) is not None}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, date | datetime):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    return obj


def render_html(document: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("labvault.migrate", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("access_report.html.j2").render(r=document)


__all__ = ["PURPOSE", "REPORT_KIND", "build", "render_html"]
