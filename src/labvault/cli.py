"""The ``labvault`` command. Thin: it builds the local operator principal and calls the vault."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from labvault import ingest
from labvault.access.commands import accounts_app
from labvault.access.principal import local_operator
from labvault.api.serve import serve
from labvault.audit.commands import audit_app
from labvault.breach.commands import breach_app
from labvault.cli_support import (
    DEMO_DIR,
    DEMO_MARKER,
    DataDir,
    ask_passphrase,
    console,
    err,
    fail,
    open_vault,
    progress_bar,
    uuid_argument,
)
from labvault.config import CONFIG_NAME, DEFAULT_DATA_DIR, Settings
from labvault.crypto.signing import key_id, public_pem
from labvault.domain.records import PatientRecord
from labvault.errors import LabvaultError
from labvault.leakcheck import LeakReport
from labvault.leakprobe import run_leak_check
from labvault.migrate import make_plan
from labvault.migrate import run as run_migration
from labvault.migrate import verify as verify_migration
from labvault.migrate.commands import export_app, migrate_app
from labvault.patient_commands import patient_report
from labvault.retention_commands import retention_app
from labvault.simulator.command import simulate
from labvault.synthetic import SyntheticLab
from labvault.vault import Vault
from labvault.vault.audit import VERIFIER_FILE, read_verifier_key
from labvault.watch.commands import alerts_app, honeytokens_app, index_care_sites, watch

app = typer.Typer(help="labvault: a laboratory's patients and results, encrypted and audited.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
patient_app = typer.Typer(help="Find and show patients.", no_args_is_help=True)
erase_app = typer.Typer(help="Crypto-shred records.", no_args_is_help=True)
keys_app = typer.Typer(help="Master key versions and rotation.", no_args_is_help=True)
check_app = typer.Typer(help="Checks on the vault's storage.", no_args_is_help=True)
load_app = typer.Typer(help="Load records into the vault.", no_args_is_help=True)
app.add_typer(patient_app, name="patient")
app.add_typer(erase_app, name="erase")
app.add_typer(keys_app, name="keys")
app.add_typer(check_app, name="check")
app.add_typer(load_app, name="load")
app.add_typer(migrate_app, name="migrate")
app.add_typer(export_app, name="export")
app.add_typer(accounts_app, name="accounts")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")
patient_app.command("report")(patient_report)
app.add_typer(breach_app, name="breach")
app.command("serve")(serve)
app.command("simulate")(simulate)
app.add_typer(alerts_app, name="alerts")
app.add_typer(honeytokens_app, name="honeytokens")
app.command("watch")(watch)
app.command("index-care-sites")(index_care_sites)

@app.command()
def init(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL; SQLite in the "
                                                         "data directory by default.")] = None,
    keystore_url: Annotated[str | None, typer.Option(help="URL of the key store, a database "
                                                        "distinct from the data.")] = None,
    passphrase: Annotated[bool, typer.Option("--passphrase/--no-passphrase",
                                             help="Seal the key file under a passphrase.")]
    = False,
) -> None:
    """Create a vault: data directory (0700), key file (0600), database schemas."""
    if (data_dir / CONFIG_NAME).exists():
        err.print(f"error: {data_dir} already holds a vault")
        raise typer.Exit(1)
    base = Settings.embedded(data_dir, passphrase_protected=passphrase)
    settings = Settings(data_dir, database_url or base.database_url,
                        keystore_url or base.keystore_url, base.key_file, passphrase)
    try:
        secret = ask_passphrase("New passphrase", confirm=True) if passphrase else None
        Vault.init(settings, passphrase=secret).close()
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"vault created in {data_dir}")
    console.print(f"audit verifier key written to {data_dir / 'audit-verifier.key'}: move it off "
                  "this machine, to the auditor (`labvault audit verify --key FILE` needs it)")


def _load_synthetic(vault: Vault, patients: int, seed: int) -> tuple[int, int, float]:
    lab = SyntheticLab(seed)
    principal = local_operator("load synthetic test data")
    results = 0

    def counted() -> Iterator[PatientRecord]:
        nonlocal results
        for record in lab.records(patients):
            results += record.result_count()
            yield record

    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("sealing and storing", total=patients)
        vault.put_patients(principal, counted(), progress=lambda n: bar.advance(task, n))
    return patients, results, time.perf_counter() - started


@load_app.command("synthetic")
def load_synthetic(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    patients: Annotated[int, typer.Option(min=1)] = 1000,
    seed: int = 0,
) -> None:
    """Load deterministic synthetic patients (test identities, INS OID .10)."""
    try:
        with open_vault(data_dir) as vault:
            n, results, took = _load_synthetic(vault, patients, seed)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"stored {n} patients and {results} results in {took:.1f} s")


@patient_app.command("find")
def patient_find(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    nir: Annotated[str | None, typer.Option(help="NIR (spaces allowed).")] = None,
    last_name: Annotated[str | None, typer.Option("--name", help="Last name.")] = None,
    birth_date: Annotated[str | None, typer.Option(help="Birth date, YYYY-MM-DD.")] = None,
    purpose: Annotated[str, typer.Option(help="Why you search (audited).")] = "patient lookup",
) -> None:
    """Find patients by NIR, or by last name and birth date."""
    if nir is None and (last_name is None or birth_date is None):
        err.print("error: give --nir, or --name and --birth-date")
        raise typer.Exit(2)
    try:
        born = date.fromisoformat(birth_date) if birth_date else None
    except ValueError:
        err.print("error: --birth-date must be YYYY-MM-DD")
        raise typer.Exit(2) from None
    try:
        with open_vault(data_dir) as vault:
            ids = vault.find_patients(local_operator(purpose), nir=nir, last_name=last_name,
                                      birth_date=born)
    except LabvaultError as exc:
        raise fail(exc) from None
    if not ids:
        console.print("no patient found")
        raise typer.Exit(1)
    for pid in ids:
        console.print(str(pid))


def _show(record: PatientRecord) -> None:
    p = record.patient
    ident = Table(title=f"patient {p.id}", show_header=False)
    rows = [("name", f"{p.last_name} {p.first_names}"), ("birth name", p.birth_name or ""),
            ("born", p.birth_date.isoformat()), ("sex", p.sex.value), ("NIR", p.nir or ""),
            ("INS", f"{p.ins.matricule} ({p.ins.oid.value}, {p.ins.status.value})"
             if p.ins else ""),
            ("address", f"{p.address.line1}, {p.address.postal_code} {p.address.city}"
             if p.address else ""),
            ("phone", p.phone or ""), ("email", p.email or "")]
    for k, v in rows:
        ident.add_row(k, v)
    console.print(ident)
    for order in record.orders:
        t = Table(title=f"order {order.lab_file_number or order.id} — sampled "
                        f"{order.sampled_at:%Y-%m-%d}" if order.sampled_at else "order")
        for col in ("code", "test", "value", "unit", "range", "flag"):
            t.add_column(col)
        for r in order.results:
            t.add_row(f"{r.code_system}:{r.code}", r.label, r.value, r.unit or "",
                      r.reference_range or "", r.abnormal_flag.value if r.abnormal_flag else "")
        console.print(t)
        for c in order.comments:
            console.print(f"  comment: {c.text}")
        for r in order.results:
            for c in r.comments:
                console.print(f"  comment on {r.code}: {c.text}")


@patient_app.command("show")
def patient_show(
    patient_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    purpose: Annotated[str, typer.Option(help="Why you read (audited).")] = "patient review",
) -> None:
    """Show one patient with orders, results and comments."""
    pid = uuid_argument(patient_id, "patient id", "labvault patient find")
    try:
        with open_vault(data_dir) as vault:
            record = vault.get_record(local_operator(purpose), pid)
    except LabvaultError as exc:
        raise fail(exc) from None
    _show(record)


@erase_app.command("patient")
def erase_patient(
    patient_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    purpose: Annotated[str, typer.Option(help="Legal ground (audited).")]
    = "erasure request (GDPR art. 17)",
) -> None:
    """Crypto-shred a patient: their data key is destroyed, every copy becomes unreadable."""
    pid = uuid_argument(patient_id, "patient id", "labvault patient find")
    if not yes:
        typer.confirm(f"Erase patient {pid} for good?", abort=True)
    try:
        with open_vault(data_dir) as vault:
            erasure = vault.erase_patient(local_operator(purpose), pid)
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"patient {pid} erased at {erasure.erased_at:%Y-%m-%d %H:%M:%S} UTC; "
                  f"data key destroyed: {'yes' if erasure.key_destroyed else 'already gone'}")


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """New master key version; rewrap every data key; retire the old versions."""
    try:
        with open_vault(data_dir) as vault, progress_bar() as bar:
            principal = local_operator("master key rotation")
            total = sum(vault.key_status(principal).values())
            task = bar.add_task("rewrapping data keys", total=total)
            rotation = vault.rotate_keys(principal, progress=lambda n: bar.advance(task, n))
    except LabvaultError as exc:
        raise fail(exc) from None
    retired = ", ".join(map(str, rotation.retired)) or "none"
    console.print(f"master key version {rotation.new_version} active; {rotation.rewrapped} data "
                  f"keys rewrapped; retired versions: {retired}")


@keys_app.command("status")
def keys_status(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Data keys per master key version."""
    try:
        with open_vault(data_dir) as vault:
            status = vault.key_status(local_operator("key status"))
    except LabvaultError as exc:
        raise fail(exc) from None
    for version, count in sorted(status.items()):
        console.print(f"master key version {version}: {count} data keys")


@keys_app.command("public")
def keys_public(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print the public key that signs certificates (PEM), for auditors to keep elsewhere."""
    try:
        with open_vault(data_dir) as vault:
            key = vault.signing_public_key()
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(public_pem(key).strip(), highlight=False)
    console.print(f"key id {key_id(key)}", highlight=False)


def _print_report(report: LeakReport) -> None:
    for line in report.summary_lines():
        console.print(line)


@check_app.command("leak")
def check_leak(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Scan the database files (SQLite + WAL, or a pg_dump) and the data directory for any
    plaintext personal value of the vault's patients. Exit 1 if one is found."""
    try:
        settings = Settings.load(data_dir)
        with open_vault(data_dir) as vault:
            report = run_leak_check(vault, settings, local_operator("leak check"))
    except LabvaultError as exc:
        raise fail(exc) from None
    _print_report(report)
    if not report.clean:
        raise typer.Exit(1)


def _demo_migration(vault: Vault, patients: int, seed: int) -> None:
    """An old system's export, written in clear outside the vault, migrated, then deleted."""
    operator = local_operator("demo migration")
    with tempfile.TemporaryDirectory(prefix="labvault-demo-export-") as tmp:
        export, plan_path = Path(tmp) / "old-lis-export.hl7", Path(tmp) / "plan.json"
        with export.open("wb") as f:
            ingest.writer_for("hl7v2")(SyntheticLab(seed).records(patients), f)
        plan = make_plan([export], created_by=operator.actor_id, now=datetime.now(UTC))
        plan.write(plan_path)
        counts = run_migration(vault, operator, plan_path)
        report = verify_migration(vault, operator, plan_path).to_json()
        console.print(f"plan: {plan.totals['units']} messages, {plan.totals['results']} results; "
                      f"run: {counts['new']} new patients, {counts['new'] + counts['stored']} "
                      f"messages stored, {counts['quarantined']} quarantined; verify: "
                      f"{report['match']}/{report['units']} match, complete={report['complete']}")
        gone = vault.imports.erase(operator, plan.migration_id)
        doc = vault.imports.certificate(operator, plan.migration_id, datetime.now(UTC))
        console.print(f"staging key destroyed: {gone.key_destroyed}; certificate signed by key "
                      f"{doc['key_id']}; the clear export is deleted with its folder")


def _demo_audit(vault: Vault, operator, patient_id, verifier: Path) -> None:
    accesses = vault.audit_log.who_read(operator, patient_id)
    for a in accesses:
        console.print(f"  {a.at:%Y-%m-%d %H:%M:%S} {a.actor} ({a.role}) {a.action} "
                      f"for {a.purpose!r}: {a.outcome}")
    report = vault.audit_log.verify(local_operator("demo audit verify"),
                                    read_verifier_key(verifier))
    console.print(f"audit verify: events {report.first}..{report.last} chained and tagged "
                  f"({report.checked} checked with the auditor's key, {report.checkpoints} signed "
                  "checkpoints): intact")


def _demo_watch(vault: Vault, patients: int, seed: int) -> None:
    from labvault.watch import demo as watch_demo

    lab = SyntheticLab(seed)
    ids = [r.id for r in lab.records(min(patients, 40))]
    for line in watch_demo.run(vault, ids, lab.lab_finess[0],
                               lambda text: console.print(text, highlight=False)):
        console.print(f"  alert {line}", highlight=False, soft_wrap=True)


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", "-d")] = DEMO_DIR,
    patients: Annotated[int, typer.Option(min=10)] = 3000,
    seed: int = 2021,
) -> None:
    """Create a vault, load synthetic patients, find one by NIR, show it, migrate a legacy
    export, check for leaks."""
    if data_dir.exists():
        if not data_dir.is_dir() or (any(data_dir.iterdir())
                                     and not (data_dir / DEMO_MARKER).is_file()):
            err.print(f"error: {data_dir} exists and is not a labvault demo; pick another")
            raise typer.Exit(1)
        shutil.rmtree(data_dir)
    try:
        settings = Settings.embedded(data_dir)
        vault = Vault.init(settings)
        (data_dir / DEMO_MARKER).write_text("synthetic demo vault: `labvault demo` replaces it\n")
        try:
            console.rule("1. a new vault")
            console.print(f"data directory {data_dir} (0700), key file master.key (0600), "
                          "key store keys.sqlite, data labvault.sqlite")
            console.rule(f"2. {patients} synthetic patients, sealed field by field")
            n, results, took = _load_synthetic(vault, patients, seed)
            console.print(f"stored {n} patients, {results} results in {took:.1f} s "
                          f"({results / took:,.0f} results/s)")
            console.rule("3. find one by NIR (blind index, no plaintext)")
            target = next(r for r in SyntheticLab(seed).records(patients)
                          if r.patient.nir and r.orders)
            operator = local_operator("demo lookup")
            started = time.perf_counter()
            ids = vault.find_patients(operator, nir=target.patient.nir)
            console.print(f"NIR lookup: {len(ids)} match in "
                          f"{(time.perf_counter() - started) * 1000:.2f} ms")
            _show(vault.get_record(operator, ids[0]))
            console.rule("4. migrate a legacy HL7 v2 export: plan, run, verify, certify, erase")
            _demo_migration(vault, max(patients // 6, 5), seed + 1)
            console.rule("5. the audit: who read that record, and is the log intact?")
            _demo_audit(vault, operator, ids[0], data_dir / VERIFIER_FILE)
            console.rule("6. supervision: a stolen account cut off, a decoy touched")
            _demo_watch(vault, patients, seed)
            console.rule("7. leak check: any plaintext on disk (staging included)?")
            report = run_leak_check(vault, settings, local_operator("demo leak check"))
            _print_report(report)
        finally:
            vault.close()
    except LabvaultError as exc:
        raise fail(exc) from None
    if not report.clean:
        raise typer.Exit(1)
    console.print(f"[green]demo done[/green]: explore with `labvault patient find -d {data_dir} "
                  "--nir …`")


if __name__ == "__main__":  # pragma: no cover
    app()
