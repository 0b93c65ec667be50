"""Tamper evidence of the audit chain on a log of 10,000 events: every modification,
deletion, insertion, reordering, forgery and truncation is detected at the right position."""

from __future__ import annotations

import dataclasses
import json
import os
import random

import pytest

from labvault.audit.chain import (
    CHECKPOINT,
    EPOCH,
    ChainedEvent,
    ChainWriter,
    Checkpoint,
    TamperDetected,
    chain,
    evolve,
    verify,
)
from labvault.crypto.keys import LocalKeyFile
from labvault.crypto.signing import Signer
from labvault.secret import Secret

N = 10_000


@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> Signer:
    path = tmp_path_factory.mktemp("keys") / "master.key"
    LocalKeyFile.create(path)
    return Signer(LocalKeyFile.open(path))


@pytest.fixture(scope="module")
def log(signer):
    key = Secret(os.urandom(32))
    rng = random.Random(5)
    bodies = [json.dumps({"n": i, "actor": f"user{rng.randrange(40)}", "action":
                          "vault:patient:read", "patients": [rng.getrandbits(64)]}).encode()
              for i in range(N)]
    items = list(chain(bodies, key, signer))
    events = [x for x in items if isinstance(x, ChainedEvent)]
    marks = [x for x in items if isinstance(x, Checkpoint)]
    return key, events, marks


def check(events, key, marks, signer):
    return verify(events, key, checkpoints=marks, public_key=signer.public_key)


def test_an_intact_log_verifies(log, signer) -> None:
    key, events, marks = log
    assert len(marks) == N // CHECKPOINT
    assert check(events, key, marks, signer) == N


@pytest.mark.parametrize("position", [1, 2, EPOCH, EPOCH + 1, 5_000, CHECKPOINT, N])
def test_one_flipped_byte_anywhere_is_found_there(log, signer, position) -> None:
    key, events, marks = log
    for field in ("body", "hash", "tag"):
        ev = events[position - 1]
        raw = bytearray(getattr(ev, field))
        raw[len(raw) // 2] ^= 0x01
        tampered = [*events[:position - 1], dataclasses.replace(ev, **{field: bytes(raw)}),
                    *events[position:]]
        with pytest.raises(TamperDetected) as caught:
            check(tampered, key, marks, signer)
        assert caught.value.position == position, field
        assert caught.value.kind in ("modified", "forged")


def test_a_deleted_event_is_found_at_its_place(log, signer) -> None:
    key, events, marks = log
    for position in (1, 777, N - 1):
        with pytest.raises(TamperDetected) as caught:
            check(events[:position - 1] + events[position:], key, marks, signer)
        assert (caught.value.position, caught.value.kind) == (position, "deleted")


def test_an_inserted_event_is_found_at_its_place(log, signer) -> None:
    key, events, marks = log
    fake = dataclasses.replace(events[99], body=b'{"n": "fake"}')
    with pytest.raises(TamperDetected) as caught:
        check([*events[:100], fake, *events[100:]], key, marks, signer)
    assert (caught.value.position, caught.value.kind) == (101, "inserted")


def test_two_swapped_events_are_found(log, signer) -> None:
    key, events, marks = log
    for i, j in ((500, 501), (1200, 6100)):
        swapped = list(events)
        swapped[i - 1], swapped[j - 1] = swapped[j - 1], swapped[i - 1]
        with pytest.raises(TamperDetected) as caught:
            check(swapped, key, marks, signer)
        assert (caught.value.position, caught.value.kind) == (i, "reordered")


def test_a_rewritten_past_is_detected_even_with_todays_key(log, signer) -> None:
    """A thief of the current key re-chains everything from event 10: old epochs' tags fail."""
    key, events, _ = log
    today = key.reveal()
    for _ in range((N - 1) // EPOCH):
        today = evolve(today)
    writer = ChainWriter(Secret(today), seq=9, last_hash=events[8].hash)
    forged = list(events[:9])
    for ev in events[9:]:
        body = ev.body.replace(b"vault:patient:read", b"vault:patient:list") if ev.seq == 10 \
            else ev.body
        forged.append(writer.append(body)[0])
    with pytest.raises(TamperDetected) as caught:
        verify(forged, key)
    assert (caught.value.position, caught.value.kind) == (10, "forged")


def test_truncation_before_an_exported_checkpoint_is_detected(log, signer) -> None:
    key, events, marks = log
    cut = marks[-1].last - 10
    with pytest.raises(TamperDetected) as caught:
        check(events[:cut], key, marks, signer)
    assert (caught.value.position, caught.value.kind) == (cut + 1, "truncated")


def test_a_checkpoint_signed_by_another_key_is_refused(log, signer, tmp_path) -> None:
    key, events, marks = log
    path = tmp_path / "other.key"
    LocalKeyFile.create(path)
    other = Signer(LocalKeyFile.open(path))
    with pytest.raises(TamperDetected) as caught:
        verify(events, key, checkpoints=marks, public_key=other.public_key)
    assert caught.value.kind == "checkpoint"


def test_verifying_a_range_from_a_checkpoint(log, signer) -> None:
    key, events, marks = log
    mark = marks[0]
    rest = events[mark.last:]
    assert verify(rest, key, start=mark.last + 1, start_hash=mark.last_hash) == N - mark.last
