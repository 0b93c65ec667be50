"""Tests of labvault.domain.identifiers.

Every key used here is recomputed with arithmetic written independently of the module
(digit-by-digit mod 97 for the NIR, a hand-written Luhn for FINESS/RPPS) before it is relied on.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from labvault.domain.identifiers import (
    NirInfo,
    nir_key,
    normalize_nir,
    validate_adeli,
    validate_finess,
    validate_ins,
    validate_nir,
    validate_rpps,
)
from labvault.domain.records import IdentityStatus, Ins, InsOid
from labvault.errors import InvalidRecord
from labvault.secret import MASK

DIGITS = "0123456789"


# --- independent reference arithmetic ---------------------------------------------------------


def ref_nir_key(body13: str) -> str:
    """97 - (n mod 97), computed digit by digit (Horner), 2A -> 19 and 2B -> 18."""
    digits = body13[:5] + {"2A": "19", "2B": "18"}.get(body13[5:7], body13[5:7]) + body13[7:]
    rest = 0
    for ch in digits:
        rest = (rest * 10 + int(ch)) % 97
    return f"{97 - rest:02d}"


def ref_luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def assert_not_leaked(exc: InvalidRecord, value: str) -> None:
    """Neither the value, its compact form, nor any digit can be read in the error."""
    message = str(exc)
    compact = normalize_nir(value)
    if value:
        assert value not in message
    if compact:
        assert compact not in message
    assert not any(c.isdigit() for c in exc.reason)
    assert not any(c.isupper() for c in exc.reason)


# --- NIR: published examples ------------------------------------------------------------------

PUBLISHED_NIRS = [
    # (written form, source, department, month)
    ("2 55 08 14 168 025 38", "fr.wikipedia, Numéro de sécurité sociale en France", "14", "08"),
    ("2 95 10 99 126 111 93", "python-stdnum fr.nir docstring (born abroad)", "99", "10"),
    ("2 53 07 2B 073 004 70", "python-stdnum fr.nir docstring (Haute-Corse)", "2B", "07"),
    ("2 53 07 2A 073 004 43", "python-stdnum fr.nir docstring (Corse-du-Sud)", "2A", "07"),
    ("1 89 12 75 125 012 82", "mathweb.fr, calcul de la clé (key 82)", "75", "12"),
]


@pytest.mark.parametrize(("written", "source", "department", "month"), PUBLISHED_NIRS)
def test_published_nirs_are_valid(written: str, source: str, department: str, month: str):
    compact = written.replace(" ", "")
    assert ref_nir_key(compact[:13]) == compact[13:], source  # checked independently first
    info = validate_nir(written)
    assert isinstance(info, NirInfo)
    assert info.compact == compact
    assert info.department == department
    assert info.birth_month == month
    assert info.key == compact[13:]
    assert info.sex_digit == compact[0]
    assert info.birth_year == compact[1:3]
    assert not info.temporary
    assert not info.incomplete_civil_record


@pytest.mark.parametrize(
    "written",
    [
        "255081416802538",
        "2550814168025 38",
        "2 55 08 14 168 025 38",
        "2.55.08.14.168.025.38",
        "2-55-08-14-168-025-38",
        "  2 55 08 14 168 025 38\t",
    ],
)
def test_nir_separators_and_thirteen_plus_space_plus_key(written: str):
    assert validate_nir(written).compact == "255081416802538"


def test_corsica_lower_case_is_normalised():
    assert validate_nir("2530 72a 07300443").compact == "253072A07300443"


@pytest.mark.parametrize("wrong", ["253072A07300470", "253072B07300443", "253072B07300471"])
def test_corsica_with_wrong_key(wrong: str):
    assert ref_nir_key(wrong[:13]) != wrong[13:]
    with pytest.raises(InvalidRecord) as caught:
        validate_nir(wrong)
    assert caught.value.reason == "check key does not match"
    assert_not_leaked(caught.value, wrong)


def test_corsica_2a_and_2b_keys_differ_from_the_digit_twenty():
    # 2A is read as 19 and 2B as 18, not as 20 nor as letters dropped
    assert nir_key("253072A073004") == "43" == ref_nir_key("253072A073004")
    assert nir_key("253072B073004") == "70" == ref_nir_key("253072B073004")
    assert nir_key("2530720073004") != "43"


def test_overseas_department_has_three_digits():
    body = "1850597112345"
    info = validate_nir(body + ref_nir_key(body))
    assert info.department == "971"


def body_with(sex: str = "1", month: str = "05", dept: str = "78") -> str:
    return f"{sex}85{month}{dept}006084"


@pytest.mark.parametrize("sex", ["7", "8"])
def test_temporary_numbers_are_accepted_and_flagged(sex: str):
    body = body_with(sex=sex)
    info = validate_nir(body + ref_nir_key(body))
    assert info.temporary
    assert info.sex_digit == sex


@pytest.mark.parametrize("sex", ["1", "2", "3", "4"])
def test_non_temporary_sex_digits(sex: str):
    body = body_with(sex=sex)
    assert not validate_nir(body + ref_nir_key(body)).temporary


@pytest.mark.parametrize("sex", ["0", "5", "6", "9"])
def test_other_sex_digits_are_rejected_even_with_right_key(sex: str):
    nir = body_with(sex=sex) + ref_nir_key(body_with(sex=sex))
    with pytest.raises(InvalidRecord) as caught:
        validate_nir(nir)
    assert caught.value.reason == "invalid sex digit"
    assert_not_leaked(caught.value, nir)


@pytest.mark.parametrize("month", ["20", "30", "35", "42", "50", "63", "99"])
def test_pseudo_months_are_flagged(month: str):
    body = body_with(month=month)
    info = validate_nir(body + ref_nir_key(body))
    assert info.incomplete_civil_record
    assert info.birth_month == month


@pytest.mark.parametrize("month", ["01", "06", "12"])
def test_real_months_are_not_flagged(month: str):
    body = body_with(month=month)
    assert not validate_nir(body + ref_nir_key(body)).incomplete_civil_record


@pytest.mark.parametrize("month", ["00", "13", "19", "21", "29", "43", "49"])
def test_impossible_months_are_rejected(month: str):
    nir = body_with(month=month) + ref_nir_key(body_with(month=month))
    with pytest.raises(InvalidRecord) as caught:
        validate_nir(nir)
    assert caught.value.reason == "invalid birth month"
    assert_not_leaked(caught.value, nir)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("25508141680253", "wrong length: expected fifteen characters"),
        ("2550814168025388", "wrong length: expected fifteen characters"),
        ("", "wrong length: expected fifteen characters"),
        ("2550814168O2538", "unexpected character: digits only, except a corsican department"),
        ("25508X416802538", "unexpected character: digits only, except a corsican department"),
        ("253072C07300443", "unexpected character: digits only, except a corsican department"),
        ("2530A2A07300443", "unexpected character: digits only, except a corsican department"),
        (
            "２５５０８１４１６８０２５３８",
            "unexpected character: digits only, except a corsican department",
        ),
        ("255081416802539", "check key does not match"),
        ("255081416802583", "check key does not match"),
        ("155081416802538", "check key does not match"),
        ("1" * 100, "input too long"),
    ],
)
def test_invalid_nirs(value: str, reason: str):
    with pytest.raises(InvalidRecord) as caught:
        validate_nir(value)
    assert caught.value.reason == reason
    assert caught.value.field == "nir"
    assert_not_leaked(caught.value, value)


@pytest.mark.parametrize("value", [None, 255081416802538, b"255081416802538"])
def test_nir_must_be_a_string(value: object):
    with pytest.raises(InvalidRecord) as caught:
        validate_nir(value)  # type: ignore[arg-type]
    assert caught.value.reason == "not a string"


def test_field_and_position_are_reported_not_the_value():
    with pytest.raises(InvalidRecord) as caught:
        validate_nir("255081416802539", field="patient.nir", position="row 12")
    exc = caught.value
    assert (exc.field, exc.position) == ("patient.nir", "row 12")
    assert str(exc) == "invalid patient.nir at row 12: check key does not match"
    assert "255081416802539" not in str(exc)


def test_nir_info_repr_is_masked():
    info = validate_nir("2 55 08 14 168 025 38")
    for shown in (repr(info), str(info), f"{info}"):
        assert "255081416802538" not in shown
        assert "168" not in shown
        assert MASK in shown


def test_nir_key_is_zero_padded():
    body = next(b for b in (f"18505780060{i:02d}" for i in range(100)) if int(ref_nir_key(b)) < 10)
    assert nir_key(body) == ref_nir_key(body)
    assert len(nir_key(body)) == 2


@pytest.mark.parametrize(
    "bad", ["255081416802", "25508141680253", "25508141680X5", "253072C073004"]
)
def test_nir_key_rejects_malformed_bodies(bad: str):
    with pytest.raises(InvalidRecord) as caught:
        nir_key(bad)
    assert_not_leaked(caught.value, bad)


# --- NIR: properties --------------------------------------------------------------------------

VALID_MONTHS = [f"{m:02d}" for m in [*range(1, 13), 20, *range(30, 43), *range(50, 100)]]


@st.composite
def nir_bodies(draw: st.DrawFn) -> str:
    sex = draw(st.sampled_from("123478"))
    year = draw(st.text(DIGITS, min_size=2, max_size=2))
    month = draw(st.sampled_from(VALID_MONTHS))
    dept = draw(st.sampled_from(["2A", "2B"]) | st.text(DIGITS, min_size=2, max_size=2))
    rest = draw(st.text(DIGITS, min_size=6, max_size=6))
    return sex + year + month + dept + rest


@given(nir_bodies())
def test_property_body_plus_computed_key_is_valid(body: str):
    key = nir_key(body)
    assert key == ref_nir_key(body)
    info = validate_nir(body + key)
    assert info.compact == body + key
    assert info.temporary == (body[0] in "78")
    assert info.incomplete_civil_record == (int(body[3:5]) > 12)


@given(nir_bodies(), st.integers(13, 14), st.integers(1, 9))
def test_property_any_single_digit_change_of_the_key_fails(body: str, pos: int, shift: int):
    nir = body + nir_key(body)
    changed = nir[:pos] + str((int(nir[pos]) + shift) % 10) + nir[pos + 1 :]
    with pytest.raises(InvalidRecord) as caught:
        validate_nir(changed)
    assert_not_leaked(caught.value, changed)


@given(nir_bodies(), st.integers(0, 12), st.integers(1, 9))
def test_property_any_single_digit_change_of_the_body_fails(body: str, pos: int, shift: int):
    nir = body + nir_key(body)
    if not nir[pos].isdigit():
        return
    changed = nir[:pos] + str((int(nir[pos]) + shift) % 10) + nir[pos + 1 :]
    with pytest.raises(InvalidRecord):
        validate_nir(changed)


@given(st.text(max_size=40))
def test_property_normalize_is_idempotent(value: str):
    once = normalize_nir(value)
    assert normalize_nir(once) == once


@given(nir_bodies(), st.lists(st.sampled_from([" ", ".", "-", "\t"]), min_size=15, max_size=15))
def test_property_separators_do_not_matter(body: str, seps: list[str]):
    nir = body + nir_key(body)
    written = "".join(c + s for c, s in zip(nir, seps, strict=True))
    assert validate_nir(written.lower()).compact == nir


# --- INS --------------------------------------------------------------------------------------

NIR = "2 55 08 14 168 025 38"
NIA_BODY = "1751299352048"
NIA = NIA_BODY + ref_nir_key(NIA_BODY)


@pytest.mark.parametrize("oid", list(InsOid))
@pytest.mark.parametrize("status", list(IdentityStatus))
def test_ins_for_each_oid_and_status(oid: InsOid, status: IdentityStatus):
    matricule = NIR if oid.is_nir_based else NIA
    for oid_arg, status_arg in ((oid, status), (oid.value, status.value)):
        ins = validate_ins(matricule, oid_arg, status_arg)
        assert isinstance(ins, Ins)
        assert ins.oid is oid
        assert ins.status is status
        assert ins.matricule == matricule.replace(" ", "")


def test_ins_default_status_is_provisional():
    assert validate_ins(NIR, InsOid.NIR).status is IdentityStatus.PROVISIONAL


@pytest.mark.parametrize("oid", ["1.2.250.1.213.1.4.7", "1.2.250.1.213.1.4.12", "", "NIR"])
def test_ins_unknown_oid(oid: str):
    with pytest.raises(InvalidRecord) as caught:
        validate_ins(NIR, oid)
    assert caught.value.reason == "unknown assigning authority oid"
    assert_not_leaked(caught.value, NIR)


@pytest.mark.parametrize("status", ["VALIDE", "", "qual", "PROVISOIRE"])
def test_ins_unknown_status(status: str):
    with pytest.raises(InvalidRecord) as caught:
        validate_ins(NIR, InsOid.NIR, status)
    assert caught.value.reason == "unknown identity status"


@pytest.mark.parametrize("oid", [InsOid.NIR, InsOid.TEST_NIR, InsOid.NIA, InsOid.TEST_NIA])
def test_ins_wrong_key(oid: InsOid):
    bad = "255081416802539" if oid.is_nir_based else NIA_BODY + f"{int(NIA[13:]) % 97 + 1:02d}"
    with pytest.raises(InvalidRecord) as caught:
        validate_ins(bad, oid, field="patient.ins", position="HL7 PID-3")
    exc = caught.value
    assert (exc.field, exc.position, exc.reason) == (
        "patient.ins",
        "HL7 PID-3",
        "check key does not match",
    )
    assert bad not in str(exc)


def test_ins_nir_structure_is_checked_only_for_nir_based_oids():
    body = body_with(sex="5")
    matricule = body + ref_nir_key(body)
    for oid in (InsOid.NIR, InsOid.TEST_NIR):
        with pytest.raises(InvalidRecord):
            validate_ins(matricule, oid)
    for oid in (InsOid.NIA, InsOid.TEST_NIA):  # a NIA: format and key only
        assert validate_ins(matricule, oid).matricule == matricule


def test_ins_nia_wrong_length():
    with pytest.raises(InvalidRecord) as caught:
        validate_ins(NIA[:-1], InsOid.NIA)
    assert caught.value.reason == "wrong length: expected fifteen characters"


def test_ins_repr_is_masked():
    assert "255081416802538" not in repr(validate_ins(NIR, InsOid.NIR))


# --- RPPS -------------------------------------------------------------------------------------


def make_rpps(body10: str) -> str:
    rpps = body10 + luhn.calc_check_digit(body10)
    assert ref_luhn_ok(rpps)
    return rpps


@pytest.mark.parametrize("body", ["1000123456", "1010101010", "1999999999"])
def test_rpps_valid(body: str):
    rpps = make_rpps(body)
    assert validate_rpps(rpps) == rpps
    assert validate_rpps(f" {rpps[:5]} {rpps[5:]} ") == rpps


@given(st.text(DIGITS, min_size=10, max_size=10), st.integers(1, 9))
def test_property_rpps_wrong_check_digit(body: str, shift: int):
    rpps = make_rpps(body)
    assert validate_rpps(rpps) == rpps
    wrong = body + str((int(rpps[-1]) + shift) % 10)
    with pytest.raises(InvalidRecord) as caught:
        validate_rpps(wrong)
    assert caught.value.reason == "check digit does not match"
    assert_not_leaked(caught.value, wrong)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1000123456", "wrong length: expected eleven digits"),
        ("100012345678", "wrong length: expected eleven digits"),
        ("10001234S67", "not all digits"),
        ("1000123456٧", "not all digits"),
    ],
)
def test_rpps_invalid(value: str, reason: str):
    with pytest.raises(InvalidRecord) as caught:
        validate_rpps(value, position="ORC-12")
    assert (caught.value.field, caught.value.reason) == ("rpps", reason)
    assert_not_leaked(caught.value, value)


# --- ADELI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["751234567", "75 123 456 7", " 751234567 "])
def test_adeli_valid(value: str):
    assert validate_adeli(value) == "751234567"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("75123456", "wrong length: expected nine digits"),
        ("7512345678", "wrong length: expected nine digits"),
        ("75123456X", "not all digits"),
        ("2A1234567", "not all digits"),
        ("7512-3456", "not all digits"),
    ],
)
def test_adeli_invalid(value: str, reason: str):
    with pytest.raises(InvalidRecord) as caught:
        validate_adeli(value)
    assert (caught.value.field, caught.value.reason) == ("adeli", reason)
    assert_not_leaked(caught.value, value)


# --- FINESS -----------------------------------------------------------------------------------

PUBLISHED_FINESS = [
    # Corsica: ARS de Corse decisions, recueils des actes administratifs de Haute-Corse
    # (29 Feb 2024) and Corse-du-Sud (no 2A-2025-178 and 2A-2024-029).
    ("2B0000020", "CH de Bastia"),
    ("2B0005342", "CH de Calvi"),
    ("2B0004246", "CHI de Corte-Tattone"),
    ("2A0000170", "CH de Bonifacio"),
    ("2A0000386", "CH de Castelluccio"),
    ("2A0002606", "CH de Sartène"),
    # Mainland: the example of the data.gouv.fr FINESS extract, and the legal-entity numbers
    # of AP-HP and Hospices Civils de Lyon as commonly cited (their Luhn digit checks below).
    ("010003820", "data.gouv.fr FINESS extract example"),
    ("750712184", "AP-HP"),
    ("690781810", "Hospices Civils de Lyon"),
]


def finess_digits(finess: str) -> str:
    return {"2A": "21", "2B": "22"}.get(finess[:2], finess[:2]) + finess[2:]


@pytest.mark.parametrize(("finess", "name"), PUBLISHED_FINESS)
def test_published_finess_are_valid(finess: str, name: str):
    assert ref_luhn_ok(finess_digits(finess)), name
    assert validate_finess(finess) == finess
    assert (
        validate_finess(f"{finess[:2]} {finess[2:5]} {finess[5:8]} {finess[8]}".lower()) == finess
    )


@pytest.mark.parametrize("finess", [f for f, _ in PUBLISHED_FINESS if f[:2] in ("2A", "2B")])
def test_corsican_finess_do_not_read_the_letter_as_zero(finess: str):
    # Pins the choice made in the module: with 2A/2B read as "20" (or as the NIR's 19/18),
    # the published Corsican numbers would not pass Luhn.
    for digits in ("20", "19", "18"):
        assert not ref_luhn_ok(digits + finess[2:])


@pytest.mark.parametrize("dept", ["01", "13", "75", "97", "2A", "2B"])
@pytest.mark.parametrize("middle", ["000001", "123456", "987654"])
def test_built_finess(dept: str, middle: str):
    digits = finess_digits(dept + middle)
    finess = dept + middle + luhn.calc_check_digit(digits)
    assert ref_luhn_ok(finess_digits(finess))
    assert validate_finess(finess) == finess
    for shift in range(1, 10):
        wrong = finess[:-1] + str((int(finess[-1]) + shift) % 10)
        with pytest.raises(InvalidRecord) as caught:
            validate_finess(wrong)
        assert caught.value.reason == "check digit does not match"
        assert_not_leaked(caught.value, wrong)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2B0000021", "check digit does not match"),
        ("750712185", "check digit does not match"),
        ("2C0000020", "unexpected character: digits only, except a corsican department"),
        ("01000382O", "unexpected character: digits only, except a corsican department"),
        ("0A0003820", "unexpected character: digits only, except a corsican department"),
        ("01000382", "wrong length: expected nine characters"),
        ("0100038200", "wrong length: expected nine characters"),
    ],
)
def test_finess_invalid(value: str, reason: str):
    with pytest.raises(InvalidRecord) as caught:
        validate_finess(value)
    assert (caught.value.field, caught.value.reason) == ("finess", reason)
    assert_not_leaked(caught.value, value)


# --- no value in any message ------------------------------------------------------------------

VALIDATORS = [
    validate_nir,
    validate_rpps,
    validate_adeli,
    validate_finess,
    *[lambda v, oid=oid: validate_ins(v, oid) for oid in InsOid],
]


@given(
    st.text(alphabet=DIGITS + "2AB ab.-x\t", min_size=1, max_size=24).filter(
        lambda s: any(c.isdigit() for c in s)
    )
)
def test_property_no_value_in_any_error_message(value: str):
    for validate in VALIDATORS:
        try:
            validate(value)
        except InvalidRecord as exc:
            assert_not_leaked(exc, value)
            assert not any(c.isdigit() or c.isupper() for c in str(exc))
