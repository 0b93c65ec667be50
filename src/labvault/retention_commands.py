"""``labvault retention``: the retention policy applied, its certificates, and the daily schedule
that ``labvault serve`` runs.

The terms come from ``[retention]`` of ``breach.toml`` (see `labvault.vault.retention_policy`).
``run --dry-run`` lists what would go (counts and internal ids) and changes nothing; ``run``
crypto-shreds it and prints the signed certificate's number; ``certificate N --out FILE``
writes it as JSON and HTML (mode 0600); ``check FILE`` verifies its signature (exit 1 if not).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.exceptions import InvalidSignature
from jinja2 import Environment, PackageLoader, select_autoescape

from labvault.access.principal import Principal, local_operator
from labvault.breach.config import BreachConfig
from labvault.cli_support import DataDir, console, err, fail, open_vault
from labvault.clock import Clock
from labvault.config import DEFAULT_DATA_DIR
from labvault.crypto.signing import load_public
from labvault.errors import LabvaultError
from labvault.migrate.certificate import load as load_document
from labvault.periodic import Periodic
from labvault.private_file import write_private
from labvault.vault import Vault
from labvault.vault.retention import RetentionDesk, RetentionRun
from labvault.vault.retention_policy import RetentionPolicy, check

log = logging.getLogger("labvault.retention")
retention_app = typer.Typer(help="Crypto-shred what is past its retention term; signed "
                                 "certificates.", no_args_is_help=True)
SCHEDULE_PURPOSE = "retention policy (scheduled)"
POLL_SECONDS = 600.0


def policy_of(data_dir: Path) -> RetentionPolicy:
    return RetentionPolicy.from_config(BreachConfig.load(data_dir)["retention"])


def render_html(document: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("labvault.migrate", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("erasure_certificate.html.j2").render(doc=document,
                                                                 c=document["certificate"])


def write_certificate(document: dict[str, Any], json_path: Path) -> Path:
    """The certificate as JSON at `json_path` and as HTML beside it, both 0600; the HTML path."""
    write_private(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    html_path = json_path.with_suffix(".html")
    write_private(html_path, render_html(document))
    return html_path


class RetentionSchedule:
    """The policy applied once a day: `tick(now)` runs it when the last certificate is older
    than `every` (or there is none), so restarts neither skip nor repeat a day."""

    def __init__(self, desk: RetentionDesk, policy: RetentionPolicy,
                 every: timedelta = timedelta(days=1)) -> None:
        self._desk, self._policy, self._every = desk, policy, every

    def __repr__(self) -> str:
        return f"RetentionSchedule(every={self._every})"

    def due(self, now: datetime) -> bool:
        last = self._desk.last_run_at()
        return last is None or now - last >= self._every

    def tick(self, now: datetime) -> RetentionRun | None:
        if not self.due(now):
            return None
        principal: Principal = local_operator(SCHEDULE_PURPOSE, source="schedule")
        return self._desk.run(principal, self._policy)


def start_retention_schedule(vault: Vault, config: BreachConfig, clock: Clock,
                             poll_seconds: float = POLL_SECONDS) -> Periodic:
    """The schedule ticked every `poll_seconds` on its own thread, until stopped. A bad
    ``[retention]`` section raises `ConfigurationError` here, before the thread starts."""
    schedule = RetentionSchedule(vault.retention, RetentionPolicy.from_config(
        config["retention"]))

    def tick() -> None:
        done = schedule.tick(clock.now())
        if done is not None:
            log.warning("retention run: certificate %s, %s", done.certificate_id,
                        done.plan.counts())

    return Periodic("retention", poll_seconds, tick).start()


# -- commands ------------------------------------------------------------------------------------
@retention_app.command("policy")
def show_policy(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """The terms in force (breach.toml, section retention)."""
    try:
        policy = policy_of(data_dir)
    except LabvaultError as exc:
        raise fail(exc) from None
    for name, value in policy.as_dict().items():
        console.print(f"{name} = {value}", highlight=False)


@retention_app.command("run")
def run(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change "
                                                            "nothing.")] = False,
    out: Annotated[Path | None, typer.Option(help="File (0600): the plan (dry run) or the "
                                                  "signed certificate, JSON and HTML.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Crypto-shred every record past its term; issue the signed erasure certificate."""
    purpose = "retention policy (dry run)" if dry_run else "retention policy"
    try:
        policy = policy_of(data_dir)
        with open_vault(data_dir) as vault:
            desk = vault.retention
            plan = desk.run(local_operator(purpose), policy, dry_run=True).plan
            _print_plan(plan.as_dict(), dry_run)
            if dry_run:
                if out is not None:
                    write_private(out, json.dumps(plan.as_dict(), indent=2) + "\n")
                return
            if not yes:
                typer.confirm("Crypto-shred these records for good?", abort=True)
            done = desk.run(local_operator(purpose), policy)
    except LabvaultError as exc:
        raise fail(exc) from None
    document = done.document or {}
    counts = document["certificate"]["counts"]
    console.print("erased: " + ", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)
    console.print(f"erasure certificate {done.certificate_id} signed (key "
                  f"{document['key_id']})", highlight=False)
    if out is not None:
        html = write_certificate(document, out)
        console.print(f"written to {out} and {html}", highlight=False)


def _print_plan(plan: dict[str, Any], dry_run: bool) -> None:
    verb = "would erase" if dry_run else "to erase"
    console.print(f"{verb}: " + ", ".join(f"{k} {v}" for k, v in plan["counts"].items()),
                  highlight=False)
    if not dry_run:
        return
    for pid in plan["patients"]:
        console.print(f"  patient {pid} (inactive past the term)", highlight=False)
    for r in plan["records"]:
        console.print(f"  patient {r['patient']}: " + ", ".join(
            f"{len(r[k])} {k}" for k in ("orders", "results", "comments", "attachments")),
            highlight=False)
    for mid in plan["staging"]:
        console.print(f"  staging area of migration {mid}", highlight=False)


@retention_app.command("certificates")
def certificates(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """The erasure certificates issued."""
    try:
        with open_vault(data_dir) as vault:
            rows = vault.retention.certificates(local_operator("erasure certificates"))
    except LabvaultError as exc:
        raise fail(exc) from None
    for r in rows:
        console.print(f"{r['id']}  {r['issued_at']}  {r['issued_by']}  sha256 {r['digest']}",
                      highlight=False)


@retention_app.command("certificate")
def certificate(
    certificate_id: int,
    out: Annotated[Path, typer.Option(help="JSON file (0600); the HTML goes beside it.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Export one signed erasure certificate (JSON and HTML)."""
    try:
        with open_vault(data_dir) as vault:
            document = vault.retention.certificate(local_operator("erasure certificate"),
                                                        certificate_id)
    except LabvaultError as exc:
        raise fail(exc) from None
    html = write_certificate(document, out)
    console.print(f"erasure certificate {certificate_id} written to {out} and {html}",
                  highlight=False)


@retention_app.command("check")
def check_file(
    path: Path,
    public_key: Annotated[Path | None, typer.Option(
        help="The lab's published key (PEM, `labvault keys public`); without it only the "
             "certificate's integrity under its own key is checked.")] = None,
) -> None:
    """Verify an erasure certificate's signature; exit 1 if it does not hold."""
    try:
        trusted = load_public(public_key.read_bytes()) if public_key is not None else None
        body = check(load_document(path), trusted)
    except (InvalidSignature, ValueError, OSError) as exc:
        err.print(f"[red]invalid:[/red] {exc or 'the signature does not match'}")
        raise typer.Exit(1) from None
    console.print(f"valid: retention run of {body['run_at']} by {body['issued_by']}; "
                  + ("signed by the trusted key" if trusted else "integrity only (no --public-key)"),
                  highlight=False)


__all__ = ["RetentionSchedule", "check_file", "render_html", "retention_app",
           "start_retention_schedule", "write_certificate"]
