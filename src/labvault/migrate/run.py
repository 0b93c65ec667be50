"""`labvault migrate run`: stage the sources sealed, then import them through the vault.

Resumable and idempotent: the vault commits each batch of units with their outcomes in one
transaction, in source order, so a run killed at any moment (even SIGKILL) and started again
skips exactly the committed units and ends with every source unit stored, quarantined or
counted as a duplicate once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from labvault import ingest
from labvault.access.permissions import Permission
from labvault.access.principal import Principal
from labvault.migrate import attachments
from labvault.migrate.plan import Plan, load_plan, source_reader
from labvault.vault import Vault

Progress = Callable[[str, int], None]  # (what, amount): "staged" bytes, "units", "results"
BATCH = 500


def run(vault: Vault, principal: Principal, plan_path: Path, *,
        progress: Progress | None = None, batch_size: int = BATCH) -> Counter[str]:
    """Stage and import every source of the plan; returns the counts of this run."""
    plan = load_plan(plan_path)
    with vault.imports.importing(plan.migration_id):
        return _run(vault, principal, plan, progress, batch_size)


def _run(vault: Vault, principal: Principal, plan: Plan, progress: Progress | None,
         batch_size: int) -> Counter[str]:
    desk, mid = vault.imports, plan.migration_id
    deadline = plan.created_at + timedelta(days=plan.staging_days)
    desk.begin(principal, mid, plan.raw, deadline)
    for src in plan.sources:
        desk.stage(principal, mid, src.index, Path(src.path), bytes.fromhex(src.sha256),
                   progress=(lambda n: progress("staged", n)) if progress else None)
        for a in src.attachments:
            desk.stage(principal, mid, a["index"], Path(a["path"]), bytes.fromhex(a["sha256"]))
    done = desk.progress(principal, mid)
    counts: Counter[str] = Counter()
    for src in plan.sources:
        reader = source_reader(src)
        files = src.attachment_index
        skip = done.get(src.index, 0)
        if skip >= src.units:
            continue
        with desk.open_staged(principal, mid, src.index) as stream:
            batch: list[ingest.Unit] = []
            read = staged_reader(vault, principal, plan, Permission.MIGRATION_RUN)
            for unit in reader(stream, src.name):
                if unit.seq <= skip:
                    continue
                batch.append(attachments.attach(unit, files, read))
                if len(batch) >= batch_size:
                    _flush(vault, principal, plan, src.index, batch, counts, progress)
            if batch:
                _flush(vault, principal, plan, src.index, batch, counts, progress)
    desk.finish_run(principal, mid)
    return counts


def staged_reader(vault: Vault, principal: Principal, plan: Plan,
                  permission: Permission) -> Callable[[int], bytes]:
    """Reads an attached report file back from its sealed staged copy."""
    def read(index: int) -> bytes:
        with vault.imports.open_staged(principal, plan.migration_id, index, permission) as f:
            return f.read(attachments.MAX_BYTES + 1)[:attachments.MAX_BYTES]

    return read


def _flush(vault: Vault, principal: Principal, plan: Plan, index: int, batch: list[ingest.Unit],
           counts: Counter[str], progress: Progress | None) -> None:
    got = vault.imports.import_units(principal, plan.migration_id, index, batch)
    counts.update(got)
    if progress:
        progress("units", len(batch))
        progress("results", got["results"])
    batch.clear()


__all__ = ["run", "staged_reader"]
