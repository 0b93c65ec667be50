"""How notices reach people: e-mail over SMTP and SMS through an HTTP gateway.

A `Sender` sends one message per call and returns the provider's reference (or None). It raises
`Retry` for a failure worth trying again later (network, SMTP 4xx, HTTP 429 and 5xx, with the
provider's ``Retry-After``) and `Refused` for a permanent one (SMTP 5xx, another HTTP status, an
address the message cannot carry). Neither names an address, a token, a reply text or a
personal value: only the kind of failure (``error``, e.g. ``"HTTP 400"``,
``"SMTPRecipientsRefused (SMTP 550)"``). Each sender makes one attempt: the outbox keeps the
notice queued and tries again later with exponential back-off, at the pace of a token bucket
shared by every channel (`labvault.breach.dispatch`).

E-mail (`EmailSender`): the SMTP session of the watcher's alert channel
(`labvault.watch.channels.SmtpChannel`): STARTTLS required (a server that does not offer it
gets nothing; ``starttls = false`` only for a relay on the loopback), AUTH only after STARTTLS,
the password read from the environment variable ``[smtp] password_env`` names. Plain text,
UTF-8, no link to click, no attachment; the provider reference is the ``Message-ID``.

SMS gateway (`SmsGateway`), the request labvault sends for each message::

    POST <[sms] url>                          https (http only to a loopback address)
    Authorization: Bearer <token>             from the variable ``[sms] token_env`` names
    Content-Type: application/json
    {"to": "+33612345678",                    E.164; French mobiles (06, 07 and overseas)
     "from": "<[sms] sender>",                the sender name or number
     "text": "...",                           UTF-8; written to fit GSM 03.38 (no ç, ê, ô...)
     "reference": "<notice id>"}              a UUID, the same on every attempt: drop repeats

- 2xx: accepted. A JSON object answer may carry ``"id"`` (a string), kept as the provider's
  reference; the answer is otherwise ignored.
- 429 and 5xx: tried again later, not before ``Retry-After`` (seconds) when the answer has one;
  a network error or a timeout (``[sms] timeout_seconds``) likewise.
- Any other status (4xx; 3xx: redirects are not followed): permanent failure, not retried.

The gateway is reached directly: the environment's proxy and CA variables (``HTTPS_PROXY``,
``SSL_CERT_FILE``...) are ignored, so that nothing outside ``breach.toml`` can route the
messages and the token elsewhere.
"""

from __future__ import annotations

import os
import re
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from labvault.clock import Clock
from labvault.errors import ConfigurationError, LabvaultError
from labvault.secret import Secret
from labvault.watch.channels import DeliveryFailed, SmtpChannel, _is_loopback

_EMAIL = re.compile(r"[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;.]+")
# Overseas mobile prefixes (national form) and their country codes; the rest of 06/07 is +33.
_OVERSEAS = {"0639": "+262", "0690": "+590", "0691": "+590", "0692": "+262", "0693": "+262",
             "0694": "+594", "0696": "+596", "0697": "+596"}


class DeliveryError(LabvaultError):
    """A message not delivered; ``error`` names the kind of failure only."""

    def __init__(self, error: str) -> None:
        self.error = error[:80]
        super().__init__(f"not delivered: {self.error}")


class Retry(DeliveryError):
    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.retry_after = retry_after


class Refused(DeliveryError):
    """Permanent: trying again would fail the same way."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to one person; the address and the text are personal (masked)."""

    notice_id: uuid.UUID
    channel: str
    to: Secret[str]
    subject: str
    text: Secret[str]

    @property
    def id(self) -> uuid.UUID:  # what `SmtpChannel` names in its failures
        return self.notice_id


class Sender(Protocol):
    channel: str

    def send(self, message: Outgoing) -> str | None:
        """Deliver, or raise `Retry` / `Refused`; the provider's reference if any."""
        ...

    def close(self) -> None: ...


def email_address(value: str | None) -> str | None:
    """The address if it can carry a message (one address, no line break), else None."""
    value = (value or "").strip()
    return value if _EMAIL.fullmatch(value) else None


def mobile_number(value: str | None) -> str | None:
    """A French mobile number (06, 07, overseas 0639/069x) in E.164 form, else None."""
    digits = re.sub(r"[\s.\-()/]", "", value or "")
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if re.fullmatch(r"\+33[67]\d{8}|\+(?:262|590|594|596)6\d{8}", digits):
        return digits
    if re.fullmatch(r"0[67]\d{8}", digits):
        return _OVERSEAS.get(digits[:4], "+33") + digits[1:]
    return None


class EmailSender(SmtpChannel):
    """One SMTP session per message (see the module docstring)."""

    channel = "email"

    def __init__(self, host: str, port: int, sender: str, sender_name: str, **kwargs: Any) -> None:
        super().__init__(host, port, sender, (sender,), **kwargs)
        self.sender_name = sender_name
        self._last_id = ""

    def message(self, alert: Any, contact: str | None = None) -> EmailMessage:
        out: Outgoing = alert
        msg = EmailMessage()
        msg["Subject"] = out.subject
        msg["From"] = formataddr((self.sender_name, self.sender)) if self.sender_name else self.sender
        msg["To"] = out.to.reveal()
        msg["Date"] = format_datetime(self._clock.now())
        msg["Message-ID"] = self._last_id = make_msgid(
            "notice", self.sender.rpartition("@")[2] or "labvault.invalid")
        msg["Content-Language"] = "fr"
        msg.set_content(out.text.reveal())
        return msg

    def send(self, message: Any, contact: str | None = None) -> str | None:  # type: ignore[override]
        try:
            super().send(message, message.to.reveal())
        except DeliveryFailed as exc:
            raise _smtp_failure(exc) from None
        return self._last_id

    def close(self) -> None:
        pass


def _smtp_failure(exc: DeliveryFailed) -> DeliveryError:
    """SMTP 5xx (or a recipient refused with 5xx, or a header the address breaks) is permanent;
    the rest (4xx, network, no STARTTLS offered) is tried again."""
    cause = exc.__context__
    codes = [c for c, _ in getattr(cause, "recipients", {}).values()] or [
        getattr(cause, "smtp_code", 0)]
    if isinstance(cause, ValueError) or any(500 <= int(c or 0) < 600 for c in codes):
        return Refused(exc.reason)
    return Retry(exc.reason)


class SmsGateway:
    """The HTTP SMS gateway adapter (request format in the module docstring)."""

    channel = "sms"

    def __init__(self, url: str, token: Secret[str], sender: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username:
            raise ValueError("url must be https://HOST/PATH, without credentials")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("url: http only to a loopback address; use https")
        if not token.reveal():
            raise ValueError("the gateway needs a bearer token")
        self.url, self.sender, self._token = url, sender, token
        self._origin = f"{parts.scheme}://{parts.netloc}"
        # Not the environment's proxy nor CA settings (HTTPS_PROXY, SSL_CERT_FILE...): the
        # messages and the token go straight to the gateway, checked against httpx's CAs.
        self._client = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False,
                                    trust_env=False)

    def __repr__(self) -> str:
        return f"SmsGateway({self._origin})"

    def send(self, message: Outgoing) -> str | None:
        body = {"to": message.to.reveal(), "from": self.sender, "text": message.text.reveal(),
                "reference": str(message.notice_id)}
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        try:
            resp = self._client.post(self.url, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise Retry(type(exc).__name__) from None
        status = resp.status_code
        if 200 <= status < 300:
            return _reference(resp)
        if status == 429 or status >= 500:
            after = resp.headers.get("retry-after", "").strip()
            raise Retry(f"HTTP {status}", float(after) if after.isascii() and after.isdigit()
                        else None)
        raise Refused(f"HTTP {status}")

    def close(self) -> None:
        self._client.close()


def _reference(resp: httpx.Response) -> str | None:
    try:
        found = resp.json().get("id") if resp.content else None
    except (ValueError, AttributeError):
        return None
    return found[:100] if isinstance(found, str) and found.isprintable() else None


def senders_from_config(config: Any, *, clock: Clock,
                        environ: Mapping[str, str] | None = None) -> dict[str, Sender]:
    """The channels `BreachConfig` configures (a channel without host or url is left out: its
    notices wait in the queue). Secrets come from the environment variables it names."""
    env = os.environ if environ is None else environ
    notices, smtp, sms = config["notices"], config["smtp"], config["sms"]
    out: dict[str, Sender] = {}

    def secret(section: str, key: str) -> Secret[str] | None:
        name = config[section][key]
        if not name:
            return None
        if not env.get(name):
            raise ConfigurationError(f"breach.toml: [{section}] {key} names {name}, unset or empty")
        return Secret(env[name])

    try:
        if smtp["host"]:
            if not notices["sender_email"]:
                raise ConfigurationError("breach.toml: [notices] sender_email is needed for e-mail")
            context = ssl.create_default_context(cafile=smtp["cafile"] or None)
            out["email"] = EmailSender(
                smtp["host"], smtp["port"], notices["sender_email"], notices["sender_name"],
                starttls=smtp["starttls"], username=smtp["username"] or None,
                password=secret("smtp", "password_env"), ssl_context=context,
                timeout=float(smtp["timeout_seconds"]), clock=clock)
        if sms["url"]:
            token = secret("sms", "token_env")
            if token is None:
                raise ConfigurationError("breach.toml: [sms] token_env must name a variable")
            out["sms"] = SmsGateway(sms["url"], token, sms["sender"],
                                    timeout=float(sms["timeout_seconds"]))
    except ValueError as exc:
        raise ConfigurationError(f"breach.toml: a delivery channel is refused: {exc}") from None
    return out


__all__ = ["DeliveryError", "EmailSender", "Outgoing", "Refused", "Retry", "Sender",
           "SmsGateway", "email_address", "mobile_number", "senders_from_config"]
