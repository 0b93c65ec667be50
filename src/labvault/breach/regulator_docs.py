"""What an incident's signed scope means for the regulator: counts per category and exposure,
likely consequences, the level of risk and what articles 33 and 34 then ask.

Pure, no I/O: the desk (`labvault.breach.regulator`) gathers the facts and signs; this module
turns a scope document into the figures every document shares, so that the CNIL draft, the
ARS report and the register entry cannot disagree. Counts only, never a patient id or value.

Older scope documents (version 1) carry neither ``exposure`` nor ``special``: an exposure that
is missing, or unknown, is read as "decrypted" (the safer error), missing special categories as
none. A patient is *high-risk* when data read in clear include health data (orders, prescriber,
results, comments, attachments), the NIR or a special category; sealed exposures (only
ciphertext left, keys safe) are the ones article 34(3)(a) exempts and carry no consequence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labvault.breach import regulator_labels as lb
from labvault.errors import InvalidRecord

HEALTH = frozenset({"prescriber", "orders", "results", "comments", "attachments"})
HIGH_RISK = HEALTH | {"nir"}
MAX_TEXT = 2000
MAX_ITEMS = 20


@dataclass(frozen=True, slots=True)
class Statements:
    """What the controller states that labvault cannot know: how the breach was found, its
    causes, its effect on care, the reasons for a late notification, measures beyond those
    labvault records. Their text goes into the signed documents only, never to the audit log."""

    detection: str | None = None
    causes: str | None = None
    care_impact: str | None = None
    delay_reason: str | None = None
    measures_taken: tuple[str, ...] = field(default=())
    measures_proposed: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("detection", "causes", "care_impact", "delay_reason"):
            object.__setattr__(self, name, _text(name, getattr(self, name)))
        for name in ("measures_taken", "measures_proposed"):
            items = tuple(_text(name, v) for v in getattr(self, name))
            if len(items) > MAX_ITEMS:
                raise InvalidRecord(name, f"at most {MAX_ITEMS} items")
            object.__setattr__(self, name, tuple(v for v in items if v))


def _text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise InvalidRecord(name, f"at most {MAX_TEXT} characters")
    return text or None


def iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at is not None else None


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _consequences(categories: set[str], special: list[str]) -> list[str]:
    found = []
    if "identity" in categories and categories & {"nir", "insurance"}:
        found.append("identity-fraud")
    if "contact" in categories:
        found.append("phishing")
    if categories & HEALTH:
        found.append("health-disclosure")
    if special:
        found.append("special-disclosure")
    if "membership" in categories:
        found.append("membership-disclosure")
    return found


def _ordered(counts: dict[str, dict[str, int]], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    codes = [c for c in labels if c in counts] + sorted(c for c in counts if c not in labels)
    return [{"code": c, "label": labels.get(c, c), "decrypted": counts[c]["decrypted"],
             "sealed": counts[c]["sealed"], "total": counts[c]["decrypted"] + counts[c]["sealed"]}
            for c in codes]


def summarize(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The figures of a scope document (version 1 or 2); None without a scope."""
    if document is None:
        return None
    categories: dict[str, dict[str, int]] = {}
    special: dict[str, dict[str, int]] = {}
    by_exposure = {"decrypted": 0, "sealed": 0}
    consequences: Counter[str] = Counter()
    times: list[datetime] = []
    high = 0
    for p in document.get("patients") or []:
        exposure = p.get("exposure") if p.get("exposure") in lb.EXPOSURES else "decrypted"
        cats, spec = set(p.get("categories") or []), list(p.get("special") or [])
        by_exposure[exposure] += 1
        for code in cats:
            categories.setdefault(code, {"decrypted": 0, "sealed": 0})[exposure] += 1
        for code in spec:
            special.setdefault(code, {"decrypted": 0, "sealed": 0})[exposure] += 1
        times += [t for t in (_when(p.get("first")), _when(p.get("last"))) if t is not None]
        if exposure == "decrypted":
            consequences.update(_consequences(cats, spec))
            high += bool(cats & HIGH_RISK or spec)
    if by_exposure["sealed"] and not by_exposure["decrypted"]:
        consequences["sealed-only"] = by_exposure["sealed"]
    patients = by_exposure["decrypted"] + by_exposure["sealed"]
    risk = ("high" if high else "risk" if by_exposure["decrypted"] else "unlikely")
    records = (document.get("totals") or {}).get("records")
    return {
        "basis": document.get("basis", "audit"),
        "basis_label": lb.BASES.get(document.get("basis", "audit"), document.get("basis")),
        "patients": patients, "by_exposure": by_exposure,
        "events": int(document.get("events") or 0),
        "accounts": len({a.split("/", 1)[0] for a in document.get("actors") or []}),
        "categories": _ordered(categories, lb.CATEGORIES),
        "special": _ordered(special, lb.SPECIAL),
        "records": dict(records) if isinstance(records, Mapping) else None,
        "quarantined_units": document.get("quarantined_units"),
        "window": {"first": iso(min(times)) if times else None,
                   "last": iso(max(times)) if times else None},
        "consequences": [{"code": c, "label": lb.CONSEQUENCES[c], "people": consequences[c]}
                         for c in lb.CONSEQUENCES if consequences[c]],
        "risk": risk, "risk_label": lb.RISKS[risk], "high_risk_people": high,
    }


def notification(summary: dict[str, Any] | None) -> dict[str, Any]:
    """Article 33(1): is the CNIL to be notified?"""
    if summary is None:
        return {"required": True, "basis": "Périmètre non encore établi : en cas de doute, la "
                "notification est faite, complétée ensuite (art. 33(4) RGPD)."}
    if summary["by_exposure"]["decrypted"]:
        return {"required": True, "basis": "Des données ont été lues en clair : la violation est "
                "susceptible d'engendrer un risque pour les droits et libertés des personnes."}
    if summary["patients"]:
        return {"required": False, "basis": "Les données emportées sont restées chiffrées et les "
                "clés n'ont pas été compromises : risque peu probable (art. 33(1) RGPD). La "
                "violation est inscrite au registre (art. 33(5) RGPD)."}
    return {"required": False, "basis": "Selon le périmètre établi, aucune donnée de patient n'a "
            "été atteinte. L'incident est inscrit au registre (art. 33(5) RGPD)."}


def people_notice(summary: dict[str, Any] | None) -> dict[str, Any]:
    """Article 34: are the people to be told, how many, and who is exempt under 34(3)(a)?"""
    if summary is None:
        return {"required": None, "people": None, "exempt_sealed": None, "exemption": None,
                "basis": "À déterminer une fois le périmètre établi."}
    high, sealed = summary["high_risk_people"], summary["by_exposure"]["sealed"]
    decrypted = summary["by_exposure"]["decrypted"]
    parts = []
    if high:
        parts.append(f"Risque élevé pour {high} personne(s) : données de santé, NIR ou catégories "
                     "particulières lus en clair. Communication aux personnes requise (art. 34(1)).")
    elif decrypted:
        parts.append(f"{decrypted} personne(s) dont seules des données d'identité, de coordonnées, "
                     "de couverture sociale ou la qualité de patient ont été lues : pas de risque "
                     "élevé établi, à réévaluer (art. 34(1)).")
    if sealed:
        parts.append(f"{sealed} personne(s) dont les données sont restées chiffrées, clés non "
                     "compromises : exemption de l'article 34(3)(a).")
    if not parts:
        parts.append("Aucune personne concernée selon le périmètre établi.")
    return {"required": bool(high), "people": high, "exempt_sealed": sealed,
            "exemption": "34(3)(a)" if sealed else None, "basis": " ".join(parts)}


def deadline(deadline_at: datetime, now: datetime, phase: str,
             delay_reason: str | None) -> dict[str, Any]:
    """The 72-hour term; once it has passed, an initial notification states why (art. 33(1))."""
    late = now > deadline_at
    if late and phase == "initial" and not delay_reason:
        raise InvalidRecord("delay_reason", "required: the 72-hour deadline of GDPR article "
                                            "33(1) has passed")
    return {"at": iso(deadline_at), "late": late,
            "hours_left": round((deadline_at - now).total_seconds() / 3600, 1),
            "delay_reason": delay_reason}


def proposed(vector: str, summary: dict[str, Any] | None,
             statements: Statements) -> list[str]:
    items = list(lb.PROPOSED.get(vector, ()))
    if summary is not None and summary["high_risk_people"]:
        items.append(lb.PROPOSED_NOTICE)
    if summary is not None and any(c["code"] == "contact" and c["decrypted"]
                                   for c in summary["categories"]):
        items.append(lb.PROPOSED_PHISHING)
    return items + list(statements.measures_proposed)


def taken(measures: list[dict[str, Any]], statements: Statements) -> list[dict[str, Any]]:
    return measures + [{"code": "stated", "label": text, "at": None}
                       for text in statements.measures_taken]


__all__ = ["Statements", "deadline", "iso", "notification", "people_notice", "proposed",
           "summarize", "taken"]
