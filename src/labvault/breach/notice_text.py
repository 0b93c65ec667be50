"""What a notice says, and the verification code it carries.

Messages are rendered from the Jinja2 templates of ``templates/`` (compiled once per process):
``notice_email.j2`` and ``notice_sms.j2`` for an incident (article 34: what happened, the
categories of data concerned, the likely consequences, what the laboratory did, what the
person can do, the DPO's contact, the right to complain to the CNIL, the code and the public
verification address), ``notice_answer_*.j2`` for the answer to an exposure check, and
``verify_page.html.j2`` for the public page. A message names categories, never a value of the
person's data, not even their name. The e-mail says "des résultats d'examens relevant de
données de santé sensibles" when a special category is concerned, without naming it; an SMS,
read on a lock screen, never mentions one.

Codes: 10 characters of Crockford's base 32 (50 bits from `secrets`), shown ``XXXXX-XXXXX``;
what a person types is read case-insensitively, without spaces or hyphens, O as 0, I and L
as 1. Only a keyed hash is stored (`code_tag`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from labvault.errors import LabvaultError
from labvault.secret import Secret

PARIS = ZoneInfo("Europe/Paris")
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32: no I, L, O, U
CODE_LENGTH = 10
CATEGORIES = ("membership", "identity", "contact", "nir", "insurance", "prescriber", "orders",
              "results", "comments", "attachments")
HEALTH = frozenset({"prescriber", "orders", "results", "comments", "attachments"})
FRAUD = frozenset({"nir", "insurance"})
SUBJECTS = {"incident": "{lab} : information sur un incident de sécurité concernant vos données",
            "incident-update": "{lab} : complément d'information sur l'incident de sécurité "
                               "concernant vos données",
            "exposure-answer": "{lab} : réponse à votre demande sur vos données"}
_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre")
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(("html.j2",), default_for_string=False,
                                                default=False),
                   trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)


class VerifyThrottled(LabvaultError):
    """Too many unknown codes from one source: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many verification attempts; retry in {retry_after} s")


@dataclass(frozen=True, slots=True)
class VerifyAnswer:
    status: str  # issued | unknown: every other field is None when unknown
    issuer: str | None = None
    issued_on: date | None = None
    about: str | None = None  # incident | exposure-answer
    incident: str | None = None  # the incident's short reference

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "issuer": self.issuer, "about": self.about,
                "issued_on": self.issued_on.isoformat() if self.issued_on else None,
                "incident": self.incident}


@dataclass(frozen=True, slots=True)
class Exposure:
    incident_id: uuid.UUID
    detected_on: date
    categories: tuple[str, ...]
    special: tuple[str, ...]
    exposure: str  # decrypted | sealed


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str | None:
    """The code as issued from what a person typed, or None if it cannot be one."""
    code = re.sub(r"[\s\-]", "", text[:64].upper()).translate(str.maketrans("OIL", "011"))
    return code if len(code) == CODE_LENGTH and all(c in ALPHABET for c in code) else None


def display_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def code_tag(key: Secret[bytes], code: str) -> bytes:
    """HMAC-SHA-256 of a normalised code: what the table keeps instead of the code."""
    return hmac.new(key.reveal(), b"breach-verify\0" + code.encode("ascii"),
                    hashlib.sha256).digest()


def short_ref(incident_id: uuid.UUID) -> str:
    return "INC-" + incident_id.hex[:8].upper()


def local_date(at: datetime) -> date:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(PARIS).date()


def french_date(day: date) -> str:
    return f"{day.day}{'er' if day.day == 1 else ''} {_MONTHS[day.month - 1]} {day.year}"


def lab_name(config: Any) -> str:
    return config["controller"]["name"] or "Le laboratoire"


def _base(config: Any, code: str) -> dict[str, Any]:
    c = config["controller"]
    return {"lab": lab_name(config), "dpo_name": c["dpo_name"], "dpo_email": c["dpo_email"],
            "dpo_phone": c["dpo_phone"], "address": c["address"], "code": display_code(code),
            "public_url": config["notices"]["public_url"]}


def _ordered(categories: Iterable[str]) -> list[str]:
    given = set(categories)
    return [k for k in CATEGORIES if k in given]


def _day(value: str | None) -> str | None:
    return french_date(local_date(datetime.fromisoformat(value))) if value else None


def _render(name: str, ctx: dict[str, Any]) -> str:
    """One line per paragraph or bullet (mail clients wrap them), blank lines single."""
    ctx["_ctx"] = ctx
    return re.sub(r"\n{3,}", "\n\n", _ENV.get_template(name).render(ctx)).strip() + "\n"


def notice(config: Any, channel: str, code: str, incident: Any, entry: Mapping[str, Any],
           added: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Subject and text of an incident notice; `entry` is the person's line of the scope. With
    `added` (what a later scope adds to what the person was told: categories, whether a
    special category, whether data was now read in clear), the update that completes it."""
    categories = _ordered(entry.get("categories", ()))
    special = bool(entry.get("special")) and channel != "sms"
    more = added or {}
    ctx = _base(config, code) | {
        "update": added is not None, "added": _ordered(more.get("categories", ())),
        "added_special": bool(more.get("special")) and channel != "sms",
        "now_decrypted": bool(more.get("decrypted")),
        "ref": short_ref(incident.id), "vector": incident.vector,
        "detected": french_date(local_date(incident.detected_at)),
        "first": _day(entry.get("first")), "last": _day(entry.get("last")),
        "categories": categories, "special": special,
        "sealed": entry.get("exposure") == "sealed", "fraud": bool(FRAUD & set(categories)),
        "health": bool(HEALTH & set(categories)) or special}
    kind = "incident-update" if added is not None else "incident"
    return (SUBJECTS[kind].format(lab=ctx["lab"]), _render(f"notice_{channel}.j2", ctx))


def letters(config: Any, items: Iterable[tuple[Mapping[str, Any], str, str]],
            at: datetime) -> str:
    """One printable HTML document of letters dated `at`, one per page: for each, the
    addressee (opened name and `Address`), the subject and the text of an e-mail notice."""
    listed = [{"name": " ".join(v for v in (who["first_names"], who["last_name"]) if v),
               "address": who["address"], "subject": subject, "blocks": _blocks(body)}
              for who, subject, body in items]
    today = french_date(local_date(at))
    return _ENV.get_template("notice_letters.html.j2").render(
        lab=lab_name(config), address=config["controller"]["address"], today=today,
        letters=listed)


def _blocks(body: str) -> list[tuple[str, Any]]:
    """A notice's text as blocks: ("h", heading) for a line in capitals, ("ul", items) for
    lines starting with "- ", ("p", text) otherwise; blank lines part them."""
    out: list[tuple[str, Any]] = []
    for chunk in body.strip().split("\n\n"):
        lines = [line.strip() for line in chunk.splitlines() if line.strip()]
        if not lines:
            continue
        if all(line.startswith("- ") for line in lines):
            out.append(("ul", [line[2:] for line in lines]))
        elif len(lines) == 1 and " " in lines[0] and lines[0].upper() == lines[0]:
            out.append(("h", lines[0]))
        else:
            out.append(("p", " ".join(lines)))
    return out


def answer(config: Any, channel: str, code: str, exposures: Iterable[Any]) -> tuple[str, str]:
    """Subject and text of the answer to an exposure check (`Exposure` items)."""
    listed = [{"ref": short_ref(e.incident_id), "detected": french_date(e.detected_on),
               "categories": _ordered(e.categories), "sealed": e.exposure == "sealed",
               "special": bool(e.special) and channel != "sms"} for e in exposures]
    ctx = _base(config, code) | {"exposures": listed}
    return (SUBJECTS["exposure-answer"].format(lab=ctx["lab"]),
            _render(f"notice_answer_{channel}.j2", ctx))


def page(config: Any, answer: Any = None, throttled_seconds: int | None = None) -> str:
    """The public verification page, with the answer to a check if there is one."""
    issued = getattr(answer, "issued_on", None)
    return _ENV.get_template("verify_page.html.j2").render(
        lab=lab_name(config), answer=answer, issued_on=french_date(issued) if issued else "",
        throttled=-(-throttled_seconds // 60) if throttled_seconds else None)


def measure_rendering(n: int, config: Any = None,
                      timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Render `n` incident notices (e-mail and SMS in turn; no I/O): for a benchmark of
    notices rendered per second."""
    from labvault.breach.config import BreachConfig

    config = config or BreachConfig.from_mapping({
        "controller": {"name": "Laboratoire de biologie médicale", "dpo_email": "dpo@lab.example",
                       "dpo_phone": "01 23 45 67 89"},
        "notices": {"public_url": "https://lab.example/verify"}})
    incident = SimpleNamespace(id=uuid.uuid4(), vector="stolen-credentials",
                               detected_at=datetime(2026, 3, 2, 8, 30, tzinfo=UTC))
    entry = {"categories": ["identity", "contact", "nir", "results"], "special": ["hiv"],
             "exposure": "decrypted", "first": "2026-03-01T21:04:00+00:00",
             "last": "2026-03-02T02:10:00+00:00"}
    start = timer()
    for i in range(n):
        notice(config, "sms" if i % 2 else "email", new_code(), incident, entry)
    seconds = max(timer() - start, 1e-9)
    return {"notices": n, "seconds": seconds, "per_second": n / seconds}


__all__ = ["ALPHABET", "CATEGORIES", "Exposure", "VerifyAnswer", "VerifyThrottled", "answer",
           "code_tag", "display_code", "french_date", "lab_name", "local_date",
           "measure_rendering", "new_code", "normalize_code", "notice", "page", "short_ref"]
