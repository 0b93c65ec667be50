"""``labvault breach notify | deliver | notices``: article 34 notices to the people an
incident concerns. Thin: the local operator's principal, ``breach.toml`` and the `Outbox`.

``notify INCIDENT`` queues the notices of the incident's latest scope (audited, naming the
patients whose contact was opened); ``deliver`` sends what is due, as the system, at the pace
``[notices] per_second`` sets (the channels' secrets from the environment variables the file
names); ``notices INCIDENT`` prints the counts for the regulator's follow-up. Nothing printed
holds an address or a name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from labvault.access.principal import local_operator
from labvault.breach.config import BreachConfig
from labvault.breach.letters import Letters
from labvault.breach.notices import Outbox
from labvault.cli_support import DataDir, console, err, fail, open_vault, progress_bar, uuid_argument
from labvault.config import DEFAULT_DATA_DIR
from labvault.errors import LabvaultError
from labvault.private_file import publish_private


@contextmanager
def _outbox(data_dir: Path) -> Iterator[Outbox]:
    """The vault's outbox with ``breach.toml``; a labvault error becomes the one-line failure."""
    try:
        with open_vault(data_dir) as vault:
            outbox = Outbox(vault, BreachConfig.load(data_dir))
            try:
                yield outbox
            finally:
                outbox.close()
    except LabvaultError as exc:
        raise fail(exc) from None


def _print_status(status: dict[str, Any]) -> None:
    console.print(f"incident {status['incident']}: {status['listed']} patients in the scope "
                  f"({status['sealed_only']} exposed only encrypted), {status['patients']} with "
                  f"a notice, {status['patients_reached']} reached", highlight=False)
    outcomes = ", ".join(f"{k} {v}" for k, v in status["by_outcome"].items())
    console.print(f"{status['notices']} notices: {outcomes}", highlight=False)
    for channel, counts in status["by_channel"].items():
        console.print(f"  {channel:5} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                      highlight=False)
    updates = status["updates"]
    if updates["notices"]:
        outcomes = ", ".join(f"{k} {v}" for k, v in updates["by_outcome"].items())
        console.print(f"{updates['notices']} updates (a later scope added to what "
                      f"{updates['patients']} people were told): {outcomes}", highlight=False)
    if status["errors"]:
        console.print("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(status["errors"].items())),
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``notify``, ``deliver``, ``letters`` and ``notices`` to the ``breach`` command."""

    @app.command("notify")
    def notify(
        incident_id: str,
        include_sealed: Annotated[bool, typer.Option(
            help="Also notify patients whose data was exposed only encrypted (exempt under "
                 "GDPR art. 34(3)(a)).")] = False,
        data_dir: DataDir = DEFAULT_DATA_DIR,
    ) -> None:
        """Queue the notices of an incident's latest scope: one per patient and per channel
        of their contact on file (e-mail, SMS). Running it again queues only what is new."""
        iid = uuid_argument(incident_id, "incident id", "labvault breach list")
        with _outbox(data_dir) as outbox:
            operator = local_operator("breach notification")
            queued = outbox.queue_incident(operator, iid, include_sealed=include_sealed)
            status = outbox.status(operator, iid)
        console.print(f"{queued} notices queued; send them with `labvault breach deliver`",
                      highlight=False)
        _print_status(status)

    @app.command("deliver")
    def deliver(
        limit: Annotated[int | None, typer.Option(help="At most this many notices.")] = None,
        data_dir: DataDir = DEFAULT_DATA_DIR,
    ) -> None:
        """Send the notices that are due (e-mail, SMS), with retries later for failures."""
        with _outbox(data_dir) as outbox:
            total = outbox.due_count()
            if limit is not None:
                total = min(total, limit)
            with progress_bar() as bar:
                task = bar.add_task("notices", total=total)
                advance: Callable[[int], None] = lambda n: bar.advance(task, n)  # noqa: E731
                counts = outbox.deliver_due(limit, progress=advance)
        console.print(", ".join(f"{k} {v}" for k, v in counts.items()), highlight=False)

    @app.command("letters")
    def letters(
        incident_id: str,
        out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to create (0600).")],
        data_dir: DataDir = DEFAULT_DATA_DIR,
    ) -> None:
        """Letters to print for the people of the incident that no e-mail or SMS reached, and
        the updates no message can carry: name and postal address, the notice's text, a
        verification code. The file holds personal data in clear: print, post, delete it."""
        iid = uuid_argument(incident_id, "incident id", "labvault breach list")
        if out.exists() or out.is_symlink():
            err.print(f"error: {out} exists, and may hold letters not yet printed: give "
                      "another --out")
            raise typer.Exit(2)
        with _outbox(data_dir) as outbox:
            desk, operator = Letters(outbox), local_operator("breach notification by post")
            run = desk.prepare(operator, iid)
            if run.letters:
                try:  # a letter recorded is in the file, or recorded no more
                    publish_private(out, run.html.reveal())
                except BaseException as exc:
                    desk.withdraw(operator, iid, run)
                    if not isinstance(exc, OSError):
                        raise
                    err.print(f"error: cannot write {out}: "
                              f"{exc.strerror or type(exc).__name__}; nothing was recorded")
                    raise typer.Exit(1) from None
                desk.confirm(run)
        written = f"written to {out}: print, post, then delete it" if run.letters else "none"
        console.print(f"{run.letters} letters ({run.updates} updates) {written}; "
                      f"{run.no_address} people without a postal address, {run.erased} "
                      f"erased, {run.not_notified} not notified yet (`labvault breach notify`)",
                      highlight=False)

    @app.command("notices")
    def notices(
        incident_id: str,
        as_json: Annotated[bool, typer.Option("--json", help="The counts as JSON.")] = False,
        data_dir: DataDir = DEFAULT_DATA_DIR,
    ) -> None:
        """Counts of an incident's notices by state, outcome, channel and kind of error."""
        iid = uuid_argument(incident_id, "incident id", "labvault breach list")
        with _outbox(data_dir) as outbox:
            status = outbox.status(local_operator("breach notification follow-up"), iid)
        if as_json:
            console.print(json.dumps(status, sort_keys=True), highlight=False, soft_wrap=True)
        else:
            _print_status(status)


__all__ = ["register"]
