"""`labvault migrate verify`: reconcile every source unit with what the vault returns.

The staged copy of each source (sealed, byte-identical to the planned file) is parsed again;
each unit's normalised content is compared with the vault's records for that unit after
decryption: every order, result, comment and attached report exactly, and the patient —
entirely when the unit created it, by identity (names, birth date, sex, NIR) when it was
matched to a patient already stored. The vault counts the outcome (`Verification`) and
records the report: matches, mismatches, missing units, extra units, quarantined units,
duplicates, units of patients erased since, and the first mismatches by position and field
path, never by value. Complete means every planned unit was compared and nothing differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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

BATCH = 500


@dataclass(frozen=True)
class Reconciliation:
    """The report the vault recorded."""

    report: dict[str, Any]

    @property
    def complete(self) -> bool:
        return bool(self.report["complete"])

    @property
    def match_rate(self) -> float:
        return float(self.report["match_rate"])

    @property
    def results(self) -> int:
        return int(self.report["results_compared"])

    def count(self, status: str) -> int:
        return int(self.report[status])

    def to_json(self) -> dict[str, Any]:
        return dict(self.report)


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
    session = desk.verification(principal, mid)
    for src in plan.sources:
        reader = source_reader(src)
        files = src.attachment_index
        read = staged_reader(vault, principal, plan, Permission.MIGRATION_VERIFY)
        batch: list[ingest.Unit] = []
        with desk.open_staged(principal, mid, src.index, Permission.MIGRATION_VERIFY) as stream:
            for unit in reader(stream, src.name):
                batch.append(attachments.attach(unit, files, read))
                if len(batch) >= BATCH:
                    session.check(src.index, batch)
                    if progress:
                        progress(len(batch))
                    batch = []
            if batch:
                session.check(src.index, batch)
                if progress:
                    progress(len(batch))
    return Reconciliation(session.finish())


__all__ = ["Reconciliation", "verify"]
