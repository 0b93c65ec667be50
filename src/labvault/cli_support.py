"""Shared pieces of the ``labvault`` command: consoles, options, opening the vault, errors."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from labvault.access.principal import local_operator
from labvault.config import Settings
from labvault.errors import KeyProviderError, LabvaultError
from labvault.secret import Secret
from labvault.vault import Vault

console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data-dir", "-d", envvar="LABVAULT_HOME",
                                       help="The vault's data directory.")]
DEMO_DIR = Path("labvault-demo")
DEMO_MARKER = ".labvault-demo"


def ask_passphrase(prompt: str, confirm: bool = False) -> Secret[str]:
    value = os.environ.get("LABVAULT_PASSPHRASE")
    if value:
        return Secret(value)
    if not sys.stdin.isatty():
        raise KeyProviderError("the key file is passphrase-protected: set LABVAULT_PASSPHRASE "
                               "or run the command in a terminal")
    return Secret(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


def passphrase_for(settings: Settings) -> Secret[str] | None:
    if not settings.passphrase_protected:
        return None
    return ask_passphrase("Key file passphrase")


@contextmanager
def open_vault(data_dir: Path) -> Iterator[Vault]:
    settings = Settings.load(data_dir)
    vault = Vault.open(settings, passphrase=passphrase_for(settings))
    try:
        # Staging areas past their deadline are erased by whichever command runs first.
        for gone in vault.imports.erase_expired(local_operator("staging area past its deadline")):
            err.print(f"note: staging area of migration {gone.migration_id} passed its deadline "
                      "and was erased")
        yield vault
    finally:
        vault.close()


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def fail(exc: LabvaultError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    if exc.hint:
        err.print(f"fix: {exc.hint}")
    return typer.Exit(1)


def call_desk(data_dir: Path, desk: str, purpose: str, method: str, *args: object,
              **kwargs: object) -> object:
    """Call one method of a vault desk (``accounts``, ``watch``…) as the local operator, with
    `purpose` audited; a labvault error becomes the CLI's one-line failure."""
    try:
        with open_vault(data_dir) as vault:
            return getattr(getattr(vault, desk), method)(local_operator(purpose), *args, **kwargs)
    except LabvaultError as exc:
        raise fail(exc) from None



def uuid_argument(value: str, what: str, see: str | None = None) -> uuid.UUID:
    """`value` as a UUID, or exit 2 naming the argument (and the command that lists them)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        hint = f" (see `{see}`)" if see else ""
        err.print(f"error: the {what} must be a UUID{hint}")
        raise typer.Exit(2) from None


def when_option(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time given on the command line, with its offset (exit 2 otherwise)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"error: {option} must be an ISO 8601 time, e.g. 2026-03-02T08:30:00+01:00")
        raise typer.Exit(2) from None
    if at.tzinfo is None:  # read as UTC, a Paris time would be off by one or two hours
        err.print(f"error: {option} needs its offset, e.g. 2026-03-02T08:30:00+01:00")
        raise typer.Exit(2)
    return at


