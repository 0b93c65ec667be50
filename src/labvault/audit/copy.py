"""The second copy of the audit, and what happens when one of the two fails.

Every event goes to the chain (the data database, `ChainedAuditLog`) and, when a copy is
configured (setting ``audit_copy``), to the copy: a local file of JSON lines (`FileCopy`:
mode 0600, opened without following links, fsync after each event) or a syslog collector
(`SyslogCopy`: RFC 5424 over UDP, or TCP with octet counting).

Policy:

- chain written, copy failed: the call proceeds; a warning is logged (logger
  ``labvault.audit``, no personal data) and counted in `AuditTrail.health`;
- chain failed, *file* copy written: the event is kept in the file marked ``"chained": false``
  and the call proceeds; ``labvault audit recover`` later appends those events to the chain,
  keeping their original time, with ``recovered_from`` in their detail, exactly once;
- chain failed, syslog copy only: a datagram or a socket is not durable storage, so the call
  is refused (`AuditUnavailable`), as without a copy;
- both failed: `AuditUnavailable`, the call is refused.

Free space is watched too: at most once a minute (by the injected clock) the directories of
the SQLite database and of a file copy are checked; under the threshold (setting
``audit_low_space_mb``; by default 1 GiB, or 5 % of a disk smaller than 20 GiB) a warning is
logged and `health` reports ``low_space``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from labvault.audit.export import SyslogSender, from_record, parse_target, record, syslog_line
from labvault.audit.log import ChainedAuditLog, LoggedEvent
from labvault.audit.sink import AuditEvent
from labvault.clock import Clock
from labvault.errors import AuditUnavailable, ConfigurationError

log = logging.getLogger("labvault.audit")
SPACE_CHECK_EVERY = timedelta(minutes=1)
GIB = 1024**3


class AuditCopy(Protocol):
    durable: bool

    def write(self, event: AuditEvent, logged: LoggedEvent | None) -> None:
        """Raise `OSError` if the copy could not be written."""
        ...


class FileCopy:
    """JSON lines appended to a local file; each line also carries a journal id and whether
    the event reached the chain."""

    durable = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileCopy({str(self.path)!r})"

    def write(self, event: AuditEvent, logged: LoggedEvent | None) -> None:
        doc = record(event, *((logged.seq, logged.hash, logged.tag) if logged else ()))
        doc.update(chained=logged is not None, journal_id=uuid.uuid4().hex)
        line = (json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # whole lines, whichever process writes
            written = os.write(fd, line)
            if written != len(line):
                raise OSError("short write to the audit copy")
            os.fsync(fd)
        finally:
            os.close(fd)

    def unchained(self) -> list[tuple[str, AuditEvent]]:
        """Events the chain did not take, with their journal ids, in file order."""
        out = []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue  # a line cut by a crash: it never reached the caller either
                if doc.get("chained") is False:
                    out.append((str(doc["journal_id"]), from_record(doc)))
        return out


class SyslogCopy:
    """RFC 5424 messages to a collector; not durable (it never replaces the chain)."""

    durable = False

    def __init__(self, host: str, port: int, transport: str = "udp") -> None:
        self.sender = SyslogSender(host, port, transport)

    def __repr__(self) -> str:
        return f"SyslogCopy({self.sender!r})"

    def write(self, event: AuditEvent, logged: LoggedEvent | None) -> None:
        self.sender.send(syslog_line(event, *((logged.seq, logged.hash, logged.tag)
                                              if logged else ())))


def copy_from_setting(value: str | None, data_dir: Path) -> AuditCopy | None:
    """The copy named by the ``audit_copy`` setting."""
    if not value:
        return None
    if value.startswith("file:"):
        path = Path(value.removeprefix("file:"))
        return FileCopy(path if path.is_absolute() else data_dir / path)
    if value.startswith("syslog+"):
        try:
            target = parse_target(value)
        except ValueError:
            raise ConfigurationError("audit_copy: use syslog+udp://HOST:PORT or "
                                     "syslog+tcp://HOST:PORT") from None
        return SyslogCopy(target.host, target.port, target.transport)
    raise ConfigurationError("audit_copy must start with file: or syslog+udp:// or syslog+tcp://")


@dataclass(frozen=True, slots=True)
class Recovery:
    recovered: int
    already: int


class AuditTrail:
    """The vault's audit sink: the chain, the optional copy, the policy above, free space."""

    def __init__(self, chain: ChainedAuditLog, copy: AuditCopy | None, clock: Clock, *,
                 watch: dict[str, Path] | None = None, low_space_mb: int | None = None) -> None:
        self.chain = chain
        self.copy = copy
        self._clock = clock
        self._watch = dict(watch or {})
        if isinstance(copy, FileCopy):
            self._watch.setdefault("audit copy", copy.path.parent)
        self._low_space_mb = low_space_mb
        self.copy_failures = 0
        self.unchained = 0
        self._checked_at = None
        self._low: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"AuditTrail(copy={self.copy!r})"

    def append(self, event: AuditEvent) -> None:
        try:
            logged = self.chain.append(event)
        except AuditUnavailable:
            if self.copy is None or not self.copy.durable:
                raise
            try:
                self.copy.write(event, None)
            except OSError:
                raise AuditUnavailable("neither the audit chain nor its file copy could be "
                                       "written") from None
            self.unchained += 1
            log.warning("audit chain unavailable: event kept in the file copy "
                        "(run `labvault audit recover` once the database is back)")
            return
        finally:
            self._maybe_check_space()
        if self.copy is not None:
            try:
                self.copy.write(event, logged)
            except OSError as exc:
                self.copy_failures += 1
                log.warning("audit copy failed (%s); the chain has the event",
                            type(exc).__name__)

    def rekey(self) -> None:
        self.chain.rekey()

    def close(self) -> None:
        self.chain.close()
        if isinstance(self.copy, SyslogCopy):
            self.copy.sender.close()

    def events(self, action: str | None = None) -> list[AuditEvent]:
        return self.chain.events(action)

    def recover(self, journal: FileCopy | None = None) -> Recovery:
        """Append the file copy's unchained events to the chain, each exactly once."""
        source = journal or self.copy
        if not isinstance(source, FileCopy):
            exc = ConfigurationError("no audit file copy to recover from")
            exc.hint = 'set audit_copy = "file:PATH" in labvault.toml, or give the journal file'
            raise exc
        done = self.chain.recovered_ids()
        todo, already = [], 0
        for journal_id, event in source.unchained():
            if journal_id in done:
                already += 1
                continue
            done.add(journal_id)
            detail = {**event.detail, "recovered_from": journal_id}
            todo.append(AuditEvent(event.at, event.actor, event.role, event.source,
                                   event.purpose, event.action, event.outcome,
                                   event.patient_ids, detail, event.request_id,
                                   event.categories))
        for start in range(0, len(todo), 1000):
            self.chain.append_many(todo[start:start + 1000])
        self.unchained = 0
        return Recovery(len(todo), already)

    # -- health --------------------------------------------------------------------------------
    def _threshold(self, total: int) -> int:
        if self._low_space_mb is not None:
            return self._low_space_mb * 1024 * 1024
        return min(GIB, total // 20)

    def _maybe_check_space(self, force: bool = False) -> None:
        now = self._clock.now()
        if not force and self._checked_at is not None and now - self._checked_at < SPACE_CHECK_EVERY:
            return
        self._checked_at = now
        low = {}
        for label, path in self._watch.items():
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue
            if usage.free < self._threshold(usage.total):
                low[label] = usage.free // (1024 * 1024)
                log.warning("low disk space for the %s: %d MiB free", label, low[label])
        self._low = low

    def health(self) -> dict[str, Any]:
        """``{"audit": "ok" | "low_space" | "degraded", ...}``: nothing personal."""
        self._maybe_check_space()
        status = "ok"
        if self._low:
            status = "low_space"
        if self.unchained or self.copy_failures:
            status = "degraded"
        return {"audit": status,
                "copy": "none" if self.copy is None else
                ("file" if isinstance(self.copy, FileCopy) else "syslog"),
                "copy_failures": self.copy_failures, "unchained_events": self.unchained,
                "low_space": {k: {"free_mb": v} for k, v in sorted(self._low.items())}}


__all__ = ["AuditCopy", "AuditTrail", "FileCopy", "Recovery", "SyslogCopy", "copy_from_setting"]
