"""``labvault audit …``: verify, export and read the audit log. Thin: it builds the local
operator principal and calls the vault's audit desk (every command is itself audited)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from labvault.access.principal import local_operator
from labvault.audit.chain import TamperDetected
from labvault.audit.export import parse_target
from labvault.audit.log import LoggedEvent
from labvault.cli_support import DataDir, console, err, fail, open_vault, progress_bar, uuid_argument
from labvault.config import DEFAULT_DATA_DIR
from labvault.errors import LabvaultError
from labvault.private_file import open_private
from labvault.vault.audit import VERIFIER_FILE, load_checkpoints, read_verifier_key

audit_app = typer.Typer(help="The tamper-evident audit log: verify, export, read.",
                        no_args_is_help=True)
LONG_RUN = 50_000


def _os_fail(exc: OSError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.strerror or type(exc).__name__}")
    return typer.Exit(1)


@audit_app.command("verify")
def verify_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    start: Annotated[int, typer.Option("--from", min=1, help="First event to check.")] = 1,
    end: Annotated[int | None, typer.Option("--to", min=1, help="Last event to check.")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="The auditor's verifier key file "
                                             "(k0): checks every event's tag.")] = None,
    checkpoints: Annotated[Path | None, typer.Option(
        "--checkpoints", help="An exported checkpoint file to check the log against.")] = None,
) -> None:
    """Check the chain; on tampering print the first position and kind, and exit 1."""
    try:
        k0 = read_verifier_key(key) if key else None
        marks = load_checkpoints(checkpoints) if checkpoints else None
        with open_vault(data_dir) as vault:
            length = vault.audit_log.length()
            total = max(0, min(end or length, length) - start + 1)
            principal = local_operator("audit verification")
            if total >= LONG_RUN:
                with progress_bar() as bar:
                    task = bar.add_task("verifying the audit log", total=total)
                    report = vault.audit_log.verify(principal, k0, start, end, marks,
                                                    progress=lambda n: bar.advance(task, n))
            else:
                report = vault.audit_log.verify(principal, k0, start, end, marks)
    except TamperDetected as exc:
        err.print(f"[red]TAMPERED:[/red] the audit log was altered at event {exc.position} "
                  f"({exc.kind})")
        raise typer.Exit(1) from None
    except LabvaultError as exc:
        raise fail(exc) from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError):
            raise _os_fail(exc) from None
        err.print("[red]error:[/red] the checkpoint file is not a labvault checkpoint export")
        raise typer.Exit(1) from None
    console.print(f"audit log intact: {report.checked} events checked "
                  f"({report.first}–{report.last}), {report.checkpoints} signed checkpoints "
                  f"matched ({report.exported_checkpoints} from the exported copy)")
    if not report.audited:
        err.print("warning: the audit log could not record this verification (it is not "
                  "writable)")
    if not report.tags_checked:
        console.print("tags not checked: give --key with the auditor's verifier key file")
        if (data_dir / VERIFIER_FILE).exists():
            console.print(f"note: {data_dir / VERIFIER_FILE} is still on this machine; move it "
                          "to the auditor")


@audit_app.command("checkpoints")
def checkpoints_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file to write.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export the signed checkpoints and the public key, to keep off this machine."""
    try:
        with open_vault(data_dir) as vault:
            export = vault.audit_log.checkpoints(local_operator("audit checkpoint export"))
        out.write_text(json.dumps(export.to_json(), indent=1) + "\n", "utf-8")
    except LabvaultError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise _os_fail(exc) from None
    console.print(f"{len(export.checkpoints)} signed checkpoints (up to event "
                  f"{export.checkpoints[-1].last if export.checkpoints else 0}, key "
                  f"{export.key_id}) written to {out}")


@audit_app.command("export")
def export_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or syslog.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write.")] = None,
    syslog: Annotated[str | None, typer.Option(
        "--syslog", help="Send to a collector: udp://host:port or tcp://host:port.")] = None,
    since: Annotated[int, typer.Option("--from", min=1, help="First event to export.")] = 1,
) -> None:
    """Export events as JSON lines or RFC 5424 syslog messages (ids, never personal values)."""
    if fmt not in ("jsonl", "syslog") or (out is None) == (syslog is None):
        err.print("error: give --format jsonl|syslog and exactly one of --out or --syslog")
        raise typer.Exit(2)
    try:
        sender = parse_target(syslog) if syslog else None
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    n = 0
    try:
        with open_vault(data_dir) as vault:
            lines = vault.audit_log.export(local_operator("audit export"),
                                           "syslog" if sender else fmt, since - 1)
            if sender is not None:
                for line in lines:
                    sender.send(line)
                    n += 1
                sender.close()
            elif out is not None:
                with open_private(out) as f:
                    for line in lines:
                        f.write(line + "\n")
                        n += 1
    except LabvaultError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise _os_fail(exc) from None
    console.print(f"{n} events exported to {syslog or out}")


def _table(events: list[LoggedEvent], title: str) -> Table:
    t = Table(title=title)
    for col in ("seq", "at (UTC)", "actor", "role", "action", "outcome", "purpose", "patients"):
        t.add_column(col)
    for le in events:
        e = le.event
        t.add_row(str(le.seq), f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.role, e.action,
                  e.outcome, e.purpose, str(len(e.patient_ids)))
    return t


@audit_app.command("tail")
def tail_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    n: Annotated[int, typer.Option("-n", min=1, max=10_000, help="How many events.")] = 20,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new events.")] = False,
    every: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 2.0,
) -> None:
    """The last N events (with --follow, then every new one as it is written)."""
    try:
        with open_vault(data_dir) as vault:
            def wait() -> bool:
                time.sleep(every)
                return True

            batches = vault.audit_log.follow(local_operator("audit tail"), n,
                                             wait if follow else None)
            for i, events in enumerate(batches):
                if events or i == 0:
                    console.print(_table(events, f"last {len(events)} audit events" if i == 0
                                         else ""))
    except LabvaultError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@audit_app.command("who-read")
def who_read_cmd(
    patient_id: Annotated[str, typer.Argument(help="The patient's internal id.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    purpose: Annotated[str, typer.Option(help="Why you ask (audited).")] = "access report",
) -> None:
    """Who accessed a patient's record: when, who, role, action, purpose, outcome."""
    pid = uuid_argument(patient_id, "patient id", "labvault patient find")
    try:
        with open_vault(data_dir) as vault:
            accesses = vault.audit_log.who_read(local_operator(purpose), pid)
    except LabvaultError as exc:
        raise fail(exc) from None
    t = Table(title=f"accesses to patient {pid}")
    for col in ("seq", "at (UTC)", "actor", "role", "action", "purpose", "outcome"):
        t.add_column(col)
    for a in accesses:
        t.add_row(str(a.seq), f"{a.at:%Y-%m-%d %H:%M:%S}", a.actor, a.role, a.action, a.purpose,
                  a.outcome)
    console.print(t)
    console.print(f"{len(accesses)} accesses")


@audit_app.command("recover")
def recover_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    journal: Annotated[Path | None, typer.Option(help="The audit file copy (default: the one "
                                                 "configured).")] = None,
) -> None:
    """Chain the events the file copy kept while the database was unavailable (once each)."""
    try:
        with open_vault(data_dir) as vault:
            done = vault.audit_log.recover(local_operator("audit recovery"), journal)
    except LabvaultError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise _os_fail(exc) from None
    console.print(f"{done.recovered} events recovered into the chain "
                  f"({done.already} already there)")
