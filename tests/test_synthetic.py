"""Tests of the synthetic French lab data generator."""

from __future__ import annotations

import re
import statistics
from datetime import UTC, date, datetime, timedelta

import pytest
from stdnum import luhn
from stdnum.fr import nir as stdnum_nir

from labvault.domain.records import (
    AbnormalFlag,
    InsOid,
    PatientRecord,
    ResultStatus,
    Sex,
)
from labvault.synthetic import SyntheticLab

REF = date(2026, 1, 1)
SENSITIVE_CODES = {"56888-1", "2106-3", "2857-1", "10334-1", "16128-1", "BRCA1"}
PHONE = re.compile(r"(0[1-9]|\+33 [1-9])( \d\d){4}")
RELATIVE = re.compile(r"(sa fille|conjoint|son frère) [A-ZÀ-Ý]")
SENSITIVE_WORDS = ("VIH", "enceinte", "cancer", "hépatite C", "IVG", "Dépression", "psychiatrie")


@pytest.fixture(scope="module")
def sample() -> list[PatientRecord]:
    return list(SyntheticLab(42).records(2000))


def independent_key(nir13: str) -> int:
    """NIR key by hand: 97 - (n mod 97), Corsica 2A -> 19, 2B -> 18."""
    digits = nir13.replace("2A", "19", 1) if nir13[5:7] == "2A" else nir13
    digits = digits.replace("2B", "18", 1) if nir13[5:7] == "2B" else digits
    return 97 - int(digits) % 97


def all_results(records: list[PatientRecord]):
    return [r for rec in records for o in rec.orders for r in o.results]


def all_comments(records: list[PatientRecord]) -> list[str]:
    texts = [c.text for rec in records for o in rec.orders for c in o.comments]
    return texts + [c.text for r in all_results(records) for c in r.comments]


def test_deterministic_for_a_seed_including_ids() -> None:
    a, b = SyntheticLab(7), SyntheticLab(7)
    assert a.lab_finess == b.lab_finess
    assert a.prescribers() == b.prescribers()
    first, second = list(a.records(30)), list(b.records(30))
    assert first == second
    assert [r.id for r in first] == [r.id for r in second]
    assert [o.id for r in first for o in r.orders] == [o.id for r in second for o in r.orders]


def test_different_seeds_differ() -> None:
    a, b = list(SyntheticLab(1).records(5)), list(SyntheticLab(2).records(5))
    assert [r.id for r in a] != [r.id for r in b]
    assert [r.patient.last_name for r in a] != [r.patient.last_name for r in b]


def test_ids_unique(sample: list[PatientRecord]) -> None:
    ids = [r.id for r in sample] + [o.id for r in sample for o in r.orders]
    ids += [x.id for x in all_results(sample)]
    assert len(ids) == len(set(ids))


def test_nir_key_sex_birth_and_place(sample: list[PatientRecord]) -> None:
    with_nir = [r.patient for r in sample if r.patient.nir]
    assert 0.9 * len(sample) < len(with_nir) < len(sample)  # a few have none
    for p in with_nir:
        nir = p.nir
        assert nir is not None and len(nir) == 15
        assert int(nir[13:]) == independent_key(nir[:13])
        assert stdnum_nir.validate(nir) == nir
        assert nir[0] == ("1" if p.sex is Sex.MALE else "2")
        assert nir[1:3] == f"{p.birth_date.year % 100:02d}"
        assert nir[3:5] == f"{p.birth_date.month:02d}"
        assert nir[5:10] == p.birth_place
        assert 1 <= int(nir[10:13]) <= 999


def test_corsica_overseas_and_abroad_births(sample: list[PatientRecord]) -> None:
    places = [r.patient.birth_place or "" for r in sample]
    assert any(p.startswith("2A") for p in places)
    assert any(p.startswith("2B") for p in places)
    assert any(p[:3] in {"971", "972", "973", "974", "975", "976"} for p in places)
    assert any(p.startswith("99") for p in places)
    corsica = [r.patient.nir for r in sample if (r.patient.nir or "")[5:7] in ("2A", "2B")]
    assert corsica and all(stdnum_nir.is_valid(n) for n in corsica)


def test_ins_always_test_oid(sample: list[PatientRecord]) -> None:
    for r in sample:
        p = r.patient
        assert (p.ins is None) == (p.nir is None)
        if p.ins is not None:
            assert p.ins.oid is InsOid.TEST_NIR and p.ins.oid.is_test
            assert p.ins.matricule == p.nir


def test_patient_details_plausible(sample: list[PatientRecord]) -> None:
    patients = [r.patient for r in sample]
    ages = [(REF - p.birth_date).days / 365.25 for p in patients]
    assert 0 <= min(ages) and max(ages) < 102 and 30 < statistics.mean(ages) < 60
    women = [p for p in patients if p.sex is Sex.FEMALE]
    renamed = sum(p.birth_name != p.last_name for p in women) / len(women)
    assert 0.15 < renamed < 0.35
    assert all(p.birth_name == p.last_name for p in patients if p.sex is Sex.MALE)
    for p in patients:
        if p.phone:
            assert PHONE.fullmatch(p.phone)
        if p.address:
            assert len(p.address.postal_code) == 5 and p.address.city and p.address.line1
        assert p.mandatory_insurance is not None
        assert len(p.mandatory_insurance.fund) == 3 and len(p.mandatory_insurance.centre or "") == 4
    complementary = [p.complementary_insurance for p in patients if p.complementary_insurance]
    assert 0.7 < len(complementary) / len(patients) < 0.9
    assert all(len(c.amc_number or "") == 8 for c in complementary)


def test_rpps_adeli_and_finess_keys() -> None:
    lab = SyntheticLab(3, labs=5)
    assert len(lab.lab_finess) == 5 == len(set(lab.lab_finess))
    for finess in lab.lab_finess:
        assert len(finess) == 9 and finess.isdigit() and luhn.is_valid(finess)
    pool = lab.prescribers()
    assert 40 <= len(pool) <= 60
    for doc in pool:
        assert doc.rpps and len(doc.rpps) == 11 and doc.rpps.startswith("10")
        assert luhn.validate(doc.rpps) == doc.rpps
        assert doc.adeli is None or (len(doc.adeli) == 9 and doc.adeli.isdigit())
    assert any(doc.adeli for doc in pool)


def test_orders_dates_labs_and_prescribers(sample: list[PatientRecord]) -> None:
    lab = SyntheticLab(42)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    orders = [o for r in sample for o in r.orders]
    assert all(1 <= len(r.orders) <= 4 for r in sample)
    for o in orders:
        assert o.lab_finess in lab.lab_finess
        assert o.requested_at and o.sampled_at and o.requested_at.tzinfo is not None
        assert start <= o.requested_at < o.sampled_at < now
        assert o.lab_file_number and o.lab_file_number.startswith(f"{o.sampled_at.year}-")
        assert all(x.observed_at and x.observed_at > o.sampled_at for x in o.results)
    prescribers = [o.prescriber for o in orders]
    assert None in prescribers
    assert {p.rpps for p in prescribers if p} <= {p.rpps for p in lab.prescribers()}
    assert all(o.sampled_at - timedelta(days=1) > datetime(
        r.patient.birth_date.year, r.patient.birth_date.month, r.patient.birth_date.day,
        tzinfo=UTC) for r in sample for o in r.orders)


@pytest.mark.parametrize("mean", [10.0, 3.0])
def test_mean_results_per_patient(mean: float) -> None:
    counts = [r.result_count() for r in SyntheticLab(5, results_per_patient=mean).records(1000)]
    assert min(counts) >= 1
    assert abs(statistics.mean(counts) - mean) < 0.05 * mean + 0.2


def test_results_codes_and_statuses(sample: list[PatientRecord]) -> None:
    results = all_results(sample)
    codes = {r.code for r in results}
    for code in ("2345-7", "4548-4", "2160-0", "2951-2", "2823-3", "718-7", "6690-2", "777-3",
                 "1742-6", "2093-3", "3016-3", "1988-5", "2276-4"):
        assert code in codes
    assert SENSITIVE_CODES <= codes
    assert all(r.code_system == ("LOCAL" if r.code == "BRCA1" else "LN") for r in results)
    final = sum(r.status is ResultStatus.FINAL for r in results) / len(results)
    assert final > 0.85
    values = {r.value for r in results if r.code == "56888-1"}
    assert values <= {"Négatif", "Positif"} and "Négatif" in values


def test_sensitive_tests_match_sex(sample: list[PatientRecord]) -> None:
    for rec in sample:
        codes = {x.code for o in rec.orders for x in o.results}
        if rec.patient.sex is Sex.MALE:
            assert not codes & {"2106-3", "10334-1", "BRCA1"}
        else:
            assert "2857-1" not in codes


def test_flags_consistent_with_value_and_range(sample: list[PatientRecord]) -> None:
    seen = set()
    for r in all_results(sample):
        if r.unit is None:  # qualitative
            assert r.abnormal_flag in (AbnormalFlag.NORMAL, AbnormalFlag.ABNORMAL)
            continue
        low, high = map(float, (r.reference_range or "").split("-"))
        value, flag = float(r.value), r.abnormal_flag
        seen.add(flag)
        if flag in (AbnormalFlag.LOW, AbnormalFlag.CRITICALLY_LOW):
            assert value < low
        elif flag in (AbnormalFlag.HIGH, AbnormalFlag.CRITICALLY_HIGH):
            assert value > high
        else:
            assert flag is AbnormalFlag.NORMAL and low <= value <= high
    assert {AbnormalFlag.NORMAL, AbnormalFlag.LOW, AbnormalFlag.HIGH} <= seen
    assert seen & {AbnormalFlag.CRITICALLY_LOW, AbnormalFlag.CRITICALLY_HIGH}


def test_comment_rates_and_sensitive_content(sample: list[PatientRecord]) -> None:
    orders = [o for r in sample for o in r.orders]
    results = all_results(sample)
    assert 0.25 < sum(bool(o.comments) for o in orders) / len(orders) < 0.35
    assert 0.05 < sum(bool(r.comments) for r in results) / len(results) < 0.15
    texts = all_comments(sample)
    for word in SENSITIVE_WORDS:
        assert any(word in t for t in texts), word
    assert any("Western blot" in t for t in texts)
    assert any(PHONE.search(t) for t in texts)
    assert any(RELATIVE.search(t) for t in texts)


def test_repr_never_shows_personal_values(sample: list[PatientRecord]) -> None:
    for rec in sample[:300]:
        p = rec.patient
        shown = repr(rec) + str(p) + repr(p.address) + repr(p.ins) + "".join(
            repr(o) + repr(o.prescriber) + "".join(map(repr, o.results)) for o in rec.orders)
        secrets = [p.last_name, *p.first_names.split(), p.nir, p.phone, p.email]
        secrets += [c.text for o in rec.orders for c in o.comments]
        secrets += [o.prescriber.last_name for o in rec.orders if o.prescriber]
        for value in filter(None, secrets):
            assert value not in shown
        assert "**********" in repr(rec)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        SyntheticLab(results_per_patient=-1)
    with pytest.raises(ValueError):
        SyntheticLab(labs=0)
