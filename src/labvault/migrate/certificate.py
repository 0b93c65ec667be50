"""`labvault migrate certificate`: a signed record of what a migration did, and its check.

The certificate states who ran the migration and when, the source files (name, size,
SHA-256, format), the counts (read = stored + quarantined + duplicates), the last
reconciliation, the quarantine by field and reason, and the erasure of the staging area. It
holds no personal value. The body is serialised canonically (sorted keys, no spaces) and
signed with the vault's Ed25519 key; `check` raises `InvalidSignature` on any change.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jinja2 import Environment, PackageLoader, select_autoescape

from labvault.access.principal import Principal
from labvault.crypto.signing import key_id, load_public, public_bytes, verify
from labvault.errors import ConfigurationError
from labvault.ingest.content import canonical_bytes
from labvault.migrate.plan import load_plan
from labvault.vault import Vault

KIND = "labvault-migration-certificate"


def _last(reports: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    found = [r for r in reports if r["kind"] == kind]
    if not found:
        return None
    r = found[-1]
    return {"at": _iso(r["at"]), "by": r["actor"], **r["body"]}


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def build(vault: Vault, principal: Principal, plan_path: Path, now: datetime) -> dict[str, Any]:
    """The signed certificate document of the plan's migration."""
    plan = load_plan(plan_path)
    desk, mid = vault.imports, plan.migration_id
    info = desk.info(principal, mid)
    if info.plan_sha256 != plan.sha256:
        raise ConfigurationError("this plan file differs from the one the migration ran with")
    reports = desk.reports(principal, mid)
    counts = desk.unit_counts(principal, mid)
    units = {k: sum(c[k] for c in counts.values())
             for k in ("new", "stored", "quarantined", "duplicate")}
    read = sum(s.units for s in plan.sources)
    body: dict[str, Any] = {
        "kind": KIND,
        "version": 1,
        "migration_id": str(mid),
        "issued_at": now.isoformat(),
        "issued_by": principal.actor_id,
        "plan_sha256": plan.sha256.hex(),
        "planned_at": plan.created_at.isoformat(),
        "planned_by": plan.created_by,
        "sources": [{"name": s.name, "size": s.size, "sha256": s.sha256, "format": s.format,
                     "units": s.units,
                     "attachments": [{k: a[k] for k in ("name", "size", "sha256")}
                                     for a in s.attachments]} for s in plan.sources],
        "runs": [{"at": _iso(r["at"]), "by": r["actor"]} for r in reports if r["kind"] == "run"],
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
        "quarantine": [{"field": f, "reason": r, "units": n}
                       for f, r, n in desk.quarantine_summary(principal, mid)],
        "staging": {"deadline": info.staging_deadline.isoformat(),
                    "erasure": _last(reports, "erase")},
    }
    if body["reconciliation"] is not None:
        body["reconciliation"].pop("problems", None)
    signature, signer = desk.sign(principal, canonical_bytes(body))
    return {"certificate": body, "algorithm": "Ed25519", "key_id": signer.key_id,
            "public_key": base64.b64encode(public_bytes(signer.public_key)).decode(),
            "signature": base64.b64encode(signature).decode()}


def check(document: dict[str, Any], trusted: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """Verify a certificate document; return its body. Raises `InvalidSignature`.

    With `trusted` (the lab's published key), the certificate must be signed by that key;
    without it, only the document's integrity under its embedded key is checked.
    """
    try:
        body = document["certificate"]
        signature = base64.b64decode(document["signature"], validate=True)
        embedded = load_public(document["public_key"].encode())
    except (KeyError, TypeError, ValueError):
        raise InvalidSignature("not a labvault certificate") from None
    if body.get("kind") != KIND or document.get("algorithm") != "Ed25519":
        raise InvalidSignature("not a labvault certificate")
    key = trusted or embedded
    if trusted is not None and public_bytes(trusted) != public_bytes(embedded):
        raise InvalidSignature("signed by another key than the trusted one")
    verify(key, signature, canonical_bytes(body))
    if document.get("key_id") != key_id(key):
        raise InvalidSignature("key id does not match the key")
    return body


def render_html(document: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("labvault.migrate", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("certificate.html.j2").render(doc=document,
                                                          c=document["certificate"])


def write(document: dict[str, Any], json_path: Path) -> Path:
    """Write the certificate as JSON and, beside it, as HTML; returns the HTML path."""
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    html_path = json_path.with_suffix(".html")
    html_path.write_text(render_html(document))
    return html_path


__all__ = ["build", "check", "render_html", "write"]
