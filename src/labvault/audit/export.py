"""Audit events out of labvault: JSON lines and RFC 5424 syslog messages, and their senders.

A JSON line holds the event's position in the chain, its time (ISO 8601, UTC), actor, role,
source, purpose, action, outcome, internal patient ids (hex), field categories, request id,
detail, and its chain hash and tag (hex). A syslog message (RFC 5424) carries the same fields
as the parameters of one structured-data element ``audit@32473``, with facility local4,
severity info (warning when the call was refused), app-name ``labvault`` and the action as
msgid. Over TCP each message is framed by octet counting (RFC 6587). Neither format holds a
personal value: events carry none. Neither lets a value break a line: JSON escapes control
characters, and the syslog writer writes any control character of a parameter or of the
message as ``\\uXXXX`` (the stored columns hold none: `labvault.audit.log` replaces them).
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from labvault.audit.log import LoggedEvent
from labvault.audit.sink import AuditEvent

FACILITY_LOCAL4 = 20
SEVERITY_INFO, SEVERITY_WARNING = 6, 4
SD_ID = "audit@32473"  # 32473: the private enterprise number reserved for examples (RFC 5612)
APP_NAME = "labvault"
REFUSED = frozenset({"denied", "step_up_required", "not_found", "key_missing"})


def _iso(at: datetime) -> str:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def record(event: AuditEvent, seq: int | None = None, hash_: bytes | None = None,
           tag: bytes | None = None) -> dict[str, Any]:
    """An event as a JSON-ready mapping."""
    return {
        "seq": seq, "at": _iso(event.at), "actor": event.actor, "role": event.role,
        "source": event.source, "purpose": event.purpose, "action": event.action,
        "outcome": event.outcome, "patient_ids": [p.hex for p in event.patient_ids],
        "categories": list(event.categories), "request_id": event.request_id,
        "detail": event.detail, "hash": hash_.hex() if hash_ else None,
        "tag": tag.hex() if tag else None,
    }


def from_record(doc: dict[str, Any]) -> AuditEvent:
    """The event of a JSON line (the file copy's journal)."""
    return AuditEvent(
        at=datetime.fromisoformat(doc["at"].replace("Z", "+00:00")), actor=doc["actor"],
        role=doc["role"], source=doc["source"], purpose=doc["purpose"], action=doc["action"],
        outcome=doc["outcome"], patient_ids=tuple(uuid.UUID(h) for h in doc["patient_ids"]),
        detail=dict(doc.get("detail") or {}), request_id=doc.get("request_id") or "",
        categories=tuple(doc.get("categories") or ()))


def json_line(logged: LoggedEvent) -> str:
    return json.dumps(record(logged.event, logged.seq, logged.hash, logged.tag),
                      sort_keys=True, ensure_ascii=False)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_controls(text: str) -> str:
    """Every control character (C0, DEL, C1, and the Unicode line and paragraph separators) as
    ``\\uXXXX``: one message stays one line, whatever a value holds."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _sd_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return _escape_controls(text)


def _printable(text: str, limit: int) -> str:
    out = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return out or "-"


def syslog_line(event: AuditEvent, seq: int | None = None, hash_: bytes | None = None,
                tag: bytes | None = None, *, hostname: str | None = None) -> str:
    """One RFC 5424 message (without framing)."""
    severity = SEVERITY_WARNING if event.outcome in REFUSED else SEVERITY_INFO
    pri = FACILITY_LOCAL4 * 8 + severity
    params = {
        "seq": "" if seq is None else str(seq), "actor": event.actor, "role": event.role,
        "source": event.source, "purpose": event.purpose, "outcome": event.outcome,
        "patient_ids": ",".join(p.hex for p in event.patient_ids),
        "categories": ",".join(event.categories), "request_id": event.request_id,
        "detail": event.detail, "hash": hash_.hex() if hash_ else "",
        "tag": tag.hex() if tag else "",
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    host = _printable(hostname if hostname is not None else socket.gethostname(), 255)
    return (f"<{pri}>1 {_iso(event.at)} {host} {APP_NAME} {os.getpid()} "
            f"{_printable(event.action, 32)} {sd} "
            f"{_escape_controls(event.action)} {_escape_controls(event.outcome)}")


def syslog_of(logged: LoggedEvent, hostname: str | None = None) -> str:
    return syslog_line(logged.event, logged.seq, logged.hash, logged.tag, hostname=hostname)


class SyslogSender:
    """Sends RFC 5424 messages to a collector over UDP (one datagram each) or TCP (octet
    counting, RFC 6587; reconnects once if the connection dropped)."""

    def __init__(self, host: str, port: int, transport: str = "udp", timeout: float = 2.0) -> None:
        if transport not in ("udp", "tcp"):
            raise ValueError("transport must be udp or tcp")
        self.host, self.port, self.transport, self._timeout = host, port, transport, timeout
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"SyslogSender({self.transport}://{self.host}:{self.port})"

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if self.transport == "udp":
                info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(info[0], socket.SOCK_DGRAM)
                sock.connect(info[4])
            else:
                sock = socket.create_connection((self.host, self.port), timeout=self._timeout)
            sock.settimeout(self._timeout)
            self._sock = sock
        return self._sock

    def send(self, message: str) -> None:
        data = message.encode("utf-8")
        if self.transport == "tcp":
            data = str(len(data)).encode() + b" " + data
        for attempt in (1, 2):
            try:
                self._connect().sendall(data) if self.transport == "tcp" \
                    else self._connect().send(data)
                return
            except OSError:
                self.close()
                if attempt == 2:
                    raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def parse_target(url: str) -> SyslogSender:
    """``udp://host:port`` or ``tcp://host:port`` (``syslog+`` prefix allowed)."""
    scheme, sep, rest = url.removeprefix("syslog+").partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or not colon or scheme not in ("udp", "tcp") or not port.isdigit() or not host:
        raise ValueError("a syslog target is udp://host:port or tcp://host:port")
    return SyslogSender(host.strip("[]"), int(port), scheme)


__all__ = ["SyslogSender", "from_record", "json_line", "parse_target", "record", "syslog_line",
           "syslog_of"]
