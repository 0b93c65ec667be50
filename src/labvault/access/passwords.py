"""Passwords: the strength policy, argon2id hashing, verification that raises.

Hashes are argon2id with OWASP's minimum recommended parameters (Password Storage Cheat
Sheet): 19 MiB of memory, 2 passes, 1 lane — about 40 ms on one core. That bounds how many
guesses per second a stolen ``account`` table allows while keeping logins cheap for the server.
A hash made with weaker (older) parameters is upgraded at the next successful login
(`needs_rehash`).

Passwords are compared after Unicode NFKC normalisation, so that the same password typed on
two keyboards (composed or decomposed accents) is the same password.

An unknown account is verified against a fixed dummy hash, so that the time a login takes does
not reveal whether the account exists.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from labvault.errors import AuthenticationFailed, InvalidRecord
from labvault.secret import Secret

MEMORY_KIB = 19 * 1024  # OWASP minimum for argon2id: m=19 MiB, t=2, p=1
TIME_COST = 2
PARALLELISM = 1
MIN_LENGTH = 12
MAX_LENGTH = 128
MIN_SCORE = 3  # zxcvbn score out of 4: "safely unguessable: moderate protection"
_LOCAL_PART_MIN = 3  # shorter local parts ("jd@…") would forbid too many passwords
_WORD_MIN = 4  # pieces of the local part ("jean", "dupont" in "jean.dupont@…")

HASHER = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM,
                        hash_len=32, salt_len=16, type=Type.ID)
# zxcvbn keeps the user's words in a module-level dictionary while it scores: one at a time.
_ZXCVBN = threading.Lock()


def _normalised(password: Secret[str]) -> str:
    return unicodedata.normalize("NFKC", password.reveal())


def _local_parts(email: str) -> list[str]:
    local = email.strip().lower().split("@", 1)[0]
    words = [w for w in re.split(r"[._+\-]+", local) if len(w) >= _WORD_MIN]
    return [local, *words] if len(local) >= _LOCAL_PART_MIN else words


def check_policy(password: Secret[str], email: str, other_words: tuple[str, ...] = ()) -> None:
    """Raise `InvalidRecord("password", reason)` unless the password is acceptable.

    Acceptable: 12 to 128 characters, a zxcvbn score of at least 3 with the account's e-mail
    and `other_words` (its display name) counted as known words, and not containing the
    e-mail's local part. The reason never quotes the password.
    """
    value = _normalised(password)
    if len(value) < MIN_LENGTH:
        raise InvalidRecord("password", f"shorter than {MIN_LENGTH} characters")
    if len(value) > MAX_LENGTH:
        raise InvalidRecord("password", f"longer than {MAX_LENGTH} characters")
    lowered = value.lower()
    if any(part in lowered for part in _local_parts(email)):
        raise InvalidRecord("password", "contains the e-mail address")
    words = [email.strip().lower(), *_local_parts(email)]
    for text in other_words:
        words += [text.lower(), *(w for w in re.split(r"[\s._+\-']+", text.lower()) if w)]
    with _ZXCVBN:
        score = int(zxcvbn(value, user_inputs=words, max_length=MAX_LENGTH)["score"])
    if score < MIN_SCORE:
        raise InvalidRecord("password", f"too easy to guess (strength {score} of 4, "
                                        f"{MIN_SCORE} needed): use a longer passphrase")


def hash_password(password: Secret[str]) -> str:
    """The argon2id hash (PHC string: algorithm, parameters, salt, digest)."""
    return HASHER.hash(_normalised(password))


@cache
def _dummy_hash() -> str:
    return HASHER.hash("labvault: no such account")


def verify_password(stored_hash: str | None, password: Secret[str]) -> None:
    """Raise `AuthenticationFailed` unless the password matches the hash.

    With no hash (unknown account, or not enrolled yet) a dummy hash is verified anyway, so the
    call takes the same time, then it fails.
    """
    candidate = _normalised(password)
    try:
        HASHER.verify(stored_hash or _dummy_hash(), candidate)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise AuthenticationFailed() from None
    if stored_hash is None:
        raise AuthenticationFailed()


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (upgrade it)."""
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
