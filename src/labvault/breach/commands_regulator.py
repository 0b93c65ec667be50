"""``labvault breach draft | register | notified | not-notified | verify``: the regulator's
documents of an incident and the record of who was notified. Thin: the local operator's
principal and `RegulatorDesk` (every command but ``verify`` is audited)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from labvault.access.principal import local_operator
from labvault.breach import regulator_labels as lb
from labvault.breach.config import BreachConfig
from labvault.breach.regulator import RegulatorDesk, Statements, check
from labvault.cli_support import DataDir, console, err, fail, open_vault, uuid_argument, when_option
from labvault.config import DEFAULT_DATA_DIR
from labvault.crypto.signing import InvalidSignature, load_public
from labvault.errors import LabvaultError
from labvault.private_file import write_private

Recipient = Annotated[str, typer.Option("--to", help=f"One of: {', '.join(lb.RECIPIENTS)}.")]


def _with_desk(data_dir: Path, purpose: str, act: Callable[[RegulatorDesk, Any], Any]) -> Any:
    """Run `act(desk, principal)` on the vault as the local operator; a labvault error becomes
    the one-line failure, a stored scope failing its signature check exit 1."""
    try:
        with open_vault(data_dir) as vault:
            return act(vault.breach.regulator, local_operator(purpose))
    except InvalidSignature:
        err.print("[red]error:[/red] the incident's stored scope fails its signature check")
        err.print("fix: compute the scope again (`labvault breach scope`) and look into how the "
                  "database was changed")
        raise typer.Exit(1) from None
    except LabvaultError as exc:
        raise fail(exc) from None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a repeated key is refused (two parsers could read two documents)."""
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise InvalidSignature("a key is repeated in the document")
    return dict(pairs)


def register(app: typer.Typer) -> None:
    """Add the regulator's commands to the ``breach`` app."""
    app.command("draft")(draft)
    app.command("register")(register_cmd)
    app.command("notified")(notified)
    app.command("not-notified")(not_notified)
    app.command("verify")(verify_cmd)


def draft(
    incident_id: str,
    out: Annotated[Path, typer.Option(help="Directory for the four documents (files 0600).")],
    detection: Annotated[str | None, typer.Option(help="How the breach was detected.")] = None,
    causes: Annotated[str | None, typer.Option(help="Causes, if identified.")] = None,
    care_impact: Annotated[str | None, typer.Option(help="Effect on the safety of care.")] = None,
    delay_reason: Annotated[str | None, typer.Option(
        help="Why the notification is late (required past the 72 hours).")] = None,
    measure: Annotated[list[str] | None, typer.Option(
        help="A measure taken (repeatable), beyond those labvault recorded.")] = None,
    proposed: Annotated[list[str] | None, typer.Option(
        help="A measure proposed (repeatable).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Draft the notification to the CNIL (GDPR art. 33) and the report to the regional health
    agency and CERT Santé (CSP art. L. 1111-8-2), signed, as JSON and printable HTML."""
    iid = uuid_argument(incident_id, "incident id", "labvault breach list")
    try:
        statements = Statements(detection=detection, causes=causes, care_impact=care_impact,
                                delay_reason=delay_reason, measures_taken=tuple(measure or ()),
                                measures_proposed=tuple(proposed or ()))
        config = BreachConfig.load(data_dir)
    except LabvaultError as exc:
        raise fail(exc) from None
    made = _with_desk(data_dir, "breach notification draft",
                      lambda desk, who: desk.draft(who, iid, config, statements))
    for path in made.write(out):
        console.print(f"written {path}", highlight=False)
    doc = made.cnil["document"]
    when = f"{made.deadline_at.astimezone(UTC):%Y-%m-%d %H:%M %Z}"
    if made.late:
        console.print(f"[red]LATE[/red]: the 72-hour deadline passed at {when}; the draft "
                      "states the reasons for the delay", highlight=False)
    else:
        console.print(f"notify the CNIL before {when} ({doc['deadline']['hours_left']} h left)",
                      highlight=False)
    if doc["missing"]:
        err.print(f"note: breach.toml [controller] lacks {', '.join(doc['missing'])}")


def register_cmd(
    out: Annotated[Path | None, typer.Option(
        help="Write every entry, descriptions included, as one JSON array (0600).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """The breach register (GDPR art. 33(5)): one signed entry per incident. Without --out,
    JSON lines on standard output, without the incidents' descriptions."""
    entries = _with_desk(data_dir, "breach register",
                         lambda desk, who: desk.register(who, with_description=out is not None))
    if out is None:
        for entry in entries:
            sys.stdout.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        return
    write_private(out, json.dumps(entries, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    console.print(f"{len(entries)} register entries written to {out}", highlight=False)


def notified(
    incident_id: str,
    to: Recipient,
    at: Annotated[str | None, typer.Option(help="When (ISO 8601; default: now).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="The receipt's reference (letters, digits, ._/-).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Record that the CNIL, the ARS or the people were notified (for the register)."""
    iid = uuid_argument(incident_id, "incident id", "labvault breach list")
    when = when_option(at, "--at") or datetime.now(UTC)
    _with_desk(data_dir, "breach notification record",
               lambda desk, who: desk.record_notification(who, iid, to, at=when,
                                                          reference=reference))
    console.print(f"recorded: {lb.RECIPIENTS[to]} notified", highlight=False)


def not_notified(
    incident_id: str,
    to: Recipient,
    reason: Annotated[str, typer.Option(help="A reason code: cnil "
                                        f"({', '.join(lb.NOT_NOTIFIED['cnil'])}); people "
                                        f"({', '.join(lb.NOT_NOTIFIED['people'])}); ars "
                                        f"({', '.join(lb.NOT_NOTIFIED['ars'])}).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Record why the CNIL, the ARS or the people are not notified (for the register)."""
    iid = uuid_argument(incident_id, "incident id", "labvault breach list")
    _with_desk(data_dir, "breach notification record",
               lambda desk, who: desk.record_not_notified(who, iid, to, reason))
    console.print(f"recorded: {lb.RECIPIENTS[to]} not notified "
                  f"({lb.NOT_NOTIFIED[to][reason]})", highlight=False)


def verify_cmd(
    document: Annotated[Path, typer.Argument(help="A signed draft or register entry (JSON).")],
    public_key: Annotated[Path, typer.Option(help="The lab's public key (PEM), from "
                                                  "`labvault keys public`.")],
) -> None:
    """Verify a signed draft, report or register entry against the lab's public key."""
    try:
        loaded = json.loads(document.read_text(encoding="utf-8"), object_pairs_hook=_unique)
        trusted = load_public(public_key.read_bytes())
        envelopes = loaded if isinstance(loaded, list) else [loaded]
        bodies = [check(e, trusted) for e in envelopes]
    except (InvalidSignature, ValueError, OSError) as exc:
        err.print(f"[red]INVALID[/red]: {exc or type(exc).__name__}")
        raise typer.Exit(1) from None
    for body in bodies:
        console.print(f"valid: {body['kind']} of incident {body['incident']['id']}, issued "
                      f"{body['issued_at']}", highlight=False)


__all__ = ["register"]
