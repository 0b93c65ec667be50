"""The simulation's report: per attack, what the attacker got and how soon it was seen; for the
normal workload, false alerts and review-queue items per 1,000 user-days; the targets.

An alert belongs to an attack when it names one of the attack's actors (the account or token it
used, or its source address) and was raised between the attack's first request and a day after
its last. Every other alert at medium or above is a false alert; every other low one is a
review-queue item. Records exposed are the distinct patients whose data a 200 answer returned
to the attacker (identity, record or export line); the ids are kept as the ground truth, with
the ids the attacker's searches returned. Ids and counts only: no personal value.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from labvault.simulator.attacks import Attack
from labvault.watch.alerts import Alert, Severity

WINDOW_AFTER = timedelta(days=1)
TARGETS = {"fast_records": 20, "honeytoken_ms": 1000, "slow_hours": 24, "slow_records": 100,
           "false_per_1000": 1.0}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _alert(a: Alert, since: datetime | None, exposed: dict[Any, datetime]) -> dict[str, Any]:
    return {"alert_id": str(a.id), "rule": a.rule, "severity": str(a.severity),
            "response": a.response, "raised_at": a.raised_at.isoformat(),
            "after_seconds": (a.raised_at - since).total_seconds() if since else None,
            "records_before": sum(1 for at in exposed.values() if at < a.raised_at)}


def attack_entry(attack: Attack, alerts: list[Alert],
                 received: list[tuple[float, dict[str, Any]]]) -> tuple[dict[str, Any], set[Any]]:
    t = attack.truth
    start, last = t.first or attack.at, t.last or attack.at
    mine = sorted((a for a in alerts if a.actor in attack.actors
                   and start <= a.raised_at <= last + WINDOW_AFTER),
                  key=lambda a: (a.raised_at, -a.severity.rank))  # the gravest of a same event
    first = mine[0] if mine else None
    alerted = next((a for a in mine if a.severity >= Severity.MEDIUM), None)
    response = next((a for a in mine if a.response != "none"), None)
    stop = next((a for a in mine if a.response in ("locked", "token_revoked")), None)
    entry: dict[str, Any] = {
        "attack": attack.name, "actor": attack.victim, "address": attack.address,
        "started_at": _iso(t.first), "ended_at": _iso(t.last), "requests": t.requests,
        "records_exposed": len(t.exposed),
        "first_alert": _alert(first, start, t.exposed) if first else None,
        "first_medium_or_above": _alert(alerted, start, t.exposed) if alerted else None,
        "first_response": _alert(response, start, t.exposed) if response else None,
        "stopped": {"locked": "account locked", "token_revoked": "token revoked"}[stop.response]
        if stop else "no session" if attack.note.get("session_opened") is False else "not stopped",
        "alerts_by_rule": dict(Counter(f"{a.rule} ({a.severity})" for a in mine)),
        "exposed_patient_ids": sorted(str(p) for p in t.exposed),
        "searched_patient_ids": sorted(str(p) for p in t.searched),
        "note": {k: v for k, v in attack.note.items() if k != "sent_at"},
    }
    sent = attack.note.get("sent_at")
    if attack.name == "honeytoken" and isinstance(sent, float):
        arrivals = [at for at, body in received if body.get("rule") == "honeytoken"
                    and body.get("actor") in attack.actors and at >= sent]
        entry["webhook_delay_ms"] = round((min(arrivals) - sent) * 1000, 1) if arrivals else None
    return entry, {a.id for a in mine}


def normal_entry(alerts: list[Alert], attributed: set[Any],
                 user_days: set[tuple[str, str]]) -> dict[str, Any]:
    kinds = Counter(key.split(":", 1)[0] for key, _ in user_days)
    false = [a for a in alerts if a.id not in attributed and a.severity >= Severity.MEDIUM]
    low = [a for a in alerts if a.id not in attributed and a.severity < Severity.MEDIUM]
    staff_days, all_days = kinds.get("staff", 0), len(user_days)
    return {
        "user_days": {"staff": staff_days, "patients": kinds.get("patient", 0),
                      "service": kinds.get("service", 0), "all": all_days},
        "false_alerts": len(false),
        "false_alerts_by_rule": dict(Counter(f"{a.rule} ({a.severity})" for a in false)),
        "false_alert_ids": [str(a.id) for a in false],
        # Per 1,000 staff user-days (the stricter denominator) and per 1,000 user-days of all.
        "false_alerts_per_1000_staff_days": round(1000 * len(false) / max(staff_days, 1), 3),
        "false_alerts_per_1000_user_days": round(1000 * len(false) / max(all_days, 1), 3),
        "review_queue": len(low),
        "review_queue_by_rule": dict(Counter(a.rule for a in low)),
        "review_queue_per_1000_user_days": round(1000 * len(low) / max(all_days, 1), 1),
    }


def targets(attacks: list[dict[str, Any]], normal: dict[str, Any]) -> list[dict[str, Any]]:
    by = {a["attack"]: a for a in attacks}
    out = []
    if (fast := by.get("fast-enumeration")) is not None:
        ok = fast["stopped"] == "account locked" and fast["records_exposed"] <= TARGETS["fast_records"]
        out.append({"target": "fast enumeration locked out after <= 20 records",
                    "value": f"{fast['records_exposed']} records, {fast['stopped']}", "pass": ok})
    if (decoy := by.get("honeytoken")) is not None:
        delay = decoy.get("webhook_delay_ms")
        first = decoy["first_alert"] or {}
        ok = delay is not None and delay <= TARGETS["honeytoken_ms"] and first.get("rule") == "honeytoken"
        out.append({"target": "honeytoken access alerted within 1 s (webhook arrival)",
                    "value": f"{delay} ms" if delay is not None else "no alert", "pass": ok})
    if (slow := by.get("slow-extraction")) is not None:
        first = slow["first_medium_or_above"]
        ok = first is not None and first["after_seconds"] <= TARGETS["slow_hours"] * 3600 \
            and first["records_before"] <= TARGETS["slow_records"]
        value = (f"{duration(first['after_seconds'])}, {first['records_before']} records before"
                 if first else "not alerted")
        out.append({"target": "slow extraction alerted within 24 h and <= 100 records",
                    "value": value, "pass": ok})
    rate = normal["false_alerts_per_1000_staff_days"]
    out.append({"target": "<= 1 false alert per 1,000 user-days (staff days counted)",
                "value": f"{normal['false_alerts']} in {normal['user_days']['staff']} staff days "
                         f"= {rate}", "pass": rate <= TARGETS["false_per_1000"]})
    return out


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def lines(report: dict[str, Any]) -> list[str]:
    """The report as plain text: the attack table, the normal workload, the targets."""
    head = (f"{'attack':20} {'exposed':>7} {'before alert':>12} {'1st alert after':>15}  "
            f"{'first alert (rule, severity)':34} {'stopped':14}")
    out = [head, "-" * len(head)]
    for a in report["attacks"]:
        first = a["first_alert"]
        rule = f"{first['rule']} ({first['severity']})" if first else "none"
        out.append(f"{a['attack']:20} {a['records_exposed']:>7} "
                   f"{first['records_before'] if first else a['records_exposed']:>12} "
                   f"{duration(first['after_seconds']) if first else 'never':>15}  {rule:34} "
                   f"{a['stopped']:14}")
        medium = a["first_medium_or_above"]
        if medium and first and medium["alert_id"] != first["alert_id"]:
            out.append(f"{'':20} {'':7} {medium['records_before']:>12} "
                       f"{duration(medium['after_seconds']):>15}  "
                       f"{medium['rule'] + ' (' + medium['severity'] + ')':34} first medium+")
        resp = a["first_response"]
        if resp and (not first or resp["alert_id"] != first["alert_id"]):
            out.append(f"{'':20} {'':7} {resp['records_before']:>12} "
                       f"{duration(resp['after_seconds']):>15}  "
                       f"{resp['rule'] + ' (' + resp['severity'] + ')':34} -> {resp['response']}")
        if "webhook_delay_ms" in a:
            out.append(f"{'':20} webhook received {a['webhook_delay_ms']} ms after the request")
    for name in report.get("skipped_attacks", []):
        out.append(f"{name:20} (not run: does not fit in the simulated days)")
    n = report["normal"]
    days = n["user_days"]
    out += ["", f"normal workload: {days['staff']} staff user-days, {days['patients']} patient "
            f"user-days, {days['service']} gateway days ({days['all']} user-days)",
            f"  false alerts (medium+): {n['false_alerts']} = "
            f"{n['false_alerts_per_1000_staff_days']} per 1,000 staff user-days, "
            f"{n['false_alerts_per_1000_user_days']} per 1,000 user-days "
            f"{n['false_alerts_by_rule'] or ''}",
            f"  review queue (low): {n['review_queue']} = {n['review_queue_per_1000_user_days']} "
            f"per 1,000 user-days {n['review_queue_by_rule'] or ''}", "", "targets:"]
    for t in report["targets"]:
        out.append(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {t['value']}")
    return out


__all__ = ["attack_entry", "duration", "lines", "normal_entry", "targets"]
