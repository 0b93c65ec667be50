"""Where alerts go: e-mail (SMTP with STARTTLS), a signed webhook, and syslog.

A channel has a ``name`` and ``send(alert, contact)``. ``contact`` is the escalation contact,
an e-mail address that `SmtpChannel` sends to instead of its recipients; the webhook and syslog
ignore it (the alert's ``escalation_level`` says it is an escalation, and a staff address has
no business in a syslog stream). A channel that could not deliver after its own retries raises
`DeliveryFailed`, naming the channel, the alert id and the kind of failure, never an address,
a password, a server's reply text or a personal value.

Fail closed: e-mail goes only after STARTTLS (a server that does not offer it is refused:
nothing is sent, no password goes out in clear; ``starttls=False`` only for a relay on the
loopback); a webhook is https (http only to the loopback); secrets are `Secret` values, absent
from every repr, and `channels_from_config` reads them from environment variables that the
configuration names, never from the configuration itself.

Webhook signature (the scheme of Stripe's and GitHub's webhooks): each attempt carries
``X-Labvault-Timestamp: T`` (Unix seconds) and ``X-Labvault-Signature: sha256=HEX``, HEX being
HMAC-SHA-256 under the shared secret over ``f"{T}.".encode() + body``. A receiver checks it with
`verify_signature`, which compares in constant time and refuses a timestamp more than
``tolerance`` seconds away from its own clock: a captured request cannot be replayed later.
``X-Labvault-Delivery`` is one UUID per series of attempts, for the receiver to drop repeats.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import random
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

from labvault.audit import export
from labvault.clock import Clock, SystemClock
from labvault.errors import ConfigurationError, LabvaultError
from labvault.secret import Secret
from labvault.watch.alerts import Alert, Severity

log = logging.getLogger("labvault.watch")
FACILITY_AUTHPRIV = 10  # security/authorization messages, kept apart from the general log
SYSLOG_SEVERITY = {Severity.CRITICAL: 2, Severity.HIGH: 3, Severity.MEDIUM: 4, Severity.LOW: 5}
MSGID = "labvault-alert"
SD_ID = "alert@32473"  # 32473: the private enterprise number reserved for examples (RFC 5612)


class DeliveryFailed(LabvaultError):
    """An alert did not reach its channel. Says which and why in general terms only."""

    hint = "check the channel's server, credentials and network; the alert stays open"

    def __init__(self, channel: str, alert_id: uuid.UUID, reason: str) -> None:
        self.channel, self.alert_id, self.reason = channel, alert_id, reason
        super().__init__(f"alert {alert_id} not delivered by {channel}: {reason}")


class SignatureInvalid(LabvaultError):
    """A webhook request whose signature or timestamp does not check: drop it."""


class Channel(Protocol):
    name: str

    def send(self, alert: Alert, contact: str | None) -> None:
        """Deliver, or raise `DeliveryFailed` once the channel's own retries are spent."""
        ...


def _is_loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpChannel:
    """One SMTP session per alert: EHLO, STARTTLS (required), EHLO, AUTH if configured, send.
    One attempt: a mail server queues and retries by itself, and the watcher's escalation
    sends again later if the alert stays open."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: tuple[str, ...], *,
                 starttls: bool = True, username: str | None = None,
                 password: Secret[str] | None = None, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 10.0, clock: Clock | None = None) -> None:
        if not recipients:
            raise ValueError("recipients must name at least one address")
        if not starttls and not _is_loopback(host):
            raise ValueError("starttls may be off only for a relay on the loopback")
        if username is not None and (password is None or not starttls):
            raise ValueError("username needs a password, and starttls: never AUTH in clear")
        self.host, self.port, self.sender, self.recipients = host, port, sender, tuple(recipients)
        self.starttls, self.username, self._password = starttls, username, password
        self._context = ssl_context or ssl.create_default_context()
        self._timeout, self._clock = timeout, clock or SystemClock()

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host}:{self.port}, starttls={self.starttls})"

    def message(self, alert: Alert, contact: str | None = None) -> EmailMessage:
        """The e-mail: a plain-text explanation and the alert's JSON as an attachment."""
        msg = EmailMessage()
        msg["Subject"] = export._escape_controls(alert.subject)
        msg["From"] = self.sender
        msg["To"] = ", ".join((contact,) if contact else self.recipients)
        msg["Date"] = format_datetime(self._clock.now())
        msg["Message-ID"] = make_msgid("alert", self.sender.rpartition("@")[2] or "labvault.invalid")
        evidence = json.dumps(alert.evidence, indent=2, sort_keys=True, ensure_ascii=False)
        msg.set_content(
            f"{alert.explanation}\n\nSeverity:   {alert.severity.upper()}\nRule:       {alert.rule}\n"
            f"Actor:      {alert.actor}\nRaised at:  {alert.raised_at.isoformat()}\n"
            f"Occurrences: {alert.occurrences}, escalation level {alert.escalation_level}\n"
            f"Alert id:   {alert.id}\n\nEvidence:\n{evidence}\n\n"
            f"To acknowledge: labvault alerts ack {alert.id}\n"
            "The attached JSON is the alert as the webhook channel sends it.\n")
        msg.add_attachment(alert.body(), maintype="application", subtype="json",
                           filename=f"alert-{alert.id}.json")
        return msg

    def send(self, alert: Alert, contact: str | None) -> None:
        to = [contact] if contact else list(self.recipients)
        try:
            msg = self.message(alert, contact)  # ValueError: a header with a line break
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise DeliveryFailed(self.name, alert.id, "the server offers no STARTTLS; "
                                             "nothing sent in clear")
                    smtp.starttls(context=self._context)
                    smtp.ehlo()
                if self.username is not None and self._password is not None:
                    smtp.login(self.username, self._password.reveal())
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=to)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            code = getattr(exc, "smtp_code", None)
            reason = type(exc).__name__ + (f" (SMTP {code})" if code else "")
            raise DeliveryFailed(self.name, alert.id, reason) from None
        if refused:
            log.warning("alert %s: %d of %d e-mail recipients refused", alert.id, len(refused), len(to))


class WebhookChannel:
    """POST of the alert's canonical JSON, signed (see the module docstring), retried with
    exponential back-off on network errors, 429 and 5xx (``Retry-After`` honoured), never on
    another 4xx or a redirect (a redirect is not followed: the signed body stays where sent)."""

    name = "webhook"

    def __init__(self, url: str, secret: Secret[bytes], *, clock: Clock,
                 sleep: Callable[[float], None] = time.sleep, attempts: int = 5,
                 base_delay: float = 1.0, max_delay: float = 60.0, timeout: float = 5.0,
                 jitter: bool = True, transport: httpx.BaseTransport | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username:
            raise ValueError("url must be https://HOST/PATH, without credentials")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("url: http only to a loopback address; use https")
        if len(secret.reveal()) < 16:
            raise ValueError("secret must be at least 16 bytes")
        if attempts < 1 or base_delay < 0 or max_delay < 0:
            raise ValueError("attempts must be at least 1, base_delay and max_delay >= 0")
        self.url, self._secret, self._clock, self._sleep = url, secret, clock, sleep
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self._timeout, self._jitter, self._transport = timeout, jitter, transport
        self._origin = f"{parts.scheme}://{parts.netloc}"  # the path may itself be a token

    def __repr__(self) -> str:
        return f"WebhookChannel({self._origin}, attempts={self.attempts})"

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (from 0): the answer's Retry-After in
        seconds (its date form is rare: back-off then), else base * 2**attempt, ±20 % jitter;
        never more than ``max_delay``."""
        if retry_after is not None and retry_after.strip().isascii() and retry_after.strip().isdigit():
            return min(self.max_delay, float(retry_after))
        jitter = random.SystemRandom().uniform(0.8, 1.2) if self._jitter else 1.0
        return min(self.max_delay, self.base_delay * 2**attempt * jitter)

    def send(self, alert: Alert, contact: str | None) -> None:
        body, delivery, reason = alert.body(), str(uuid.uuid4()), "no attempt"
        with httpx.Client(transport=self._transport, timeout=self._timeout,
                          follow_redirects=False) as client:
            for attempt in range(self.attempts):
                stamp = str(int(self._clock.now().timestamp()))  # fresh per attempt: replay window
                headers = {"Content-Type": "application/json", "X-Labvault-Timestamp": stamp,
                           "X-Labvault-Signature": sign(self._secret, stamp, body),
                           "X-Labvault-Alert": str(alert.id), "X-Labvault-Delivery": delivery}
                retry_after = None
                try:
                    with client.stream("POST", self.url, content=body, headers=headers) as resp:
                        status = resp.status_code  # the answer's body is never read
                        retry_after = resp.headers.get("retry-after") if status in (429, 503) else None
                except httpx.TransportError as exc:
                    reason = type(exc).__name__
                else:
                    if 200 <= status < 300:
                        return
                    reason = f"HTTP {status}"
                    if status != 429 and status < 500:
                        raise DeliveryFailed(self.name, alert.id, f"{reason}, not retried")
                if attempt + 1 < self.attempts:
                    self._sleep(self.delay(attempt, retry_after))
        raise DeliveryFailed(self.name, alert.id, f"{self.attempts} attempts, last: {reason}")


def sign(secret: Secret[bytes], timestamp: str, body: bytes) -> str:
    """``sha256=HEX``: HMAC-SHA-256 over ``f"{timestamp}.".encode() + body``."""
    mac = HMAC(secret.reveal(), hashes.SHA256())
    mac.update(f"{timestamp}.".encode() + body)
    return "sha256=" + mac.finalize().hex()


def verify_signature(secret: Secret[bytes], timestamp: str, body: bytes, signature_header: str,
                     *, now: datetime, tolerance: int = 300) -> None:
    """For a receiver: raise `SignatureInvalid` unless the request was signed with ``secret``
    within ``tolerance`` seconds of ``now`` (constant-time comparison)."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise SignatureInvalid("bad webhook timestamp")
    if abs(now.timestamp() - int(timestamp)) > tolerance:
        raise SignatureInvalid("webhook timestamp outside the tolerance: possible replay")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(),
                               signature_header.encode("utf-8", "replace")):
        raise SignatureInvalid("bad webhook signature")


class SyslogChannel:
    """One RFC 5424 message per alert (facility authpriv, severity from the alert's, MSGID
    ``labvault-alert``), by `labvault.audit.export.SyslogSender`: UDP, or TCP framed by octet
    counting. Its structured data holds ids only; the explanation is the MSG."""

    name = "syslog"

    def __init__(self, host: str, port: int, transport: str = "udp", *,
                 clock: Clock | None = None, hostname: str | None = None) -> None:
        self.sender = export.SyslogSender(host, port, transport)
        self._clock, self._hostname = clock or SystemClock(), hostname

    def __repr__(self) -> str:
        return f"SyslogChannel({self.sender!r})"

    def line(self, alert: Alert) -> str:
        pri = FACILITY_AUTHPRIV * 8 + SYSLOG_SEVERITY[alert.severity]
        params = {"id": str(alert.id), "rule": alert.rule, "severity": str(alert.severity),
                  "actor": alert.actor, "raised_at": export._iso(alert.raised_at)}
        sd = "".join(f' {k}="{export._sd_value(v)}"' for k, v in params.items())
        host = export._printable(socket.gethostname() if self._hostname is None else self._hostname, 255)
        return (f"<{pri}>1 {export._iso(self._clock.now())} {host} {export.APP_NAME} {os.getpid()} "
                f"{MSGID} [{SD_ID}{sd}] {export._escape_controls(alert.explanation)}")

    def send(self, alert: Alert, contact: str | None) -> None:
        try:
            self.sender.send(self.line(alert))
        except OSError as exc:
            raise DeliveryFailed(self.name, alert.id, type(exc).__name__) from None

    def close(self) -> None:
        self.sender.close()


# -- configuration -------------------------------------------------------------------------------
_NUM = (int, float)
_FIELDS: dict[str, dict[str, tuple[Any, Any]]] = {  # field: (type, default; ... when required)
    "email": {"host": (str, ...), "port": (int, 587), "sender": (str, ...), "recipients": (list, ...),
              "starttls": (bool, True), "username": (str, None), "password_env": (str, None),
              "timeout": (_NUM, 10.0)},
    "webhook": {"url": (str, ...), "secret_env": (str, ...), "attempts": (int, 5),
                "base_delay": (_NUM, 1.0), "max_delay": (_NUM, 60.0), "timeout": (_NUM, 5.0)},
    "syslog": {"target": (str, ...)},
}


def _fail(channel: str, field: str, reason: str) -> ConfigurationError:
    exc = ConfigurationError(f"alert channel {channel}: {field} {reason}")
    exc.hint = "secrets go in environment variables, named by password_env / secret_env"
    return exc


def _settings(channel: str, section: object) -> dict[str, Any]:
    """A channel's section checked: every field known (a typo or a secret written in the file
    is refused) and of its type, the required ones present."""
    if channel not in _FIELDS or not isinstance(section, Mapping):
        raise _fail(channel, "section", "is not a channel (email, webhook, syslog)")
    for field in section:
        if field not in _FIELDS[channel]:
            raise _fail(channel, str(field), "is not a known field")
    out = {}
    for field, (kind, default) in _FIELDS[channel].items():
        value = section.get(field, default)
        if value is ...:
            raise _fail(channel, field, "is missing")
        if value is not None and (not isinstance(value, kind)
                                  or isinstance(value, bool) is not (kind is bool)):
            raise _fail(channel, field, "has the wrong type")
        out[field] = value
    return out


def channels_from_config(doc: Mapping[str, Any], *, clock: Clock,
                         environ: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """The channels of a mapping keyed email, webhook, syslog (see the tests for its form).
    Secrets come from the environment variables the mapping names, never from the mapping."""
    env = os.environ if environ is None else environ

    def secret(channel: str, field: str, name: str) -> str:
        if not env.get(name):
            raise _fail(channel, field, f"names the environment variable {name}, unset or empty")
        return env[name]

    out: dict[str, Channel] = {}
    for channel, section in doc.items():
        s = _settings(str(channel), section)
        try:
            if channel == "email":
                if not s["recipients"] or not all(isinstance(r, str) and r for r in s["recipients"]):
                    raise _fail(channel, "recipients", "must be a non-empty list of addresses")
                pw_env = s["password_env"]
                password = Secret(secret(channel, "password_env", pw_env)) if pw_env else None
                out[channel] = SmtpChannel(
                    s["host"], s["port"], s["sender"], tuple(s["recipients"]),
                    starttls=s["starttls"], username=s["username"], password=password,
                    timeout=float(s["timeout"]), clock=clock)
            elif channel == "webhook":
                key = Secret(secret(channel, "secret_env", s["secret_env"]).encode())
                out[channel] = WebhookChannel(
                    s["url"], key, clock=clock, attempts=s["attempts"], timeout=float(s["timeout"]),
                    base_delay=float(s["base_delay"]), max_delay=float(s["max_delay"]))
            else:
                target = export.parse_target(s["target"])
                out[channel] = SyslogChannel(target.host, target.port, target.transport, clock=clock)
        except ValueError as exc:
            raise _fail(channel, "setting", f"refused: {exc}") from None
    return out


__all__ = ["FACILITY_AUTHPRIV", "Channel", "DeliveryFailed", "SignatureInvalid", "SmtpChannel",
           "SyslogChannel", "WebhookChannel", "channels_from_config", "sign", "verify_signature"]
