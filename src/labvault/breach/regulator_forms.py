"""The three documents of an incident: the draft notification to the CNIL (GDPR art. 33), the
report to the regional health agency and CERT Santé (CSP art. L. 1111-8-2), and the entry of
the breach register (GDPR art. 33(5)).

Pure: a `Case` holds what the desk gathered, each function lays it out under the headings its
reader expects (the items of article 33(3); the content of the declaration form of the arrêté of
30 October 2017: structure and declarant, description, impacts, causes). Figures come from
`regulator_docs`, so the three documents cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labvault.breach import regulator_docs as rd
from labvault.breach import regulator_labels as lb
from labvault.breach.desk import Incident

CNIL_KIND = "labvault-cnil-art33-draft"
ARS_KIND = "labvault-ars-incident-report"
REGISTER_KIND = "labvault-breach-register-entry"
CONTROLLER_FIELDS = ("name", "finess", "address", "dpo_name", "dpo_email", "dpo_phone")


@dataclass(frozen=True)
class Case:
    """An incident and what labvault recorded about it (no personal value)."""

    incident: Incident
    scope: dict[str, Any] | None  # the signed scope's reference: id, digest, key, audit position
    summary: dict[str, Any] | None  # `regulator_docs.summarize` of its document
    measures: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    notices: dict[str, dict[str, int]] = field(default_factory=dict)  # by kind, then state

    def latest(self, recipient: str) -> dict[str, Any] | None:
        """The last notification (or decision not to notify) recorded for a recipient."""
        found = [d for d in self.decisions
                 if d["what"] in ("notified", "not-notified") and d.get("recipient") == recipient]
        return found[-1] if found else None

    @property
    def phase(self) -> str:
        last = self.latest("cnil")
        return "complementary" if last and last["what"] == "notified" else "initial"


def _incident(case: Case, with_description: bool = True) -> dict[str, Any]:
    inc = case.incident
    out = {"id": str(inc.id), "opened_at": rd.iso(inc.opened_at),
           "detected_at": rd.iso(inc.detected_at), "deadline_at": rd.iso(inc.deadline_at),
           "vector": inc.vector, "vector_label": lb.VECTORS.get(inc.vector, inc.vector),
           "status": inc.status}
    if with_description:
        out["description"] = inc.description.reveal()
    return out


def _data(summary: dict[str, Any] | None) -> dict[str, Any]:
    if summary is None:
        return {"established": False}
    return {"established": True, "people_categories": ["Patients du laboratoire"],
            "patients": summary["patients"], "by_exposure": summary["by_exposure"],
            "categories": summary["categories"], "special": summary["special"],
            "records": summary["records"], "quarantined_units": summary["quarantined_units"]}


def _contact(controller: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    values = {k: str(controller.get(k) or "").strip() for k in CONTROLLER_FIELDS}
    return values, [k for k, v in values.items() if not v]


def _common(kind: str, case: Case, now: datetime) -> dict[str, Any]:
    return {"kind": kind, "version": 1, "issued_at": rd.iso(now), "scope": case.scope}


def cnil(case: Case, controller: Mapping[str, Any], statements: rd.Statements,
         now: datetime) -> dict[str, Any]:
    """The draft notification to the CNIL, under the items of GDPR article 33(3)."""
    s, inc = case.summary, case.incident
    contact, missing = _contact(controller)
    return {
        **_common(CNIL_KIND, case, now),
        "phase": case.phase,
        "deadline": rd.deadline(inc.deadline_at, now, case.phase, statements.delay_reason),
        "controller": {k: contact[k] for k in ("name", "finess", "address")},
        "dpo": {"name": contact["dpo_name"], "email": contact["dpo_email"],
                "phone": contact["dpo_phone"]},
        "missing": missing,
        "incident": _incident(case),
        "nature": {
            "kinds": ["confidentiality"], "kinds_label": ["Perte de confidentialité"],
            "basis": s["basis"] if s else None, "basis_label": s["basis_label"] if s else None,
            "window": s["window"] if s else {"first": None, "last": None},
            "events": s["events"] if s else None, "accounts": s["accounts"] if s else None,
            "detection": {"alerts": case.alerts, "stated": statements.detection},
        },
        "data": _data(s),
        "consequences": s["consequences"] if s else [],
        "risk": {"level": s["risk"] if s else "unknown",
                 "label": s["risk_label"] if s else lb.RISKS["unknown"]},
        "measures": {"taken": rd.taken(case.measures, statements),
                     "proposed": rd.proposed(inc.vector, s, statements)},
        "notification": rd.notification(s),
        "people_notice": rd.people_notice(s),
        "references": list(lb.CNIL_REFERENCES),
    }


def _criteria(case: Case, statements: rd.Statements) -> list[dict[str, str]]:
    s = case.summary
    health = ("oui" if s and s["by_exposure"]["decrypted"] else
              "non : données restées chiffrées" if s and s["patients"] else "à apprécier")
    care = "à apprécier : voir l'impact sur les soins" if statements.care_impact else "à apprécier"
    met = {"care-safety": care, "health-data": health}
    return [{"code": code, "label": label, "met": met.get(code, "à apprécier")}
            for code, label in lb.ARS_CRITERIA.items()]


def ars(case: Case, controller: Mapping[str, Any], statements: rd.Statements,
        now: datetime) -> dict[str, Any]:
    """The report of a serious information-system security incident to the regional health
    agency, relayed to CERT Santé: the sections of the declaration form."""
    s, inc = case.summary, case.incident
    contact, missing = _contact(controller)
    reads_only = s is not None and s["basis"] == "audit"
    return {
        **_common(ARS_KIND, case, now),
        "recipient": {"agency": str(controller.get("regional_agency") or ""),
                      "email": str(controller.get("regional_agency_email") or ""),
                      "portal": lb.ARS_PORTAL},
        "structure": {"name": contact["name"], "finess": contact["finess"],
                      "address": contact["address"], "type": "Laboratoire de biologie médicale"},
        "declarant": {"name": contact["dpo_name"], "email": contact["dpo_email"],
                      "phone": contact["dpo_phone"],
                      "role": "Délégué à la protection des données"},
        "missing": missing,
        "incident": {**_incident(case), "started_at": s["window"]["first"] if s else None,
                     "ended_at": s["window"]["last"] if s else None},
        "perimeter": {"system": "labvault : dossiers des patients, demandes d'examens, résultats "
                                "et commentaires, chiffrés champ par champ",
                      "basis": s["basis"] if s else None,
                      "basis_label": s["basis_label"] if s else None,
                      "accounts": s["accounts"] if s else None,
                      "events": s["events"] if s else None},
        "data": _data(s),
        "impact": {
            "confidentiality": bool(s and s["by_exposure"]["decrypted"]) if s else None,
            "integrity": ("Aucune modification : les actions en cause sont des lectures"
                          if reads_only else "Non évaluée par labvault"),
            "people": {"patients": s["patients"] if s else None,
                       "consequences": s["consequences"] if s else []},
            "systems": "Non évalué par labvault : à compléter par la structure",
            "care": statements.care_impact or "Aucun effet sur la sécurité des soins n'est établi "
                                              "par labvault : à compléter par la structure",
        },
        "criteria": _criteria(case, statements),
        "causes": {"vector_label": lb.VECTORS.get(inc.vector, inc.vector),
                   "stated": statements.causes},
        "handling": {"status": inc.status, "measures_taken": rd.taken(case.measures, statements),
                     "measures_proposed": rd.proposed(inc.vector, s, statements),
                     "detection": {"alerts": case.alerts, "stated": statements.detection}},
        "cnil": {"notification": rd.notification(s), "recorded": case.latest("cnil")},
        "references": list(lb.ARS_REFERENCES),
    }


def _status(case: Case, recipient: str, required: bool | None) -> dict[str, Any]:
    last = case.latest(recipient)
    out: dict[str, Any] = {"required": required, "notified": False, "at": None,
                           "reference": None, "reason": None, "reason_label": None}
    if last is not None and last["what"] == "notified":
        out.update(notified=True, at=last.get("notified_at"), reference=last.get("reference"))
    elif last is not None:
        reason = last.get("reason")
        out.update(reason=reason, reason_label=lb.NOT_NOTIFIED[recipient].get(reason, reason))
    out["recorded_at"] = last["recorded_at"] if last else None
    return out


def register(case: Case, now: datetime, *, with_description: bool) -> dict[str, Any]:
    """The register entry (GDPR art. 33(5)): facts, effects, remedial action, and for each
    recipient whether and when it was notified, or why not."""
    s, inc = case.summary, case.incident
    cnil_status = _status(case, "cnil", rd.notification(s)["required"])
    if cnil_status["notified"] and cnil_status["at"]:
        cnil_status["late"] = datetime.fromisoformat(cnil_status["at"]) > inc.deadline_at
    people = _status(case, "people", rd.people_notice(s)["required"])
    people["notices"] = dict(sorted(case.notices.get("incident", {}).items()))
    if updates := case.notices.get("incident-update"):
        people["updates"] = dict(sorted(updates.items()))
    return {
        **_common(REGISTER_KIND, case, now),
        "incident": _incident(case, with_description) | {"opened_by": inc.opened_by},
        "facts": {"established": s is not None,
                  **({k: s[k] for k in ("basis", "window", "patients", "by_exposure", "events",
                                        "records")} if s else {}),
                  "categories": {c["code"]: c["total"] for c in s["categories"]} if s else {},
                  "special": {c["code"]: c["total"] for c in s["special"]} if s else {}},
        "effects": {"risk": s["risk"] if s else "unknown",
                    "consequences": [c["code"] for c in s["consequences"]] if s else []},
        "remedial_action": case.measures,
        "notifications": {"cnil": cnil_status, "ars": _status(case, "ars", None),
                          "people": people},
        "drafts": [{"at": d["recorded_at"], "by": d["recorded_by"], "cnil": d.get("cnil"),
                    "ars": d.get("ars")} for d in case.decisions if d["what"] == "draft"],
    }


__all__ = ["ARS_KIND", "CNIL_KIND", "REGISTER_KIND", "Case", "ars", "cnil", "register"]
