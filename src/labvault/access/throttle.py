"""Failed-login throttling, per account and per source address.

Each counter is keyed by an HMAC (under the key provider's ``access/throttle/v1`` index key) of
what it counts — the normalised e-mail or the source address — so the table holds neither in
clear, and an unknown e-mail is throttled exactly like a known one.

The rule, for each counter (failed passwords and failed second factors alike):

- the first ``FREE_FAILURES`` (5) failures in a row cost nothing;
- from the 5th on, the counter is blocked for 1 s, doubling with each failure, capped at 15 min;
- from the ``LOCK_AFTER``-th (10th) on, every failure locks it for 30 min;
- a successful login clears the account's counter (not the address's: one valid account must
  not reset the budget of an address trying many others);
- a counter whose last failure is a day old starts again from zero.

All times come from the injected clock.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from labvault.clock import Clock
from labvault.errors import AuthenticationFailed
from labvault.secret import Secret

THROTTLE_KEY = "access/throttle/v1"
FREE_FAILURES = 5
BASE_DELAY = timedelta(seconds=1)
MAX_DELAY = timedelta(minutes=15)
LOCK_AFTER = 10
LOCK = timedelta(minutes=30)
FORGET_AFTER = timedelta(days=1)


class ThrottleStore(Protocol):
    def throttles(self, keys: Sequence[bytes]) -> list: ...

    def record_failure(self, key: bytes, now: datetime, forget_before: datetime,
                       block_for) -> datetime | None: ...

    def clear_failures(self, key: bytes) -> None: ...


def block_for(failures: int) -> timedelta | None:
    """How long a counter is blocked after its ``failures``-th failure in a row."""
    if failures >= LOCK_AFTER:
        return LOCK
    if failures >= FREE_FAILURES:
        return min(MAX_DELAY, BASE_DELAY * 2 ** (failures - FREE_FAILURES))
    return None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


class Throttle:
    """Counters of failed logins; `check` raises while one of them is blocked."""

    def __init__(self, store: ThrottleStore, key: Secret[bytes], clock: Clock) -> None:
        self._store = store
        self._key = key
        self._clock = clock

    def __repr__(self) -> str:
        return "Throttle()"

    def key(self, kind: str, value: str) -> bytes:
        """The counter of an e-mail (``kind="email"``, normalised) or an address."""
        return hmac.new(self._key.reveal(), f"{kind}\x00{value}".encode(),
                        hashlib.sha256).digest()

    def _now(self) -> datetime:
        return self._clock.now().astimezone(UTC)

    def retry_after(self, keys: Sequence[bytes]) -> int | None:
        """Seconds until every counter among ``keys`` is free again; None if none is blocked."""
        now = self._now()
        waits = [_aware(r.blocked_until) - now for r in self._store.throttles(keys)
                 if r.blocked_until is not None and _aware(r.blocked_until) > now]
        return _seconds(max(waits)) if waits else None

    def check(self, keys: Sequence[bytes]) -> None:
        """Raise `AuthenticationFailed` (with ``retry_after``) while a counter is blocked."""
        wait = self.retry_after(keys)
        if wait is not None:
            raise AuthenticationFailed(retry_after=wait)

    def failure(self, keys: Sequence[bytes]) -> int | None:
        """Count a failure under each key; the seconds to wait now, if one became blocked."""
        now = self._now()
        untils = [self._store.record_failure(k, now, now - FORGET_AFTER, block_for)
                  for k in keys]
        blocked = [u - now for u in untils if u is not None]
        return _seconds(max(blocked)) if blocked else None

    def success(self, key: bytes) -> None:
        self._store.clear_failures(key)
