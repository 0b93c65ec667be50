"""``labvault alerts …``, ``labvault honeytokens seed`` and ``labvault watch``.

The first two are thin: they build the local operator principal and call the vault's watch
desk (every call is audited). ``labvault watch`` is the standalone watcher for a deployment
whose API runs in several worker processes (each worker's in-process watcher sees only its own
requests): it follows the audit log itself, runs every rule on every new event and delivers
the alerts. Alerts are deduplicated in the database, so it may run beside the workers'.

Where it stopped is kept in ``watch.position`` (the last event processed, with its chain hash):
a restart learns from the log up to that event, then resumes after it. The first run learns
from the log and starts at its current head: events written before the watcher ever ran are
history, not alerts (a watcher started on a year of log must not lock accounts for last
spring's reads).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labvault.access.principal import local_operator
from labvault.cli_support import DataDir, call_desk, console, err, fail, open_vault, uuid_argument
from labvault.config import DEFAULT_DATA_DIR
from labvault.errors import LabvaultError
from labvault.private_file import open_private, write_private
from labvault.watch.alerts import Alert
from labvault.watch.channels import channels_from_config
from labvault.watch.config import WatchConfig
from labvault.watch.desk import ACK_REASONS, DEFAULT_DECOY_DOMAIN
from labvault.watch.engine import Watcher
from labvault.watch.notify import Notifier

alerts_app = typer.Typer(help="Alerts raised by the watcher: list, show, acknowledge.",
                         no_args_is_help=True)
honeytokens_app = typer.Typer(help="Decoy patients whose any touch is an alert.",
                              no_args_is_help=True)

STATUSES = ("open", "acknowledged")
POSITION_FILE = "watch.position"
BATCH = 1000
DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")


def _desk(data_dir: Path, purpose: str, method: str, *args: Any, **kwargs: Any) -> Any:
    return call_desk(data_dir, "watch", purpose, method, *args, **kwargs)


def _when(at) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}" if at else "-"


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as channels send it, with its acknowledgement and escalation times."""
    return {**alert.as_dict(),
            "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
            "acknowledged_by": alert.acknowledged_by,
            "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at
            else None,
            "next_escalation_at": alert.next_escalation_at.isoformat()
            if alert.next_escalation_at else None}


# -- alerts ----------------------------------------------------------------------------------------
@alerts_app.command("list")
def list_alerts(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    status: Annotated[str | None, typer.Option(help="open or acknowledged (default: both).")]
    = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
) -> None:
    """Alerts, newest first: severity, rule, actor, occurrences, response, escalation."""
    if status is not None and status not in STATUSES:
        err.print(f"error: --status must be one of {', '.join(STATUSES)}")
        raise typer.Exit(2)
    alerts: list[Alert] = _desk(data_dir, "alert review", "alerts", status=status, limit=limit)
    t = Table(title=f"{len(alerts)} alerts")
    for col in ("id", "raised at (UTC)", "severity", "rule", "actor", "occurrences", "status",
                "response", "escalation level"):
        t.add_column(col)
    for a in alerts:
        t.add_row(str(a.id), _when(a.raised_at), str(a.severity), a.rule, a.actor,
                  str(a.occurrences), a.status, a.response, str(a.escalation_level))
    console.print(t)


@alerts_app.command("show")
def show_alert(alert_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """One alert as JSON (ids and counts, no personal value), with its delivery attempts."""
    aid = uuid_argument(alert_id, "alert id", "labvault alerts list")
    alert, deliveries = _desk(data_dir, "alert review", "alert", aid)
    typer.echo(json.dumps({"alert": alert_json(alert), "deliveries": deliveries}, indent=2,
                          ensure_ascii=False))


@alerts_app.command("ack")
def ack_alert(
    alert_id: str,
    reason: Annotated[str, typer.Option(help=f"One of {', '.join(ACK_REASONS)} (never free "
                                        "text: a note may end up naming a patient).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Acknowledge an alert: its escalation stops; the same pattern seen again is a new alert."""
    aid = uuid_argument(alert_id, "alert id", "labvault alerts list")
    if reason not in ACK_REASONS:
        err.print(f"error: --reason must be one of {', '.join(ACK_REASONS)}")
        raise typer.Exit(2)
    alert: Alert = _desk(data_dir, "alert acknowledgement", "acknowledge", aid, reason)
    console.print(f"alert {alert.id} acknowledged by {alert.acknowledged_by} at "
                  f"{_when(alert.acknowledged_at)} UTC", highlight=False, soft_wrap=True)


# -- decoys ----------------------------------------------------------------------------------------
@honeytokens_app.command("seed")
def seed_decoys(
    count: Annotated[int, typer.Option(min=1, max=10_000, help="How many decoy patients.")],
    contacts_out: Annotated[Path, typer.Option(
        "--contacts-out", help="File (0600) to write the decoys' e-mail addresses to: the "
        "contacts the mail team monitors.")],
    mail_domain: Annotated[str, typer.Option(help="A domain the laboratory monitors, where "
                                             "nobody has a mailbox.")] = DEFAULT_DECOY_DOMAIN,
    show: Annotated[bool, typer.Option("--print", help="Also print the contacts.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Store decoy patients (synthetic, in every index); mail to their addresses, or any touch
    of their records, is an alert. The database does not say which patients are decoys."""
    if not DOMAIN.fullmatch(mail_domain) or len(mail_domain) > 253:
        err.print("error: --mail-domain must be a domain name, e.g. decoy.lab.example")
        raise typer.Exit(2)
    try:  # the file first: decoys stored without their contacts could never be monitored
        f = open_private(contacts_out)
    except OSError as exc:
        err.print(f"error: cannot write {contacts_out}: {exc.strerror or type(exc).__name__}")
        raise typer.Exit(1) from None
    with f:
        try:
            contacts: list[str] = _desk(data_dir, "decoy seeding", "seed_decoys", count,
                                        mail_domain=mail_domain)
        except typer.Exit:
            f.close()
            contacts_out.unlink(missing_ok=True)
            raise
        f.writelines(c + "\n" for c in contacts)
    console.print(f"{count} decoy patients stored; {len(contacts)} contacts to monitor written "
                  f"to {contacts_out}", highlight=False, soft_wrap=True)
    if show:
        for c in contacts:
            console.print(c, highlight=False, soft_wrap=True)


@honeytokens_app.command("report-mail")
def report_mail(
    message: Annotated[Path | None, typer.Argument(help="The message (RFC 5322); standard "
                                                   "input when absent.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Check a message received at the decoy domain (the mail server pipes it here): sent to a
    decoy's address, it is phishing built from this vault's data — a critical alert. Nothing of
    the message is kept. Exit code 3 when it reached a decoy."""
    import sys

    try:
        raw = message.read_bytes() if message is not None else sys.stdin.buffer.read()
    except OSError as exc:
        err.print(f"error: cannot read the message: {exc.strerror or type(exc).__name__}")
        raise typer.Exit(1) from None
    try:
        with open_vault(data_dir) as vault:
            config = WatchConfig.load(data_dir)
            notifier = Notifier(vault.watch._store, channels_from_config(
                config["channels"], clock=vault._clock), config, vault._clock, background=False)
            watcher = Watcher(vault, config, notifier=notifier)
            alerts = vault.watch.report_mail(local_operator("decoy mail report"), raw, watcher)
    except LabvaultError as exc:
        raise fail(exc) from None
    for alert in alerts:
        console.print(_line(alert), highlight=False, soft_wrap=True)
    if alerts:
        raise typer.Exit(3)
    console.print("no decoy address among the recipients", highlight=False)


def index_care_sites(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Link every stored patient to the lab sites of its orders: once, after upgrading a vault
    whose patients were stored before the watcher existed (their reads are otherwise
    unexplained)."""
    from labvault.cli_support import progress_bar

    try:
        with open_vault(data_dir) as vault:
            total = vault.count_patients(local_operator("care-site index"))
            with progress_bar() as bar:
                task = bar.add_task("linking patients to their sites", total=total)
                links = vault.watch.index_sites(local_operator("care-site index"),
                                                progress=lambda n: bar.advance(task, n))
    except LabvaultError as exc:
        raise fail(exc) from None
    console.print(f"{total} patients, {links} patient-site links", highlight=False)


# -- the standalone watcher ------------------------------------------------------------------------
@dataclass
class Position:
    seq: int
    hash: str  # the chain hash of that event: a position from another log is not resumed

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        write_private(tmp, json.dumps({"seq": self.seq, "hash": self.hash}) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Position | None:
        try:
            doc = json.loads(path.read_text("utf-8"))
            return cls(int(doc["seq"]), str(doc["hash"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            err.print(f"warning: {path} is unreadable; starting from the log's current head")
            return None


def _at(le: Any) -> Position:
    return Position(le.seq, bytes(le.hash).hex())


def _head(chain: Any) -> Position:
    last = next(iter(chain.logged(newest_first=True, limit=1)), None)
    return _at(last) if last is not None else Position(0, "")


def _start(chain: Any, saved: Position | None) -> Position:
    """Where to resume: after the saved event if the log still holds it, else the head."""
    if saved is None or saved.seq == 0:
        return _head(chain) if saved is None else saved
    found = next(iter(chain.logged(since_seq=saved.seq - 1, limit=1)), None)
    if found is None or _at(found) != saved:
        err.print(f"warning: {POSITION_FILE} names an event this audit log does not hold; "
                  "starting from its current head")
        return _head(chain)
    return saved


def _line(alert: Alert) -> str:
    return f"alert {alert.id} {alert.severity} {alert.rule} {alert.actor}"


def _stop_on_sigterm() -> Any:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def watch(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    interval: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds between polls of "
                                            "the audit log.")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Process the new events, then exit.")]
    = False,
    since_days: Annotated[int | None, typer.Option(min=0, max=366, help="Days of log to learn "
                                                   "from at start (default: the baseline's "
                                                   "history_days).")] = None,
) -> None:
    """Follow the audit log and run the detection rules (for several API worker processes)."""
    try:
        with open_vault(data_dir) as vault:
            config = WatchConfig.load(data_dir)
            channels = channels_from_config(config["channels"], clock=vault._clock)
            notifier = Notifier(vault.watch._store, channels, config, vault._clock)
            watcher = Watcher(vault, config, notifier=notifier)
            try:
                _follow(vault, watcher, notifier, data_dir / POSITION_FILE, interval, once,
                        since_days if since_days is not None
                        else config["baseline"]["history_days"])
            finally:
                notifier.flush()
                notifier.close()
    except LabvaultError as exc:
        raise fail(exc) from None
    except OSError as exc:
        err.print(f"error: {POSITION_FILE}: {exc.strerror or type(exc).__name__}")
        raise typer.Exit(1) from None


def _follow(vault: Any, watcher: Watcher, notifier: Notifier, path: Path, interval: float,
            once: bool, days: int) -> None:
    chain = vault._audit.chain
    saved = Position.load(path)
    position = _start(chain, saved)
    if position != saved:
        position.save(path)  # events written from now on are watched, even if it stops at once
    learned = watcher.warm_up(days, until_seq=position.seq)
    console.print(f"watching the audit log after event {position.seq} ({learned} events of the "
                  f"last {days} days learned){'' if once else '; Ctrl-C to stop'}",
                  highlight=False, soft_wrap=True)
    previous = None if once else _stop_on_sigterm()
    raised = 0
    try:
        while True:
            batch = list(chain.logged(since_seq=position.seq, limit=BATCH))
            for le in batch:
                for alert in watcher.observe(le.event):
                    raised += 1
                    console.print(_line(alert), highlight=False, soft_wrap=True)
                position = _at(le)
            if batch:
                position.save(path)
            notifier.tick()
            if len(batch) == BATCH:
                continue
            if once:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        position.save(path)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    console.print(f"stopped after event {position.seq}; {raised} new alerts", highlight=False,
                  soft_wrap=True)


__all__ = ["alerts_app", "honeytokens_app", "index_care_sites", "watch"]
