"""Sliding windows and the actor names the rules share.

An actor is ``account:<id>`` (a person's session), ``account:<id>/token:<id>`` (a service
token), ``local-operator:<user>`` (the command line on the lab's machine, which holds the key
file) or ``unknown`` (a failed login for an e-mail that names no account).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import Counter, deque
from collections.abc import Hashable
from datetime import datetime, timedelta

WATCH_ACTOR = "labvault:watch"
READS = frozenset({"vault:patient:read", "vault:result:read", "vault:patient:export"})
WRITES = frozenset({"vault:patient:create", "vault:result:write", "vault:result:validate"})
RESULT_WRITES = frozenset({"vault:result:write", "vault:result:validate"})
SEARCH = "vault:patient:search"
STAFF_ROLES = frozenset({"secretary", "technician", "biologist"})


def account_of(actor: str) -> uuid.UUID | None:
    """The account behind an actor name, or None (local operator, unknown, a source)."""
    if not actor.startswith("account:"):
        return None
    try:
        return uuid.UUID(actor.removeprefix("account:").split("/", 1)[0])
    except ValueError:
        return None


def token_of(actor: str) -> uuid.UUID | None:
    _, sep, rest = actor.partition("/token:")
    if not sep:
        return None
    try:
        return uuid.UUID(rest)
    except ValueError:
        return None


def exempt(actor: str) -> bool:
    """The local operator (it holds the key file: rules about stolen accounts do not apply) and
    the watcher itself."""
    return actor.startswith("local-operator:") or actor == WATCH_ACTOR


def network_of(source: str, v4_prefix: int = 24, v6_prefix: int = 64) -> str:
    """The network an address belongs to (a /24 or a /64 by default); a source that is not an
    address (``cli``, ``unknown``) is its own network."""
    try:
        addr = ipaddress.ip_address(source)
    except ValueError:
        return source
    if addr.version == 6 and addr.ipv4_mapped is not None:  # a dual-stack listener's IPv4
        addr = addr.ipv4_mapped
    prefix = v4_prefix if addr.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Window:
    """Items seen within the last `span`: how many, and how many distinct."""

    __slots__ = ("_counts", "_items", "span")

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self._items: deque[tuple[datetime, Hashable]] = deque()
        self._counts: Counter[Hashable] = Counter()

    def add(self, at: datetime, item: Hashable) -> None:
        self._items.append((at, item))
        self._counts[item] += 1
        self.evict(at)

    def evict(self, now: datetime) -> None:
        limit = now - self.span
        items, counts = self._items, self._counts
        while items and items[0][0] <= limit:
            _, old = items.popleft()
            counts[old] -= 1
            if counts[old] <= 0:
                del counts[old]

    def distinct(self) -> int:
        return len(self._counts)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Hashable]:
        return [item for _, item in self._items]

    def latest(self, n: int) -> list[Hashable]:
        return [item for _, item in list(self._items)[-n:]]


def bucket(at: datetime, span: timedelta) -> str:
    """A time bucket name (alerts are deduplicated per rule, actor and bucket)."""
    seconds = int(span.total_seconds())
    return str(int(at.timestamp()) // seconds * seconds)


SPANS = {"1m": timedelta(minutes=1), "10m": timedelta(minutes=10), "1h": timedelta(hours=1),
         "1d": timedelta(days=1)}

__all__ = ["READS", "RESULT_WRITES", "SEARCH", "SPANS", "STAFF_ROLES", "WATCH_ACTOR", "WRITES", "Window",
           "account_of", "bucket", "exempt", "network_of", "token_of"]
