"""The regulator's documents of an incident, issued by the DPO: the CNIL draft (GDPR art. 33),
the ARS / CERT Santé report (CSP art. L. 1111-8-2) and the breach register (GDPR art. 33(5)).

`RegulatorDesk(vault)` reads the incident, its latest signed scope (checked against the
vault's key before use: a document altered in the database is refused, not reported), and what
labvault recorded (alerts, responses, notifications); `regulator_forms` lays the documents out.
Each document is signed with the vault's Ed25519 key under a prefix naming its kind, so a
signature over one kind is never valid for another, and `check` verifies it. Issuing a draft,
reading the register and recording a notification need ``breach:incident:manage`` (the DPO)
and are audited; the audit event carries the documents' digests, never their text, and the
drafts hold counts and categories, never a patient's id or value. The incident's description
(the operator's own text, sealed in the database) is opened into the documents only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jinja2 import Environment, PackageLoader, StrictUndefined

from labvault.access.account_rules import aware
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.breach import regulator_forms as forms
from labvault.breach import regulator_labels as lb
from labvault.breach.config import BreachConfig
from labvault.breach.desk import FIELDS_KEY, Incident, breach_store
from labvault.breach.regulator_docs import Statements, iso, summarize
from labvault.breach.regulator_facts import RegulatorFacts
from labvault.breach.scope import canonical, verified
from labvault.crypto.envelope import AesGcmFieldCipher
from labvault.crypto.signing import Signer, check_signed, public_bytes
from labvault.errors import InvalidRecord, NotFound
from labvault.private_file import write_private
from labvault.secret import Secret

if TYPE_CHECKING:
    from labvault.vault.core import Vault

KINDS = (forms.CNIL_KIND, forms.ARS_KIND, forms.REGISTER_KIND)
TEMPLATES = {forms.CNIL_KIND: "regulator_cnil_art33.html.j2", forms.ARS_KIND: "ars_report.html.j2"}
DRAFT_FILES = {"cnil": "cnil-art33", "ars": "ars-report"}
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
PARIS = ZoneInfo("Europe/Paris")


def _context(kind: str) -> bytes:
    return f"labvault/breach/{kind}/v1\n".encode()


def sign(signer: Signer, body: dict[str, Any]) -> dict[str, Any]:
    """The signed envelope of a document: body, algorithm, key, signature, SHA-256 of the body."""
    message = canonical(body)
    return {"document": body, "algorithm": "Ed25519", "key_id": signer.key_id,
            "public_key": base64.b64encode(public_bytes(signer.public_key)).decode(),
            "signature": base64.b64encode(signer.sign(_context(body["kind"]) + message)).decode(),
            "sha256": hashlib.sha256(message).hexdigest()}


def check(envelope: dict[str, Any], trusted: Ed25519PublicKey) -> dict[str, Any]:
    """Verify a signed document against the key the reader trusts (the vault's public key,
    obtained apart from the document: a key embedded in the document proves nothing); return
    its body. Raises `InvalidSignature`."""
    return check_signed(envelope, "document", KINDS, lambda body: _context(body["kind"])
                        + canonical(body), "signed breach document", trusted)


def _paris(value: str | None) -> str:
    if not value:
        return "non déterminé"
    return datetime.fromisoformat(value).astimezone(PARIS).strftime("%d/%m/%Y %H:%M (heure de Paris)")


def render_html(envelope: dict[str, Any]) -> str:
    """The printable document (French), every value escaped."""
    env = Environment(loader=PackageLoader("labvault.breach", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["paris"] = _paris
    env.globals["labels"] = lb
    template = env.get_template(TEMPLATES[envelope["document"]["kind"]])
    return template.render(d=envelope["document"], env=envelope)


@dataclass(frozen=True)
class Draft:
    incident_id: uuid.UUID
    deadline_at: datetime
    late: bool
    cnil: dict[str, Any]  # signed envelopes
    ars: dict[str, Any]

    def __repr__(self) -> str:
        return f"Draft(incident={self.incident_id}, late={self.late})"

    def write(self, out_dir: Path) -> list[Path]:
        """``cnil-art33.json/.html`` and ``ars-report.json/.html`` in `out_dir` (0600 each)."""
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        written = []
        for name, envelope in (("cnil", self.cnil), ("ars", self.ars)):
            stem = out_dir / DRAFT_FILES[name]
            write_private(stem.with_suffix(".json"),
                          json.dumps(envelope, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
            write_private(stem.with_suffix(".html"), render_html(envelope))
            written += [stem.with_suffix(".json"), stem.with_suffix(".html")]
        return written


class RegulatorDesk:
    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._store = breach_store(vault)
        self._facts = RegulatorFacts(vault._records.engine)
        self._cipher = AesGcmFieldCipher(vault._keys.index_key(FIELDS_KEY), 1)

    def __repr__(self) -> str:
        return "RegulatorDesk()"

    # -- documents -----------------------------------------------------------------------------
    def draft(self, principal: Principal, incident_id: uuid.UUID, config: BreachConfig,
              statements: Statements | None = None) -> Draft:
        """The signed CNIL draft and ARS report of the incident, from its latest scope."""
        statements = statements or Statements()
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        case = self._case(self._row(incident_id))
        now = self._vault._clock.now()
        try:
            cnil = forms.cnil(case, config["controller"], statements, now)
        except InvalidRecord as exc:
            self._vault._event(principal, Permission.BREACH_MANAGE, "invalid", what="draft",
                               incident_id=str(incident_id), field=exc.field)
            raise
        signer = Signer(self._vault._keys)
        cnil_env = sign(signer, cnil)
        ars_env = sign(signer, forms.ars(case, config["controller"], statements, now))
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="draft",
                           incident_id=str(incident_id), phase=case.phase,
                           late=cnil["deadline"]["late"], cnil=cnil_env["sha256"],
                           ars=ars_env["sha256"], scope=(case.scope or {}).get("sha256"))
        return Draft(incident_id, case.incident.deadline_at, cnil["deadline"]["late"], cnil_env,
                     ars_env)

    def register(self, principal: Principal, *,
                 with_description: bool = False) -> list[dict[str, Any]]:
        """Every incident's signed register entry (GDPR art. 33(5)), oldest first; the
        operator's description only when asked for (a file, not a terminal)."""
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="register",
                           with_description=with_description)
        now, signer = self._vault._clock.now(), Signer(self._vault._keys)
        return [sign(signer, forms.register(self._case(row), now,
                                            with_description=with_description))
                for row in self._store.incidents()]

    # -- what the DPO did ----------------------------------------------------------------------
    def record_notification(self, principal: Principal, incident_id: uuid.UUID, recipient: str,
                            *, at: datetime, reference: str | None = None) -> None:
        """Record that a recipient (``cnil``, ``ars``, ``people``) was notified, when, and the
        receipt's reference (letters, digits, ``._/-``: no free text reaches the audit log)."""
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        incident = self._incident(self._row(incident_id))
        self._recipient(recipient)
        if at.tzinfo is None:
            raise InvalidRecord("at", "needs a time zone")
        if at > self._vault._clock.now() or at < incident.detected_at:
            raise InvalidRecord("at", "between the detection and now")
        if reference is not None and not REFERENCE.fullmatch(reference):
            raise InvalidRecord("reference", "1 to 64 letters, digits or ._/-")
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="notified",
                           incident_id=str(incident_id), recipient=recipient,
                           notified_at=iso(at), reference=reference)

    def record_not_notified(self, principal: Principal, incident_id: uuid.UUID, recipient: str,
                            reason: str) -> None:
        """Record why a recipient is not notified (a reason code of `NOT_NOTIFIED`)."""
        self._vault._authorize(principal, Permission.BREACH_MANAGE)
        self._row(incident_id)
        self._recipient(recipient)
        reasons = lb.NOT_NOTIFIED[recipient]
        if reason not in reasons:
            raise InvalidRecord("reason", f"one of {', '.join(reasons)}")
        self._vault._event(principal, Permission.BREACH_MANAGE, "allowed", what="not-notified",
                           incident_id=str(incident_id), recipient=recipient, reason=reason)

    # -- gathering -----------------------------------------------------------------------------
    @staticmethod
    def _recipient(recipient: str) -> None:
        if recipient not in lb.RECIPIENTS:
            raise InvalidRecord("recipient", f"one of {', '.join(lb.RECIPIENTS)}")

    def _row(self, incident_id: uuid.UUID) -> Any:
        row = self._store.incident(incident_id)
        if row is None:
            raise NotFound("incident", incident_id)
        return row

    def _incident(self, row: Any) -> Incident:
        text = self._cipher.open("incident", "description", row.id.hex, row.description)
        return Incident(row.id, aware(row.opened_at), aware(row.detected_at),
                        aware(row.deadline_at), row.vector, Secret(text.decode("utf-8")),
                        row.status, row.opened_by)

    def _scope(self, incident_id: uuid.UUID) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The latest scope's reference and document, checked against the vault's key."""
        rows = self._store.scopes(incident_id)
        if not rows:
            return None, None
        row = rows[-1]
        document = verified(row, Signer(self._vault._keys).public_key)
        reference = {"id": row.id, "computed_at": iso(aware(row.computed_at)),
                     "sha256": bytes(row.digest).hex(), "signature": bytes(row.signature).hex(),
                     "key_id": row.key_id, "version": document.get("version", 1),
                     "audit": document.get("audit")}
        return reference, document

    def _case(self, row: Any) -> forms.Case:
        incident = self._incident(row)
        reference, document = self._scope(incident.id)
        summary = summarize(document)
        actors = list(document.get("actors") or []) if document else []
        first = summary["window"]["first"] if summary else None
        since = datetime.fromisoformat(first) if first else None
        return forms.Case(incident, reference, summary, self._facts.measures(actors, since),
                          self._facts.alerts(actors), self._facts.decisions(incident.id),
                          self._facts.notices(incident.id))


__all__ = ["Draft", "RegulatorDesk", "Statements", "check", "render_html", "sign"]
