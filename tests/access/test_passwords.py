"""Password policy and hashing: argon2id at OWASP's minimum, upgrade of old hashes, a dummy
verification for unknown accounts, reasons that never quote the password."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type

from labvault.access import passwords
from labvault.errors import AuthenticationFailed, InvalidRecord
from labvault.secret import Secret

STRONG = "violet tramway sings under 7 bridges"


def test_hashes_are_argon2id_with_owasp_minimum_parameters():
    h = passwords.hash_password(Secret(STRONG))
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert STRONG not in h
    assert passwords.hash_password(Secret(STRONG)) != h  # salted


def test_verify_accepts_the_password_and_raises_otherwise():
    h = passwords.hash_password(Secret(STRONG))
    passwords.verify_password(h, Secret(STRONG))
    with pytest.raises(AuthenticationFailed) as info:
        passwords.verify_password(h, Secret(STRONG + "!"))
    assert str(info.value) == "authentication failed"
    with pytest.raises(AuthenticationFailed):
        passwords.verify_password("not a hash", Secret(STRONG))


def test_composed_and_decomposed_accents_are_the_same_password():
    composed, decomposed = "café crème au bord du canal", "cafe\u0301 cre\u0300me au bord du canal"
    passwords.verify_password(passwords.hash_password(Secret(composed)), Secret(decomposed))


def test_an_unknown_account_still_costs_one_argon2_verification(monkeypatch):
    calls = []
    passwords._dummy_hash()  # computed once per process, before the spy
    real = passwords.HASHER.verify

    class Spy:
        def verify(self, h, p):
            calls.append(h)
            return real(h, p)

    monkeypatch.setattr(passwords, "HASHER", Spy())
    with pytest.raises(AuthenticationFailed):
        passwords.verify_password(None, Secret(STRONG))
    assert len(calls) == 1 and calls[0].startswith("$argon2id$")


def test_old_parameters_need_a_rehash():
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    assert passwords.needs_rehash(weak.hash(STRONG))
    assert not passwords.needs_rehash(passwords.hash_password(Secret(STRONG)))
    assert passwords.needs_rehash("garbage")


@pytest.mark.parametrize(("password", "reason"), [
    ("Sh0rt!pass", "shorter than 12"),
    ("x" * 129, "longer than 128"),
    ("password1234", "too easy to guess"),
    ("azertyuiop123", "too easy to guess"),
    ("Lefebvre.Biologie-2026!", "contains the e-mail"),
    ("my dupont is a strong horse", "contains the e-mail"),
])
def test_the_policy_refuses_and_says_why_without_the_value(password, reason):
    with pytest.raises(InvalidRecord) as info:
        passwords.check_policy(Secret(password), "jean-dupont.lefebvre@lab.example")
    assert info.value.field == "password"
    assert reason in info.value.reason
    assert password not in str(info.value) and password not in repr(info.value)


def test_the_display_name_counts_as_a_known_word():
    passwords.check_policy(Secret("HippolyteQuatrebarbes"), "x@lab.example")  # strong alone
    with pytest.raises(InvalidRecord):
        passwords.check_policy(Secret("HippolyteQuatrebarbes"), "x@lab.example",
                               ("Hippolyte Quatrebarbes",))


def test_a_strong_passphrase_passes():
    passwords.check_policy(Secret(STRONG), "jean.dupont@lab.example", ("Jean Dupont",))
    passwords.check_policy(Secret((STRONG + " ") * 3 + "é" * 17), "jd@lab.example")  # 128
