"""`labvault migrate verify`: reconcile every source unit with what the vault returns.

The staged copy of each source (sealed, byte-identical to the planned file) is parsed again;
each unit's normalised content is compared with the vault's records for that unit after
decryption: every order, result and comment exactly, and the patient — entirely when the unit
created it, by identity (names, birth date, sex, NIR) when it was matched to a patient already
stored. The report counts matches, mismatches, missing units, extra units, quarantined units
and duplicates, and lists the first mismatches by position and field path, never by value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labvault import ingest
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.errors import ConfigurationError
from labvault.migrate import attachments
from labvault.migrate.plan import load_plan, source_reader
from labvault.migrate.run import staged_reader
from labvault.vault import Vault
from labvault.vault.imports import UnitCheck

BATCH = 500
SHOWN = 100


@dataclass
class Reconciliation:
    units: int = 0
    results: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    extra: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every source unit accounted for, nothing differs, nothing extra."""
        s = self.statuses
        return s["mismatch"] == 0 and s["missing"] == 0 and self.extra == 0 and self.units > 0

    @property
    def match_rate(self) -> float:
        compared = self.statuses["match"] + self.statuses["mismatch"] + self.statuses["missing"]
        return 1.0 if compared == 0 else self.statuses["match"] / compared

    def to_json(self) -> dict[str, Any]:
        return {"units": self.units, "results_compared": self.results,
                "match": self.statuses["match"], "mismatch": self.statuses["mismatch"],
                "missing": self.statuses["missing"], "extra": self.extra,
                "quarantined": self.statuses["quarantined"],
                "duplicate": self.statuses["duplicate"],
                "erased_since": self.statuses["erased"],
                "match_rate": round(self.match_rate, 6), "complete": self.complete,
                "problems": self.problems}


def verify(vault: Vault, principal: Principal, plan_path: Path, *,
           progress: Callable[[int], None] | None = None) -> Reconciliation:
    plan = load_plan(plan_path)
    desk, mid = vault.imports, plan.migration_id
    info = desk.info(principal, mid)
    if info.plan_sha256 != plan.sha256:
        raise ConfigurationError("this plan file differs from the one the migration ran with")
    if info.erased_at is not None:
        raise ConfigurationError("the staging area was erased: the sources are gone, so the "
                                 "migration can no longer be verified (the certificate keeps "
                                 "the last verification)")
    report = Reconciliation()
    last_seq: dict[int, int] = {}
    for src in plan.sources:
        reader = source_reader(src)
        batch: list[ingest.Unit] = []
        read = staged_reader(vault, principal, plan, Permission.MIGRATION_VERIFY)
        with desk.open_staged(principal, mid, src.index, Permission.MIGRATION_VERIFY) as stream:
            for unit in reader(stream, src.name):
                batch.append(attachments.attach(unit, src.attachment_index, read))
                last_seq[src.index] = unit.seq
                if len(batch) >= BATCH:
                    _check(vault, principal, mid, src.index, batch, report, progress)
            if batch:
                _check(vault, principal, mid, src.index, batch, report, progress)
        last_seq.setdefault(src.index, 0)
    report.extra = desk.extras(principal, mid, last_seq)
    desk.add_report(principal, mid, "verify", report.to_json())
    return report


def _check(vault: Vault, principal: Principal, mid: Any, index: int, batch: list[ingest.Unit],
           report: Reconciliation, progress: Callable[[int], None] | None) -> None:
    checks: list[UnitCheck] = vault.imports.reconcile(principal, mid, index, batch)
    for unit, check in zip(batch, checks, strict=True):
        report.units += 1
        report.statuses[check.status] += 1
        if check.status == "match" and isinstance(unit, ingest.Parsed):
            report.results += unit.record.result_count()
        if check.status in ("mismatch", "missing") and len(report.problems) < SHOWN:
            report.problems.append({"file": index, "position": str(check.position),
                                    "status": check.status, "field": check.detail})
    if progress:
        progress(len(batch))
    batch.clear()


__all__ = ["Reconciliation", "verify"]
