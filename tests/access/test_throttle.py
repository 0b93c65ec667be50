"""Failed-login throttling with time control: back-off from the 5th failure, a 30-minute lock
from the 10th, reset on success, keys that are HMACs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from labvault.access import throttle as rules
from labvault.access.throttle import THROTTLE_KEY, Throttle, block_for
from labvault.errors import AuthenticationFailed
from labvault.store.accounts import AccountStore
from labvault.store.tables import login_throttle

EMAIL = "camille.exemple@lab.example"
ADDRESS = "198.51.100.7"


@pytest.fixture
def counter(vault, clock) -> Throttle:
    return Throttle(AccountStore(vault._records.engine), vault._keys.index_key(THROTTLE_KEY),
                    clock)


def test_the_schedule():
    assert [block_for(n) for n in range(1, 5)] == [None] * 4
    assert [block_for(n).total_seconds() for n in range(5, 10)] == [1, 2, 4, 8, 16]
    assert block_for(10) == block_for(11) == block_for(50) == timedelta(minutes=30)


def test_the_back_off_is_capped_at_15_minutes(monkeypatch):
    monkeypatch.setattr(rules, "LOCK_AFTER", 100)
    assert block_for(14).total_seconds() == 512
    assert block_for(15) == block_for(40) == timedelta(minutes=15)


def test_back_off_grows_then_locks_for_30_minutes(counter, clock):
    key = counter.key("email", EMAIL)
    waits = []
    for _ in range(10):
        counter.check([key])  # free again whenever the previous block has passed
        waits.append(counter.failure([key]))
        if waits[-1]:
            with pytest.raises(AuthenticationFailed) as info:
                counter.check([key])
            assert info.value.retry_after == waits[-1]
            assert str(info.value) == "authentication failed"
            if len(waits) < 10:
                clock.advance(timedelta(seconds=waits[-1]))
    assert waits == [None, None, None, None, 1, 2, 4, 8, 16, 1800]

    # The lock holds for 30 minutes, counting down, then lifts.
    clock.advance(timedelta(minutes=29, seconds=59))
    with pytest.raises(AuthenticationFailed) as info:
        counter.check([key])
    assert info.value.retry_after == 1
    clock.advance(timedelta(seconds=1))
    counter.check([key])
    # Still 10 in a row: the next failure locks again at once.
    assert counter.failure([key]) == 1800


def test_success_resets_the_counter(counter, clock):
    key = counter.key("email", EMAIL)
    for _ in range(4):
        counter.failure([key])
    counter.success(key)
    assert [counter.failure([key]) for _ in range(5)] == [None, None, None, None, 1]


def test_a_counter_quiet_for_a_day_starts_again(counter, clock):
    key = counter.key("address", ADDRESS)
    for _ in range(9):
        counter.failure([key])
        clock.advance(timedelta(seconds=20))
    clock.advance(timedelta(days=1))
    assert counter.failure([key]) is None


def test_the_longest_block_of_several_counters_is_reported(counter, clock):
    address, email = counter.key("address", ADDRESS), counter.key("email", EMAIL)
    for _ in range(9):
        counter.failure([address])
    counter.failure([email])
    with pytest.raises(AuthenticationFailed) as info:
        counter.check([email, address])
    assert info.value.retry_after == 16
    counter.check([email])  # the e-mail's own counter is free


def test_keys_are_hmacs_without_the_address_or_email(vault, counter):
    counter.failure([counter.key("address", ADDRESS), counter.key("email", EMAIL)])
    with vault._records.engine.connect() as conn:
        keys = [bytes(k) for (k,) in conn.execute(select(login_throttle.c.key))]
    assert len(keys) == 2 and all(len(k) == 32 for k in keys)
    for k in keys:
        assert ADDRESS.encode() not in k and EMAIL.encode() not in k
    assert counter.key("email", EMAIL) != counter.key("address", EMAIL)
