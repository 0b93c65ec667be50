"""The second factor: TOTP codes (RFC 6238) and single-use recovery codes.

TOTP is HMAC-SHA-1, 6 digits, 30-second steps: the parameters every authenticator app
supports. A code is checked at the injected clock's time, one step either side (clock drift),
and a step at or before the last accepted one is refused, so an observed code cannot be
replayed. The secret is 160 random bits (base32), sealed in the database.

Recovery codes are 10 codes of 10 base32 characters (50 random bits each), shown as two groups
of five. Only a keyed SHA-256 digest (HMAC under a key of the key provider) is stored: a copy of
the database alone does not allow guessing them offline.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import pyotp

from labvault.errors import AuthenticationFailed
from labvault.secret import Secret

ISSUER = "labvault"
DIGITS = 6
STEP_SECONDS = 30
WINDOW = 1  # steps accepted either side of the current one
RECOVERY_CODES = 10
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_RECOVERY_LENGTH = 10
_CODE = re.compile(rf"\d{{{DIGITS}}}")
_RECOVERY = re.compile(rf"[{_BASE32}]{{{_RECOVERY_LENGTH}}}")


def new_secret() -> Secret[str]:
    """A random 160-bit TOTP secret, base32 (what authenticator apps take)."""
    return Secret(pyotp.random_base32(32))


def _totp(secret: Secret[str]) -> pyotp.TOTP:
    return pyotp.TOTP(secret.reveal(), digits=DIGITS, digest=hashlib.sha1, interval=STEP_SECONDS)


def provisioning_uri(secret: Secret[str], account_name: str) -> Secret[str]:
    """The ``otpauth://`` URI a QR code encodes (it holds the secret and the account name)."""
    uri = _totp(secret).provisioning_uri(name=account_name, issuer_name=ISSUER)
    return Secret(uri)


def step_at(at: datetime) -> int:
    """The TOTP time step of an instant."""
    return int(at.timestamp()) // STEP_SECONDS


def code_at(secret: Secret[str], at: datetime) -> str:
    """The code of the step at ``at`` (what the user's app shows then)."""
    return _totp(secret).at(at)


def verify_code(secret: Secret[str], code: Secret[str] | str, at: datetime,
                last_step: int | None) -> int:
    """Return the step the code belongs to; raise `AuthenticationFailed` if it matches no step
    within the window, or only a step at or before ``last_step`` (a replay)."""
    candidate = re.sub(r"\s", "", Secret(code).reveal() or "")
    if not _CODE.fullmatch(candidate):
        raise AuthenticationFailed()
    totp = _totp(secret)
    current = step_at(at)
    matched = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Every step in the window is computed and compared: the time taken does not depend
        # on which one matched.
        if hmac.compare_digest(totp.generate_otp(step), candidate) and matched is None:
            matched = step
    if matched is None or (last_step is not None and matched <= last_step):
        raise AuthenticationFailed()
    return matched


# -- recovery codes ------------------------------------------------------------------------------
def new_recovery_codes(count: int = RECOVERY_CODES) -> list[Secret[str]]:
    """``count`` codes like ``K3QZD-7MWPA``, each 50 random bits."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_BASE32) for _ in range(_RECOVERY_LENGTH))
        codes.append(Secret(f"{raw[:5]}-{raw[5:]}"))
    return codes


def normalise_recovery_code(code: str) -> str | None:
    """The code without separators, upper-cased; None if it cannot be a recovery code."""
    compact = re.sub(r"[\s\-]", "", code or "").upper()
    return compact if _RECOVERY.fullmatch(compact) else None


def recovery_digest(code: Secret[str] | str, key: Secret[bytes]) -> bytes | None:
    """The stored form of a recovery code: HMAC-SHA-256 of its normalised value."""
    compact = normalise_recovery_code(Secret(code).reveal())
    if compact is None:
        return None
    return hmac.new(key.reveal(), compact.encode("ascii"), hashlib.sha256).digest()
