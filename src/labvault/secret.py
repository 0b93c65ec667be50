"""Values that must never reach a log, a traceback or a test report in clear.

`Secret` wraps a key, a passphrase or a personal value. Its ``repr`` and ``str`` are masked;
the value comes out only through :meth:`Secret.reveal`, which makes every use greppable.
"""

from __future__ import annotations

import hmac
from typing import Generic, TypeVar

T = TypeVar("T")

MASK = "**********"


class Secret(Generic[T]):
    """A value whose representation is masked.

    >>> Secret("1 85 05 78 006 084 91")
    Secret('**********')
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        a, b = self._value, other._value
        if isinstance(a, bytes | str) and isinstance(b, bytes | str) and type(a) is type(b):
            a_b = a.encode() if isinstance(a, str) else a
            b_b = b.encode() if isinstance(b, str) else b
            return hmac.compare_digest(a_b, b_b)
        return bool(a == b)

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # pragma: no cover - explicit refusal
        raise TypeError("a Secret cannot be pickled")


def reveal(value: object) -> object:
    """Unwrap a Secret, pass anything else through."""
    return value.reveal() if isinstance(value, Secret) else value
