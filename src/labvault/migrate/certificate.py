"""`labvault migrate certificate`: a signed record of what a migration did, and its check.

The certificate states who ran the migration and when, the source files (name, size,
SHA-256, format), the counts (read = stored + quarantined + duplicates), the last
reconciliation, the quarantine by field and reason, and the erasure of the staging area. It
holds no personal value. The body is serialised canonically (sorted keys, no spaces) and
signed with the vault's Ed25519 key; `check` raises `InvalidSignature` on any change.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jinja2 import Environment, PackageLoader, select_autoescape

from labvault.access.principal import Principal
from labvault.crypto.signing import check_signed
from labvault.errors import ConfigurationError
from labvault.migrate.plan import load_plan
from labvault.private_file import write_private
from labvault.vault import Vault
from labvault.vault.certification import CERTIFICATE_KIND, signed_message


def build(vault: Vault, principal: Principal, plan_path: Path, now: datetime) -> dict[str, Any]:
    """The signed certificate document of the plan's migration (built by the vault)."""
    plan = load_plan(plan_path)
    info = vault.imports.info(principal, plan.migration_id)
    if info.plan_sha256 != plan.sha256:
        raise ConfigurationError("this plan file differs from the one the migration ran with")
    return vault.imports.certificate(principal, plan.migration_id, now)


def check(document: dict[str, Any], trusted: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """Verify a certificate document; return its body. Raises `InvalidSignature`.

    With `trusted` (the lab's published key), the certificate must be signed by that key;
    without it, only the document's integrity under its embedded key is checked.
    """
    return check_signed(document, "certificate", (CERTIFICATE_KIND,), signed_message,
                        "certificate", trusted)


def render_html(document: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("labvault.migrate", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("certificate.html.j2").render(doc=document,
                                                          c=document["certificate"])


def load(path: Path) -> dict[str, Any]:
    """Read a certificate file; a JSON object with a repeated key is refused (two parsers
    could otherwise show two different values for what was signed)."""
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise InvalidSignature("a key is repeated in the certificate")
        return dict(pairs)

    try:
        return json.loads(path.read_text(), object_pairs_hook=no_duplicates)
    except ValueError:
        raise InvalidSignature("not a JSON certificate") from None


def write(document: dict[str, Any], json_path: Path) -> Path:
    """Write the certificate as JSON and, beside it, as HTML (both 0600); the HTML path."""
    write_private(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    html_path = json_path.with_suffix(".html")
    write_private(html_path, render_html(document))
    return html_path


__all__ = ["build", "check", "load", "render_html", "write"]
