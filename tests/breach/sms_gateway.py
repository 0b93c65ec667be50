"""A real HTTP SMS gateway on the loopback for the notice tests: it checks the bearer token,
records each message it received, and answers from a script (status and headers); accepted
messages get a provider id. The SMTP server (aiosmtpd, STARTTLS) is the alert channels' one.
Also what the notice tests share: the breach settings, patients with known contacts, and
signed scope documents."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from labvault.breach.config import BreachConfig
from labvault.breach.delivery import mobile_number
from labvault.breach.desk import FIELDS_KEY, breach_store
from labvault.breach.scope import canonical, digest
from labvault.crypto.envelope import AesGcmFieldCipher
from labvault.crypto.signing import Signer
from labvault.domain.records import PatientRecord
from labvault.store.tables import incident_scope
from labvault.synthetic import SyntheticLab
from labvault.vault import Vault
from watch.channel_support import SmtpRecorder, smtp_server, tls_contexts  # noqa: F401

TOKEN = "sms-gateway-test-token-0123456789"


@dataclass
class Sms:
    to: str
    sender: str
    text: str
    reference: str
    status: int


class SmsGateway:
    """``POST /v1/messages`` as documented in `labvault.breach.delivery`. Each request takes
    the next scripted answer for its number (`by_number`), else the next of `script` (200
    once both are spent); a wrong token gets 401."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [])
        self.by_number: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.received: list[Sms] = []
        self.unauthorised = 0
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    gateway.unauthorised += 1
                    self._answer(401, {}, b"")
                    return
                doc = json.loads(body)
                mine = gateway.by_number.get(doc["to"]) or gateway.script
                status, headers = mine.pop(0) if mine else (200, {})
                gateway.received.append(Sms(doc["to"], doc["from"], doc["text"],
                                            doc["reference"], status))
                answer = json.dumps({"id": f"sms-{uuid.uuid4().hex[:12]}"}).encode() \
                    if 200 <= status < 300 else b'{"error": "try later"}'
                self._answer(status, headers, answer)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/messages"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    @property
    def accepted(self) -> list[Sms]:
        return [m for m in self.received if 200 <= m.status < 300]

    def __enter__(self) -> SmsGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- what the notice tests share -------------------------------------------------------------
TOKEN_ENV = "LABVAULT_TEST_SMS_TOKEN"
ENVIRON = {TOKEN_ENV: TOKEN}
PUBLIC_URL = "https://labo-exemple.example/verify"


def breach_config(*, smtp_port: int | None = None, cafile: str = "", sms_url: str = "",
                  per_second: float = 1000.0, **notices: Any) -> BreachConfig:
    return BreachConfig.from_mapping({
        "controller": {"name": "Laboratoire Exemple", "dpo_name": "Claire Martin",
                       "dpo_email": "dpo@labo-exemple.example", "dpo_phone": "01 23 45 67 89",
                       "address": "1 rue des Analyses, 75001 Paris"},
        "notices": {"public_url": PUBLIC_URL, "sender_name": "Laboratoire Exemple",
                    "sender_email": "ne-pas-repondre@labo-exemple.example",
                    "per_second": per_second, **notices},
        "smtp": {"host": "127.0.0.1" if smtp_port else "", "port": smtp_port or 587,
                 "cafile": cafile},
        "sms": {"url": sms_url, "token_env": TOKEN_ENV if sms_url else "",
                "sender": "LaboExemple"}})


def people(seed: int = 51) -> list[PatientRecord]:
    """Six synthetic patients with known contacts: e-mail and mobile, e-mail only, a landline
    only (no channel), a mobile only, e-mail and mobile again, e-mail only."""
    recs = list(SyntheticLab(seed=seed, results_per_patient=1).records(6))
    contacts = [("mail", "06 12 34 56 78"), ("mail", None), (None, "01 45 67 89 10"),
                (None, "+33 7 98 76 54 32"), ("mail", "07 11 22 33 44"), ("mail", "04 11 22 33 44")]
    out = []
    for i, (rec, (mail, phone)) in enumerate(zip(recs, contacts, strict=True)):
        p = rec.patient
        email = f"{p.first_names.split()[0].lower()}.{i}{seed}@patients.example" if mail else None
        out.append(dataclasses.replace(rec, patient=dataclasses.replace(p, email=email,
                                                                        phone=phone)))
    return out


def contacts_of(records: list[PatientRecord]) -> list[str]:
    """Every contact as stored and as sent (E.164), to look for where none may be."""
    out = []
    for p in (r.patient for r in records):
        out += [p.email] if p.email else []
        out += [p.phone, p.phone.replace(" ", ""), mobile_number(p.phone) or p.phone] if p.phone else []
    return out


def signed_scope(vault: Vault, incident_id: uuid.UUID, patients: list[dict[str, Any]]) -> int:
    """Store a version-2 scope document for an incident, signed by the vault's key, as the
    breach desk does; the entries name patients by id with their categories."""
    listed = sorted(({"events": 1, "first": "2026-03-01T21:04:00+00:00",
                      "last": "2026-03-02T02:10:00+00:00", **p, "id": str(p["id"])}
                     for p in patients), key=lambda p: p["id"])
    document = {"version": 2, "incident": str(incident_id), "basis": "audit",
                "patients": listed, "totals": {"patients": len(listed)}}
    signer = Signer(vault._keys)
    return breach_store(vault).insert_scope({
        "incident_id": incident_id, "computed_at": vault._clock.now(), "computed_by": "test",
        "selectors": "{}", "document": canonical(document).decode("utf-8"),
        "digest": digest(document), "signature": signer.sign(canonical(document)),
        "key_id": signer.key_id, "patients": len(listed)})


def rewrite_scope(vault: Vault, scope_id: int, change: Any) -> None:
    """Change a stored scope's document text behind its signature, as someone holding the
    breach key could: the text is opened, changed, sealed again in place."""
    from sqlalchemy import select, update

    cipher = AesGcmFieldCipher(vault._keys.index_key(FIELDS_KEY), 1)
    with vault._records.engine.begin() as conn:
        row = conn.execute(select(incident_scope).where(incident_scope.c.id == scope_id)).one()
        ref = f"{row.incident_id.hex}/{bytes(row.digest).hex()}"
        text = cipher.open("incident_scope", "document", ref, row.document).decode("utf-8")
        conn.execute(update(incident_scope).where(incident_scope.c.id == scope_id).values(
            document=cipher.seal("incident_scope", "document", ref,
                                 change(text).encode("utf-8"))))
