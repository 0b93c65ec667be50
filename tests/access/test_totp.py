"""TOTP at an injected time (±1 step, replay refused) and recovery codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from labvault.access import totp
from labvault.errors import AuthenticationFailed
from labvault.secret import Secret

AT = datetime(2026, 3, 2, 8, 30, 10, tzinfo=UTC)
STEP = timedelta(seconds=30)


@pytest.fixture
def secret() -> Secret[str]:
    return totp.new_secret()


def test_the_secret_is_160_bits_of_base32(secret):
    assert len(secret.reveal()) == 32 and repr(secret) == "Secret('**********')"
    assert totp.new_secret() != secret


def test_a_code_from_an_authenticator_app_at_that_time_is_accepted(secret):
    app = pyotp.TOTP(secret.reveal())  # the defaults of authenticator apps
    assert totp.verify_code(secret, app.at(AT), AT, None) == totp.step_at(AT)
    assert totp.verify_code(secret, Secret(app.at(AT)), AT, None) == totp.step_at(AT)
    assert totp.code_at(secret, AT) == app.at(AT)


def test_one_step_either_side_is_accepted_two_are_not(secret):
    app = pyotp.TOTP(secret.reveal())
    now = totp.step_at(AT)
    assert totp.verify_code(secret, app.at(AT - STEP), AT, None) == now - 1
    assert totp.verify_code(secret, app.at(AT + STEP), AT, None) == now + 1
    for off in (-2, 2, 10):
        code = app.at(AT + off * STEP)
        if code in {app.at(AT + k * STEP) for k in (-1, 0, 1)}:
            continue  # a 6-digit collision: nothing to learn from this offset
        with pytest.raises(AuthenticationFailed):
            totp.verify_code(secret, code, AT, None)


def test_a_code_already_used_is_refused(secret):
    code = pyotp.TOTP(secret.reveal()).at(AT)
    step = totp.verify_code(secret, code, AT, None)
    with pytest.raises(AuthenticationFailed):
        totp.verify_code(secret, code, AT, step)
    # An older step, although within the window, is refused once a newer one was accepted.
    previous = pyotp.TOTP(secret.reveal()).at(AT - STEP)
    with pytest.raises(AuthenticationFailed):
        totp.verify_code(secret, previous, AT, step)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_are_refused(secret, code):
    with pytest.raises(AuthenticationFailed):
        totp.verify_code(secret, code, AT, None)


def test_spaces_in_a_code_are_ignored(secret):
    code = pyotp.TOTP(secret.reveal()).at(AT)
    totp.verify_code(secret, f"{code[:3]} {code[3:]}", AT, None)


def test_the_provisioning_uri_is_what_an_app_reads(secret):
    uri = totp.provisioning_uri(secret, "camille@lab.example")
    assert repr(uri) == "Secret('**********')"
    parsed = urlparse(uri.reveal())
    assert (parsed.scheme, parsed.netloc) == ("otpauth", "totp")
    query = parse_qs(parsed.query)
    assert query["issuer"] == ["labvault"] and query["secret"] == [secret.reveal()]
    assert parsed.path == "/labvault:camille%40lab.example"
    parsed_back = pyotp.parse_uri(uri.reveal())
    assert parsed_back.at(AT) == totp.code_at(secret, AT)


def test_recovery_codes_are_ten_distinct_codes_in_two_groups():
    codes = [c.reveal() for c in totp.new_recovery_codes()]
    assert len(codes) == 10 and len(set(codes)) == 10
    for c in codes:
        assert len(c) == 11 and c[5] == "-"
        assert totp.normalise_recovery_code(c) == c.replace("-", "")


def test_recovery_digests_are_keyed_and_tolerate_case_and_separators():
    code = totp.new_recovery_codes(1)[0]
    key, other = Secret(b"k" * 32), Secret(b"o" * 32)
    digest = totp.recovery_digest(code, key)
    assert digest is not None and len(digest) == 32
    assert totp.recovery_digest(code.reveal().lower().replace("-", " "), key) == digest
    assert totp.recovery_digest(code, other) != digest
    assert code.reveal().encode() not in digest
    assert totp.recovery_digest("not-a-code!", key) is None
