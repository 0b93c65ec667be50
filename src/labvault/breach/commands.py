"""``labvault breach …``: record an incident and compute its scope. Thin: the local operator's
principal and the breach desk (every command is audited)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from labvault.breach.commands_notices import register as add_notice_commands
from labvault.breach.commands_regulator import register as add_regulator_commands
from labvault.breach.desk import VECTORS
from labvault.breach.scope import Selectors
from labvault.cli_support import (
    DataDir,
    call_desk,
    console,
    err,
    fail,
    local_operator,
    open_vault,
    progress_bar,
    uuid_argument,
    when_option,
)
from labvault.config import DEFAULT_DATA_DIR
from labvault.errors import InvalidRecord, LabvaultError
from labvault.private_file import open_private

breach_app = typer.Typer(help="Breach response: incidents, their scope, the regulator's documents, notices.",
                         no_args_is_help=True)


@breach_app.command("open")
def open_incident(
    vector: Annotated[str, typer.Option(help=f"One of: {', '.join(VECTORS)}.")],
    description: Annotated[str, typer.Option(help="What is known (stored sealed).")],
    detected_at: Annotated[str | None, typer.Option(
        help="When the breach was detected (ISO 8601; default: now).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Record a suspected breach; the 72-hour clock of GDPR article 33 starts at detection."""
    at = when_option(detected_at, "--detected-at") or datetime.now(UTC)
    inc = call_desk(data_dir, "breach", "incident response", "open_incident", detected_at=at,
                    vector=vector, description=description)
    console.print(f"incident {inc.id} opened; notify the regulator before "
                  f"{inc.deadline_at:%Y-%m-%d %H:%M %Z}", highlight=False)


@breach_app.command("list")
def list_incidents(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Incidents, oldest first (no description: `show` would print it)."""
    for inc in call_desk(data_dir, "breach", "incident review", "incidents"):
        console.print(f"{inc.id}  {inc.status:6}  {inc.vector:20}  detected "
                      f"{inc.detected_at:%Y-%m-%d %H:%M}  deadline {inc.deadline_at:%Y-%m-%d %H:%M}",
                      highlight=False)


@breach_app.command("scope")
def scope_incident(
    incident_id: str,
    out: Annotated[Path, typer.Option(help="File (0600) for the signed scope document.")],
    actor: Annotated[str | None, typer.Option(help="account:<id> (its tokens included).")] = None,
    token: Annotated[str | None, typer.Option(help="An API token's id.")] = None,
    source: Annotated[str | None, typer.Option(help="An address or a network (CIDR).")] = None,
    since: Annotated[str | None, typer.Option(help="Window start (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Window end (ISO 8601).")] = None,
    key: Annotated[int | None, typer.Option(
        help="A compromised master key version: every patient whose key it wraps.")] = None,
    staging: Annotated[str | None, typer.Option(
        help="A leaked staging area (migration id): the patients it held.")] = None,
    staging_key_compromised: Annotated[bool, typer.Option(
        help="The staging area's key leaked too (the data left decrypted).")] = False,
    up_to_seq: Annotated[int | None, typer.Option(
        help="Reproduce a scope: the audit position it was computed at.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Which patients the selected activity reached, and which of their data: the signed
    document (internal ids and categories) goes to --out; totals are printed."""
    iid = uuid_argument(incident_id, "incident id", "labvault breach list")
    try:
        selectors = Selectors(actor=actor, token=token, source=source,
                              since=when_option(since, "--since"), until=when_option(until, "--until"),
                              key=key, staging=staging,
                              staging_key_compromised=staging_key_compromised)
    except InvalidRecord as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    scope = call_desk(data_dir, "breach", "incident scope", "scope", iid, selectors,
                      up_to_seq=up_to_seq)
    with open_private(out) as f:
        json.dump({"document": scope.document, "signature": scope.signature.hex(),
                   "key_id": scope.key_id, "digest": scope.digest.hex()}, f, sort_keys=True)
    totals = scope.document["totals"]
    console.print(f"{totals['patients']} patients reached by {scope.document['events']} events "
                  f"(audit up to event {scope.document['audit']['up_to_seq']}); by category: "
                  + ", ".join(f"{k} {v}" for k, v in totals["by_category"].items())
                  + "; special categories: "
                  + (", ".join(f"{k} {v}" for k, v in totals["by_special"].items()) or "none")
                  + "; exposure: "
                  + ", ".join(f"{k} {v}" for k, v in totals["by_exposure"].items()),
                  highlight=False, soft_wrap=True)
    console.print(f"signed scope written to {out} (key {scope.key_id})", highlight=False)


@breach_app.command("classify-stored")
def classify_stored(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Classify records stored before findings existed (a vault upgraded from an earlier
    version), so that scopes name their special categories; a rerun does nothing."""
    try:
        with open_vault(data_dir) as vault, progress_bar() as bar:
            operator = local_operator("breach classification")
            task = bar.add_task("patients", total=vault.count_patients(operator))
            rows = vault.breach.classify_stored(operator, lambda n: bar.advance(task, n))
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"{rows} results and comments classified", highlight=False)


add_regulator_commands(breach_app)
add_notice_commands(breach_app)

__all__ = ["breach_app"]
