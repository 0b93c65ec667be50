"""The audit log's tamper evidence: a keyed, forward-secure hash chain with signed checkpoints.

Each event ``i`` (its canonical bytes) is chained::

    h_i = SHA-256("labvault/audit/event/v1" || h_{i-1} || i || body_i)      h_0 = GENESIS
    t_i = HMAC-SHA-256(k_e, h_i)                                            e = epoch of i

The MAC key moves forward once per epoch (``EPOCH`` events): ``k_{e+1} = HMAC(k_e, "evolve")``,
and the writer forgets ``k_e``. Whoever steals today's key can forge today's events, never
yesterday's: rewriting an event of a closed epoch needs that epoch's key, which no longer
exists on the server. The auditor holds ``k_0`` (given at initialisation, kept elsewhere) and
re-derives every epoch's key to verify.

Every ``CHECKPOINT`` events a checkpoint records the range, the last chain hash and a Merkle
root (RFC 6962 leaf/node hashing) over the range's event hashes, signed with Ed25519.
Checkpoints exported elsewhere prove the log existed up to their position: a log cut after a
checkpoint, or rewritten with a fresh key, no longer matches them.

`verify` names the first position where the log stops being the one written: a modified,
deleted, inserted or reordered event, a forged tag, or a truncation before the last known
checkpoint. It raises `TamperDetected`; it never returns a boolean.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from labvault.crypto.signing import Signer
from labvault.errors import LabvaultError
from labvault.secret import Secret

GENESIS = hashlib.sha256(b"labvault/audit/genesis/v1").digest()
EVENT_CONTEXT = b"labvault/audit/event/v1"
EVOLVE = b"labvault/audit/evolve/v1"
CHECKPOINT_CONTEXT = b"labvault/audit/checkpoint/v1\n"
EPOCH = 1024
CHECKPOINT = 4096
_SEQ = struct.Struct(">Q")


class TamperDetected(LabvaultError):
    """The log is not the one that was written. ``position`` is the first sequence number
    where it differs; ``kind`` says how (modified, deleted, inserted, reordered, truncated,
    forged, checkpoint, or index: the patient index of the event is not its chained patient
    ids)."""

    def __init__(self, position: int, kind: str, detail: str = "") -> None:
        self.position = position
        self.kind = kind
        super().__init__(f"audit log {kind} at event {position}" + (f": {detail}" if detail
                                                                     else ""))


@dataclass(frozen=True, slots=True)
class ChainedEvent:
    seq: int  # 1, 2, 3...
    body: bytes  # the event's canonical bytes (no personal value)
    hash: bytes
    tag: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    first: int
    last: int
    last_hash: bytes
    root: bytes
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(self.first, self.last, self.last_hash, self.root)


def event_hash(prev: bytes, seq: int, body: bytes) -> bytes:
    return hashlib.sha256(EVENT_CONTEXT + prev + _SEQ.pack(seq) + body).digest()


def evolve(key: bytes) -> bytes:
    return hmac.new(key, EVOLVE, hashlib.sha256).digest()


def tagger(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA-256 under `key` (RFC 2104), its padded key states computed once: the tag of
    each event of an epoch costs two SHA-256 compressions of the message and nothing else."""
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def tag(message: bytes) -> bytes:
        i = inner.copy()
        i.update(message)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return tag


def epoch_of(seq: int) -> int:
    return (seq - 1) // EPOCH


def merkle_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash: leaves prefixed 0x00, nodes 0x01."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    level = [hashlib.sha256(b"\x00" + h).digest() for h in hashes]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def checkpoint_message(first: int, last: int, last_hash: bytes, root: bytes) -> bytes:
    return CHECKPOINT_CONTEXT + _SEQ.pack(first) + _SEQ.pack(last) + last_hash + root


class ChainWriter:
    """Appends events to the chain; forgets each epoch's key when the epoch closes."""

    def __init__(self, key: Secret[bytes], *, seq: int = 0, last_hash: bytes = GENESIS,
                 signer: Signer | None = None, pending: list[bytes] | None = None) -> None:
        self._key = key.reveal()  # the key of the epoch of event seq + 1
        self.seq = seq
        self.last_hash = last_hash
        self._signer = signer
        self._pending = list(pending or [])  # event hashes since the last checkpoint

    def __repr__(self) -> str:
        return f"ChainWriter(seq={self.seq})"

    @property
    def key(self) -> Secret[bytes]:
        """The current epoch's key, to persist (replacing the previous one)."""
        return Secret(self._key)

    def append(self, body: bytes) -> tuple[ChainedEvent, Checkpoint | None]:
        seq = self.seq + 1
        if seq > 1 and epoch_of(seq) != epoch_of(seq - 1):
            self._key = evolve(self._key)  # the closed epoch's key is gone from here on
        h = event_hash(self.last_hash, seq, body)
        event = ChainedEvent(seq, body, h, hmac.new(self._key, h, hashlib.sha256).digest())
        self.seq, self.last_hash = seq, h
        self._pending.append(h)
        checkpoint = None
        if self._signer is not None and seq % CHECKPOINT == 0:
            checkpoint = self.checkpoint()
        return event, checkpoint

    def checkpoint(self) -> Checkpoint:
        if self._signer is None:
            raise RuntimeError("no signer for checkpoints")
        first = self.seq - len(self._pending) + 1
        root = merkle_root(self._pending)
        sig = self._signer.sign(checkpoint_message(first, self.seq, self.last_hash, root))
        self._pending = []
        return Checkpoint(first, self.seq, self.last_hash, root, sig)


def verify(events: Iterable[ChainedEvent], initial_key: Secret[bytes] | None, *,
           checkpoints: Iterable[Checkpoint] = (), public_key: Ed25519PublicKey | None = None,
           start: int = 1, start_hash: bytes = GENESIS) -> int:
    """Check the chain from `start`; return the number of events checked.

    Raises `TamperDetected` at the first event that breaks it. With checkpoints (and the key
    that signed them), each checkpoint's signature, range, last hash and Merkle root must
    match the log, and the log must reach the last checkpoint. Without `initial_key` the tags
    are not checked (hashes and checkpoints only): forgeries by a holder of the key file are
    then found by exported checkpoints alone.
    """
    marks = sorted(checkpoints, key=lambda c: c.last)
    for c in marks:
        if public_key is not None:
            try:
                public_key.verify(c.signature, c.message())
            except InvalidSignature:
                raise TamperDetected(c.last, "checkpoint", "signature does not verify") from None
    by_last = {c.last: c for c in marks}
    key = initial_key.reveal() if initial_key is not None else None
    epoch = 0
    for _ in range(epoch_of(start) if key is not None else 0):
        key = evolve(key)
        epoch += 1
    tag = tagger(key) if key is not None else None
    expected, prev = start, start_hash
    window: list[bytes] = []
    stream = iter(events)
    for ev in stream:
        if ev.seq != expected:
            raise TamperDetected(expected, _gap_kind(ev.seq, expected, stream))
        h = event_hash(prev, ev.seq, ev.body)
        if not hmac.compare_digest(h, ev.hash):
            raise TamperDetected(ev.seq, "modified", "content does not match its hash")
        if key is not None:
            if (ev.seq - 1) // EPOCH != epoch:
                while epoch < epoch_of(ev.seq):
                    key = evolve(key)
                    epoch += 1
                tag = tagger(key)
            if not hmac.compare_digest(tag(h), ev.tag):
                raise TamperDetected(ev.seq, "forged",
                                     "the tag was not made with that epoch's key")
        window.append(h)
        mark = by_last.get(ev.seq)
        if mark is not None:
            mine = window[len(window) - (mark.last - mark.first + 1):]
            if mark.last_hash != h or merkle_root(mine) != mark.root:
                raise TamperDetected(mark.first, "checkpoint", "log differs from checkpoint")
            window = []
        prev, expected = h, expected + 1
    if marks and expected - 1 < marks[-1].last:
        raise TamperDetected(expected, "truncated",
                             f"the log ends before checkpoint {marks[-1].last}")
    return expected - start


def _gap_kind(got: int, expected: int, rest: Iterator[ChainedEvent]) -> str:
    """Why the event at `expected` carries number `got` (the rest of the log is read to tell
    a deletion from a reordering)."""
    if got == expected - 1:
        return "inserted"
    if got < expected:
        return "reordered"
    return "reordered" if any(ev.seq == expected for ev in rest) else "deleted"


def placed_at(position: int, prev: bytes, rows: Iterable[ChainedEvent]) -> str | None:
    """Refine the kind of a failure at `position` (a log stored by position, where numbers
    cannot repeat): `rows` are the stored events from `position` on, `prev` the verified hash
    before it. "inserted" when the next event belongs at `position` (the one there is extra),
    "reordered" when a later one does (events moved), None when no stored event belongs there.
    """
    it = iter(rows)
    here = next(it, None)
    if here is None:
        return None
    for n, ev in enumerate(it):
        if event_hash(prev, position, ev.body) == ev.hash:
            if n == 0 and event_hash(ev.hash, position + 1, here.body) != here.hash:
                return "inserted"
            return "reordered"
    return None


def chain(bodies: Iterable[bytes], key: Secret[bytes],
          signer: Signer | None = None) -> Iterator[ChainedEvent | Checkpoint]:
    """Chain a sequence of event bodies (tests, benchmarks, rebuilding an export)."""
    writer = ChainWriter(key, signer=signer)
    for body in bodies:
        event, mark = writer.append(body)
        yield event
        if mark is not None:
            yield mark


__all__ = ["CHECKPOINT", "EPOCH", "GENESIS", "ChainWriter", "ChainedEvent", "Checkpoint",
           "TamperDetected", "chain", "epoch_of", "event_hash", "merkle_root", "placed_at",
           "verify"]
