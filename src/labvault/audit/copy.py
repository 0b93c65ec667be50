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
  keeping their original time, with ``recovered_from`` in their detail, exactly once. Every
  line of the file carries its number and a MAC chained with the previous line's (the journal
  key, ``keys.index_key(JOURNAL_KEY)``): recovery checks the whole file first and chains
  nothing from a file with a forged, altered, removed or moved line (`JournalTampered`);
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
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from labvault.audit.export import SyslogSender, from_record, parse_target, record, syslog_line
from labvault.audit.log import ChainedAuditLog, LoggedEvent
from labvault.audit.sink import AuditEvent
from labvault.clock import Clock
from labvault.errors import AuditUnavailable, ConfigurationError, LabvaultError
from labvault.secret import Secret

log = logging.getLogger("labvault.audit")
JOURNAL_KEY = "audit/journal/v1"  # the journal's MAC key: keys.index_key(JOURNAL_KEY)
JOURNAL_CONTEXT = b"labvault/audit/journal/v1"
JOURNAL_START = bytes(32)  # the "previous MAC" of line 1
TAIL_READ = 64 * 1024
_MACED = re.compile(rb'(\{.*), "mac": "([0-9a-f]{64})"\}', re.S)
SPACE_CHECK_EVERY = timedelta(minutes=1)
GIB = 1024**3


class AuditCopy(Protocol):
    durable: bool

    def write(self, event: AuditEvent, logged: LoggedEvent | None) -> None:
        """Raise `OSError` if the copy could not be written."""
        ...


class JournalTampered(LabvaultError):
    """The file copy's journal is not the one written: a line whose MAC does not check, a gap
    or a change of order in its counter. ``line`` is the first bad line (from 1)."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"the audit journal fails its check at line {line} ({reason}): "
                         "nothing was recovered from it")
        self.hint = ("keep the file as it is and have the DPO investigate: its lines cannot be "
                     "trusted")


def _line_mac(key: bytes, prev: bytes, n: int, body: bytes) -> bytes:
    return hmac.new(key, JOURNAL_CONTEXT + prev + n.to_bytes(8, "big") + body,
                    hashlib.sha256).digest()


def _split_line(raw: bytes) -> tuple[bytes, bytes] | None:
    """A journal line (without its newline) as the bytes its MAC covers and the MAC."""
    m = _MACED.fullmatch(raw)
    return None if m is None else (m.group(1) + b"}", bytes.fromhex(m.group(2).decode()))


class FileCopy:
    """JSON lines appended to a local file; each line also carries a journal id, whether the
    event reached the chain, its number in the file (``n``, from 1) and a MAC (``mac``:
    HMAC-SHA-256 under the journal key, over the previous line's MAC, the number and the
    line), so that a line forged, altered, removed from before the last one, or moved, is
    found by `unchained` (`JournalTampered`). Each write reads the last line's number and MAC
    under the file lock: the chain of MACs goes on across processes and restarts."""

    durable = True

    def __init__(self, path: Path, key: Secret[bytes]) -> None:
        self.path = Path(path)
        self._key = key

    def __repr__(self) -> str:
        return f"FileCopy({str(self.path)!r})"

    def write(self, event: AuditEvent, logged: LoggedEvent | None) -> None:
        doc = record(event, *((logged.seq, logged.hash, logged.tag) if logged else ()))
        doc.update(chained=logged is not None, journal_id=uuid.uuid4().hex)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # whole lines, whichever process writes
            size = os.fstat(fd).st_size
            last, end = _last_line(fd, size)
            if end < size:
                os.ftruncate(fd, end)  # a line cut by a crash: never acknowledged to anyone
            n, prev = 0, JOURNAL_START
            if last:
                parts = _split_line(last)
                counter = _counter(parts[0]) if parts is not None else None
                if parts is None or counter is None:
                    raise OSError("the last line of the audit copy carries no MAC")
                n, prev = counter, parts[1]
            doc["n"] = n + 1
            body = json.dumps(doc, sort_keys=True, ensure_ascii=False).encode("utf-8")
            mac = _line_mac(self._key.reveal(), prev, n + 1, body)
            line = body[:-1] + b', "mac": "' + mac.hex().encode() + b'"}\n'
            written = os.write(fd, line)
            if written != len(line):
                os.ftruncate(fd, end)
                raise OSError("short write to the audit copy")
            os.fsync(fd)
        finally:
            os.close(fd)

    def unchained(self) -> list[tuple[str, AuditEvent]]:
        """Events the chain did not take, with their journal ids, in file order. The whole
        file is checked first: `JournalTampered` at its first bad line, and then nothing is
        returned."""
        out = []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        key = self._key.reveal()
        prev, seen = JOURNAL_START, set()
        with os.fdopen(fd, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    break  # a line cut by a crash: it never reached the caller either
                parts = _split_line(raw[:-1])
                if parts is None:
                    raise JournalTampered(number, "no MAC")
                body, mac = parts
                if not hmac.compare_digest(mac, _line_mac(key, prev, number, body)):
                    counter = _counter(body)
                    raise JournalTampered(number, "MAC does not check" if counter == number
                                          else f"line number {counter}: lines removed, added "
                                          "or moved")
                try:
                    doc = json.loads(body)
                    journal_id = str(doc["journal_id"])
                    event = from_record(doc) if doc.get("chained") is False else None
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise JournalTampered(number, "not an audit event") from None
                if journal_id in seen:
                    raise JournalTampered(number, "journal id repeated")
                seen.add(journal_id)
                if event is not None:
                    out.append((journal_id, event))
                prev = mac
        return out


def _counter(body: bytes) -> int | None:
    try:
        n = json.loads(body).get("n")
    except (ValueError, AttributeError):
        return None
    return n if type(n) is int and n >= 1 else None


def _last_line(fd: int, size: int) -> tuple[bytes, int]:
    """The file's last complete line (without its newline), and where complete lines end."""
    pos, buf = size, b""
    while pos > 0:
        step = min(TAIL_READ, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        cut = buf.rfind(b"\n")
        if cut < 0:
            continue
        start = buf.rfind(b"\n", 0, cut)
        if start >= 0 or pos == 0:
            return buf[start + 1:cut], pos + cut + 1
    return b"", 0


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


def copy_from_setting(value: str | None, data_dir: Path,
                      journal_key: Secret[bytes] | None = None) -> AuditCopy | None:
    """The copy named by the ``audit_copy`` setting (a file copy needs the journal key)."""
    if not value:
        return None
    if value.startswith("file:"):
        if journal_key is None:
            raise ConfigurationError("an audit file copy needs the journal key")
        path = Path(value.removeprefix("file:"))
        return FileCopy(path if path.is_absolute() else data_dir / path, journal_key)
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
        # Called with each event once it is durable (the watcher): a failing listener never
        # undoes or blocks the append; it is counted and logged.
        self.listeners: list[Callable[[AuditEvent], object]] = []
        self.listener_failures = 0
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
            self._tell(event)
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
        self._tell(event)

    def _tell(self, event: AuditEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except AuditUnavailable:
                raise  # fail closed: the watcher could not stop an extraction in progress
            except Exception as exc:  # noqa: BLE001 - the event is stored; detection must not undo it
                self.listener_failures += 1
                log.error("audit listener failed (%s)", type(exc).__name__)

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
        if self.unchained or self.copy_failures or self.listener_failures:
            status = "degraded"
        return {"audit": status,
                "copy": "none" if self.copy is None else
                ("file" if isinstance(self.copy, FileCopy) else "syslog"),
                "copy_failures": self.copy_failures, "unchained_events": self.unchained,
                "watch_failures": self.listener_failures,
                "low_space": {k: {"free_mb": v} for k, v in sorted(self._low.items())}}


__all__ = ["JOURNAL_KEY", "AuditCopy", "AuditTrail", "FileCopy", "JournalTampered", "Recovery",
           "SyslogCopy", "copy_from_setting"]
