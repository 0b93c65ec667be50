"""``labvault migrate …`` and ``labvault export …``: thin, they build the principal and call in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography.exceptions import InvalidSignature
from rich.table import Table

from labvault import ingest
from labvault.access.principal import local_operator
from labvault.cli_support import DataDir, console, err, fail, open_vault, progress_bar, uuid_argument
from labvault.config import DEFAULT_DATA_DIR
from labvault.crypto.signing import load_public
from labvault.errors import LabvaultError
from labvault.migrate import certificate
from labvault.migrate.plan import DEFAULT_STAGING_DAYS, load_plan, make_plan
from labvault.migrate.run import run as run_migration
from labvault.migrate.verify import verify as verify_migration
from labvault.private_file import open_private

migrate_app = typer.Typer(help="Migrate from a legacy lab system: plan, run, verify, certify, "
                               "erase.", no_args_is_help=True)
export_app = typer.Typer(help="Export records (portability, or a lab moving on).",
                         no_args_is_help=True)

PlanArg = Annotated[Path, typer.Argument(help="The plan file written by `migrate plan`.")]
Format = Annotated[str | None, typer.Option("--format", "-f",
                                            help=f"One of {', '.join(ingest.FORMATS)}.")]


@migrate_app.command("plan")
def plan_cmd(
    sources: Annotated[list[Path], typer.Argument(help="Source export files.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Plan file to write.")] = None,
    fmt: Format = None,
    mapping: Annotated[Path | None, typer.Option(help="CSV mapping file (TOML).")] = None,
    staging_days: Annotated[int, typer.Option(min=1, max=365, help="Days before the staging "
                                              "area is erased automatically.")]
    = DEFAULT_STAGING_DAYS,
) -> None:
    """Inventory the sources (formats, counts, encodings, dates, anomalies); store nothing."""
    try:
        total = sum(p.stat().st_size for p in sources if p.is_file())
        with progress_bar() as bar:
            task = bar.add_task("reading sources", total=total)
            plan = make_plan(sources, created_by=local_operator("migration plan").actor_id,
                             now=datetime.now(UTC), fmt=fmt, mapping=mapping,
                             staging_days=staging_days, progress=lambda n: bar.advance(task, n))
        path = out or Path(f"migration-plan-{plan.migration_id.hex[:8]}.json")
        plan.write(path)
    except (LabvaultError, OSError) as exc:
        raise fail(exc) if isinstance(exc, LabvaultError) else _os_fail(exc) from None
    t = Table(title=f"migration {plan.migration_id}")
    for col in ("file", "format", "encoding", "units", "rejected", "orders", "results",
                "dates", "anomalies"):
        t.add_column(col)
    for s in plan.sources:
        t.add_row(s.name, s.format, s.encoding or "?", str(s.units), str(s.rejected),
                  str(s.orders), str(s.results), f"{s.first_date or '?'} → {s.last_date or '?'}",
                  str(sum(s.anomalies.values())))
    console.print(t)
    for s in plan.sources:
        for kind, n in sorted(s.anomalies.items(), key=lambda kv: -kv[1])[:10]:
            console.print(f"  {s.name}: {n} × {kind}")
    est = plan.to_json()["estimate"]["seconds"]
    console.print(f"estimated import: {est // 60} min {est % 60} s; plan written to {path}")


def _os_fail(exc: OSError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.strerror or type(exc).__name__}")
    return typer.Exit(1)


@migrate_app.command("run")
def run_cmd(
    plan: PlanArg,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Units per transaction.")]
    = 500,
) -> None:
    """Stage the sources sealed and import them; resumable: run it again after any stop."""
    try:
        p = load_plan(plan)
        with open_vault(data_dir) as vault, progress_bar() as bar:
            staged = bar.add_task("staging (sealed copy)", total=sum(s.size for s in p.sources))
            imported = bar.add_task("importing results", total=p.totals["results"])

            def progress(what: str, n: int) -> None:
                if what == "staged":
                    bar.advance(staged, n)
                elif what == "results":
                    bar.advance(imported, n)

            counts = run_migration(vault, local_operator("migration run"), plan,
                                   progress=progress,
                                   batch_size=batch_size)
            totals = vault.imports.unit_counts(local_operator("migration run"), p.migration_id)
    except LabvaultError as exc:
        raise fail(exc) from None
    units = {k: sum(c[k] for c in totals.values())
             for k in ("new", "stored", "quarantined", "duplicate")}
    read = p.totals["units"]
    console.print(f"this run: {counts['new'] + counts['stored']} units stored, "
                  f"{counts['quarantined']} quarantined, {counts['duplicate']} duplicates, "
                  f"{counts['results']} results")
    console.print(f"migration: read {read} = stored {units['new'] + units['stored']} "
                  f"+ quarantined {units['quarantined']} + duplicates {units['duplicate']}"
                  f"{'' if sum(units.values()) == read else '  [red](does not add up)[/red]'}")


@migrate_app.command("verify")
def verify_cmd(plan: PlanArg, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Reconcile every source unit with the vault's decrypted records. Exit 1 unless complete."""
    try:
        p = load_plan(plan)
        with open_vault(data_dir) as vault, progress_bar() as bar:
            task = bar.add_task("reconciling units", total=p.totals["units"])
            report = verify_migration(vault, local_operator("migration verification"), plan,
                                      progress=lambda n: bar.advance(task, n))
    except LabvaultError as exc:
        raise fail(exc) from None
    r = report.to_json()
    console.print(f"units {r['units']}: match {r['match']}, mismatch {r['mismatch']}, missing "
                  f"{r['missing']}, extra {r['extra']}, quarantined {r['quarantined']}, "
                  f"duplicates {r['duplicate']}; results compared {r['results_compared']}; "
                  f"match rate {r['match_rate']:.2%}")
    for problem in r["problems"][:20]:
        console.print(f"  {problem['status']}: {problem['position']} ({problem['field'] or ''})")
    if not report.complete:
        console.print("[red]verification incomplete[/red]")
        raise typer.Exit(1)
    console.print("[green]verification complete[/green]")


@migrate_app.command("certificate")
def certificate_cmd(
    plan: Annotated[Path | None, typer.Argument(help="The plan file.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Certificate JSON file.")]
    = None,
    check: Annotated[Path | None, typer.Option("--check", help="Verify this certificate.")]
    = None,
    public_key: Annotated[Path | None, typer.Option(help="The lab's public key (PEM) to check "
                                                         "against; default: this vault's.")]
    = None,
) -> None:
    """Issue the signed migration certificate (JSON + HTML), or --check one."""
    if check is not None:
        _check_certificate(check, public_key, data_dir)
        return
    if plan is None:
        err.print("error: give the plan file, or --check FILE")
        raise typer.Exit(2)
    try:
        p = load_plan(plan)
        with open_vault(data_dir) as vault:
            doc = certificate.build(vault, local_operator("migration certificate"), plan,
                                    datetime.now(UTC))
    except LabvaultError as exc:
        raise fail(exc) from None
    path = out or Path(f"migration-certificate-{p.migration_id.hex[:8]}.json")
    html = certificate.write(doc, path)
    console.print(f"certificate written to {path} and {html} (key id {doc['key_id']})")


def _check_certificate(path: Path, public_key: Path | None, data_dir: Path) -> None:
    try:
        document = certificate.load(path)
        if public_key is not None:
            trusted = load_public(public_key.read_bytes())
        else:
            with open_vault(data_dir) as vault:
                trusted = vault.signing_public_key()
        body = certificate.check(document, trusted)
    except (InvalidSignature, ValueError, OSError) as exc:
        err.print(f"[red]certificate INVALID[/red]: {exc or type(exc).__name__}")
        raise typer.Exit(1) from None
    except LabvaultError as exc:
        raise fail(exc) from None
    recon = body.get("reconciliation") or {}
    console.print(f"certificate valid: migration {body['migration_id']}, issued "
                  f"{body['issued_at']} by {body['issued_by']}; reconciliation "
                  f"{'complete' if recon.get('complete') else 'NOT complete'}; staging "
                  f"{'erased' if body['staging']['erasure'] else 'not erased'}")


@migrate_app.command("erase")
def erase_cmd(
    plan: PlanArg,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy the staging key, the staged files and the quarantined bytes of a migration."""
    try:
        p = load_plan(plan)
        if not yes:
            typer.confirm(f"Erase the staging area of migration {p.migration_id}? Verification "
                          "will no longer be possible.", abort=True)
        with open_vault(data_dir) as vault:
            gone = vault.imports.erase(local_operator("migration staging erasure"), p.migration_id)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"staging area erased at {gone.erased_at:%Y-%m-%d %H:%M:%S} UTC: key destroyed "
                  f"{'yes' if gone.key_destroyed else 'already gone'}, {gone.files_removed} "
                  f"file(s) removed, {gone.quarantine_bytes_dropped} quarantined unit(s) dropped; "
                  "issue the certificate again to record it")


@migrate_app.command("status")
def status_cmd(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Every migration's staging area, its size and its erasure deadline."""
    try:
        with open_vault(data_dir) as vault:
            infos = vault.imports.migrations(local_operator("migration status"))
    except LabvaultError as exc:
        raise fail(exc) from None
    t = Table(title="migrations")
    t.add_column("migration", no_wrap=True)
    for col in ("status", "created", "by", "staged files", "bytes", "erase deadline", "erased"):
        t.add_column(col)
    for i in infos:
        t.add_row(str(i.id), i.status, f"{i.created_at:%Y-%m-%d %H:%M}", i.created_by,
                  str(i.staged_files), str(i.staged_bytes), f"{i.staging_deadline:%Y-%m-%d %H:%M}",
                  f"{i.erased_at:%Y-%m-%d %H:%M}" if i.erased_at else "")
    console.print(t)


@migrate_app.command("quarantine")
def quarantine_cmd(plan: PlanArg, data_dir: DataDir = DEFAULT_DATA_DIR,
                   limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """The quarantined units: file, position, field and reason (never the content)."""
    try:
        p = load_plan(plan)
        names = {s.index: s.name for s in p.sources}
        with open_vault(data_dir) as vault:
            entries = vault.imports.quarantine(local_operator("quarantine review"), p.migration_id)
            t = Table(title=f"quarantine of migration {p.migration_id}")
            for col in ("file", "unit", "line", "segment", "field", "reason"):
                t.add_column(col)
            for n, e in enumerate(entries):
                if n >= limit:
                    break
                t.add_row(names.get(e.file_index, str(e.file_index)), str(e.seq),
                          str(e.line or ""), e.segment or "", e.field, e.reason)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(t)


@export_app.command("patient")
def export_patient(
    patient_id: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (mode 0600).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: Annotated[str, typer.Option("--format", "-f")] = "fhir",
    purpose: Annotated[str, typer.Option(help="Why (audited).")]
    = "data portability (GDPR art. 20)",
) -> None:
    """One patient's record in FHIR R4 (a Bundle) or another format."""
    pid = uuid_argument(patient_id, "patient id", "labvault patient find")
    try:
        writer = ingest.writer_for(fmt)
        with open_vault(data_dir) as vault:
            record = vault.get_record(local_operator(purpose), pid)
        with open_private(out, "wb") as f:
            if fmt == "fhir":  # one Bundle, values written exactly as stored
                writer([record], f, ndjson=False, indent=2)
            else:
                writer([record], f)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"patient {pid} written to {out} ({fmt}); the file holds personal data in "
                  "clear: hand it over, then delete it")


@export_app.command("all")
def export_all(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (mode 0600).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: Annotated[str, typer.Option("--format", "-f")] = "hl7v2",
    purpose: Annotated[str, typer.Option(help="Why (audited).")] = "migration to another system",
) -> None:
    """Every live patient record, re-emitted as HL7 v2, HPRIM, FHIR NDJSON or CSV."""
    try:
        writer = ingest.writer_for(fmt)
        with open_vault(data_dir) as vault, progress_bar() as bar, open_private(out, "wb") as f:
            principal = local_operator(purpose)
            task = bar.add_task("exporting patients", total=vault.count_patients(principal))
            writer(vault.iter_records(principal, progress=lambda n: bar.advance(task, n)), f)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"written to {out} ({fmt}); the file holds personal data in clear")


__all__ = ["export_app", "migrate_app"]
