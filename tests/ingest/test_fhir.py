"""FHIR R4 reader and writer: round trips, ugly inputs, property tests, sniffing."""

from __future__ import annotations

import copy
import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhirclient.models.bundle import Bundle as R4Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labvault.domain.records import (
    AbnormalFlag,
    IdentityStatus,
    InsOid,
    ResultStatus,
    Sex,
)
from labvault.ingest import fhir
from labvault.ingest.base import Parsed, Position, ReadStats, Rejected, sha256
from labvault.ingest.content import record_content
from labvault.synthetic import SyntheticLab

PARIS = ZoneInfo("Europe/Paris")


# --- helpers -----------------------------------------------------------------------------------
def records(n: int, seed: int = 11) -> list:
    return list(SyntheticLab(seed).records(n))


def written(recs: list, **options: Any) -> bytes:
    out = io.BytesIO()
    fhir.write(recs, out, **options)
    return out.getvalue()


def read_all(data: bytes, name: str = "export.ndjson", stats: ReadStats | None = None) -> list:
    return list(fhir.read(io.BytesIO(data), name, stats))


def bundle_of(record: Any) -> dict[str, Any]:
    """One patient's Bundle as JSON data (via write, so decimals keep their text)."""
    return json.loads(written([record]))


def line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def same(parsed: Parsed, original: Any) -> bool:
    omit = fhir.NOT_CARRIED
    return record_content(parsed.record, omit) == record_content(original, omit)


def check_units(units: list) -> None:
    assert [u.seq for u in units] == list(range(1, len(units) + 1))
    assert all(isinstance(u, (Parsed, Rejected)) for u in units)


@pytest.fixture(scope="module")
def recs() -> list:
    return records(12)


@pytest.fixture()
def one(recs: list) -> Any:
    """A record with a NIR, an INS, orders and results."""
    return next(r for r in recs if r.patient.nir and r.patient.ins and r.orders
                and len(r.orders[0].results) >= 3)


# --- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, {"per_resource": True}, {"ndjson": False}, {"ndjson": False, "indent": 2},
    {"bom": True, "crlf": True}, {"per_resource": True, "crlf": True},
])
def test_round_trip(recs: list, options: dict[str, Any]) -> None:
    units = read_all(written(recs, **options))
    check_units(units)
    assert len(units) == len(recs)
    assert all(isinstance(u, Parsed) for u in units)
    for u, r in zip(units, recs, strict=True):
        assert same(u, r)
        assert u.source_patient_id == str(r.patient.id)
        assert u.anomalies == ()


def test_not_carried_is_empty() -> None:
    assert fhir.NOT_CARRIED == frozenset()


def test_positions_digests_and_stats(recs: list) -> None:
    data = written(recs[:3])
    stats = ReadStats()
    units = read_all(data, "dir/export.ndjson", stats)
    lines = data.splitlines(keepends=True)
    assert [u.position for u in units] == [Position("export.ndjson", i, "entry 1") for i in (1, 2, 3)]
    assert [u.source_sha256 for u in units] == [sha256(x) for x in lines]
    assert stats.encoding == "utf-8" and stats.line_ending == "LF"
    assert stats.segments["Bundle"] == 3 and stats.segments["Patient"] == 3
    assert stats.segments["Observation"] == sum(r.result_count() for r in recs[:3])
    assert "NDJSON" in stats.notes


def test_per_resource_positions(recs: list) -> None:
    data = written(recs[:2], per_resource=True)
    lines = data.splitlines(keepends=True)
    patient_lines = [i for i, x in enumerate(lines, 1) if b'"resourceType":"Patient"' in x]
    units = read_all(data)
    assert [u.position.line for u in units] == patient_lines
    assert units[0].source_sha256 == sha256(b"".join(lines[:patient_lines[1] - 1]))


def test_single_bundle_positions(recs: list) -> None:
    data = written(recs[:3], ndjson=False, indent=1)
    stats = ReadStats()
    units = read_all(data, "all.json", stats)
    bundle = json.loads(data)
    starts = [i for i, e in enumerate(bundle["entry"], 1) if e["resource"]["resourceType"] == "Patient"]
    assert [u.position for u in units] == [Position("all.json", None, f"entry {i}") for i in starts]
    assert "single JSON document, loaded whole" in stats.notes
    assert all(same(u, r) for u, r in zip(units, recs[:3], strict=True))


def test_decimal_text_is_kept(one: Any) -> None:
    data = written([one])
    for r in one.orders[0].results:
        if r.unit is not None:
            assert f'"value":{r.value},' in data.decode()


def test_bundle_for_is_valid_r4(recs: list) -> None:
    for r in recs[:4]:
        bundle = fhir.bundle_for(r)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
        R4Bundle(bundle)  # strict: raises on any R4 violation
        assert json.loads(json.dumps(bundle))["entry"][0]["resource"]["id"] == str(r.patient.id)


def test_writer_is_r4_valid_and_names_ins(one: Any) -> None:
    bundle = bundle_of(one)
    R4Bundle(bundle)
    patient = resources(bundle, "Patient")[0]
    systems = {i["system"] for i in patient["identifier"]}
    assert f"urn:oid:{one.patient.ins.oid.value}" in systems
    assert patient["extension"][0]["url"] == fhir.w.RELIABILITY_URL


# --- ugly inputs -------------------------------------------------------------------------------
def test_accents_utf8() -> None:
    r = records(1, seed=3)[0]
    p = r.patient
    r = replace(r, patient=replace(p, last_name="Lefèvre-Müller", first_names="Éloïse Zoé",
                                   birth_name="Çağlar"))
    units = read_all(written([r]))
    assert isinstance(units[0], Parsed)
    assert units[0].record.patient.last_name == "Lefèvre-Müller"
    assert units[0].record.patient.first_names == "Éloïse Zoé"
    assert units[0].record.patient.birth_name == "Çağlar"


def test_empty_optional_elements(one: Any) -> None:
    bundle = bundle_of(one)
    patient = resources(bundle, "Patient")[0]
    patient.update(telecom=[], address=[], extension=[])
    del patient["gender"]
    units = read_all(line(bundle))
    u = units[0]
    assert isinstance(u, Parsed)
    assert u.record.patient.phone is None and u.record.patient.address is None
    assert u.record.patient.birth_place is None
    assert u.record.patient.sex is Sex.UNKNOWN
    assert u.record.patient.ins.status is IdentityStatus.PROVISIONAL
    assert [a.field for a in u.anomalies] == ["Patient.gender"]


@pytest.mark.parametrize(("value", "reason"), [
    (19800101, "wrong JSON type"), ("15/03/1980", "invalid format"),
])
def test_patient_birth_date_fails_validation(recs: list, value: Any, reason: str) -> None:
    bundles = [bundle_of(r) for r in recs[:3]]
    resources(bundles[1], "Patient")[0]["birthDate"] = value
    units = read_all(b"".join(line(b) for b in bundles))
    check_units(units)
    assert [type(u) for u in units] == [Parsed, Rejected, Parsed]
    assert (units[1].field, units[1].reason) == ("Patient.birthDate", reason)
    assert units[1].position == Position("export.ndjson", 2, "entry 1")
    assert units[1].raw == line(bundles[1])


@pytest.mark.parametrize(("value", "fld", "reason"), [
    ("1980", "Patient.birthDate", "partial date (year or month only)"),
    ("2023-02-31", "Patient.birthDate", "invalid format"),
])
def test_patient_birth_date_unusable(one: Any, value: str, fld: str, reason: str) -> None:
    bundle = bundle_of(one)
    resources(bundle, "Patient")[0]["birthDate"] = value
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == (fld, reason)


def test_unknown_date_format_in_observation(one: Any) -> None:
    bundle = bundle_of(one)
    resources(bundle, "Observation")[0]["effectiveDateTime"] = "01/03/2024 10:00"
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Observation.effectiveDateTime", "invalid format")


def test_local_time_without_offset_is_paris(one: Any) -> None:
    bundle = bundle_of(one)
    obs = resources(bundle, "Observation")[0]
    obs["effectiveDateTime"] = "2024-07-01T10:30:00"
    resources(bundle, "DiagnosticReport")[0]["effectiveDateTime"] = "2024-07-01"
    u = read_all(line(bundle))[0]
    assert isinstance(u, Parsed)
    assert u.record.orders[0].results[0].observed_at == datetime(2024, 7, 1, 8, 30, tzinfo=UTC)
    assert u.record.orders[0].sampled_at == datetime(2024, 7, 1, tzinfo=PARIS)
    assert {a.field for a in u.anomalies} == {"Observation.effectiveDateTime",
                                              "DiagnosticReport.effective"}


def test_observation_referencing_missing_patient_in_bundle(one: Any) -> None:
    bundle = bundle_of(one)
    stray = dict(resources(bundle, "Observation")[0], id="stray",
                 subject={"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"})
    bundle["entry"].append({"fullUrl": "urn:uuid:stray", "resource": stray})
    units = read_all(line(bundle))
    check_units(units)
    assert isinstance(units[0], Parsed) and same(units[0], one)
    k = len(bundle["entry"])
    assert isinstance(units[1], Rejected)
    assert (units[1].field, units[1].reason) == ("Observation.subject",
                                                 "references a patient not in the bundle")
    assert units[1].position == Position("export.ndjson", 1, f"entry {k}")
    assert json.loads(units[1].raw)["entry"][0]["resource"]["id"] == "stray"


def test_observation_referencing_missing_patient_in_ndjson(recs: list) -> None:
    data = written(recs[:2], per_resource=True)
    lines = data.splitlines(keepends=True)
    stray = json.loads(next(x for x in lines if b'"Observation"' in x))
    stray["subject"] = {"reference": "Patient/nobody"}
    lines.insert(3, line(stray))  # inside the first patient's group
    units = read_all(b"".join(lines))
    check_units(units)
    assert [type(u) for u in units] == [Parsed, Rejected, Parsed]
    assert (units[1].field, units[1].reason) == ("Observation.subject",
                                                 "references a patient not in the current group")
    assert units[1].position == Position("export.ndjson", 4)
    assert all(same(u, r) for u, r in zip([units[0], units[2]], recs[:2], strict=True))


def test_resource_before_any_patient(recs: list) -> None:
    data = written(recs[:1], per_resource=True)
    lines = data.splitlines(keepends=True)
    obs = next(x for x in lines if b'"Observation"' in x)
    units = read_all(obs + data)
    assert (units[0].field, units[0].reason) == ("Observation.subject",
                                                 "references a patient not in the current group")
    assert isinstance(units[1], Parsed)


def test_truncated_last_line(recs: list) -> None:
    data = written(recs[:3])
    cut = data[:-200]
    units = read_all(cut)
    check_units(units)
    assert [type(u) for u in units] == [Parsed, Parsed, Rejected]
    assert (units[2].field, units[2].reason) == ("record", "truncated JSON")
    assert units[2].position == Position("export.ndjson", 3)
    assert units[2].raw == cut.splitlines(keepends=True)[2]


def test_truncated_pretty_document(recs: list) -> None:
    data = written(recs[:2], ndjson=False, indent=2)
    units = read_all(data[: len(data) // 2], "all.json")
    assert len(units) == 1 and isinstance(units[0], Rejected)
    assert (units[0].field, units[0].reason) == ("record", "truncated JSON")
    assert units[0].raw == data[: len(data) // 2]


def test_blank_lines_bom_and_invalid_lines(recs: list) -> None:
    lines = written(recs[:3]).splitlines(keepends=True)
    data = (b"\xef\xbb\xbf" + lines[0] + b"\n  \n" + b"{not json}\n" + lines[1] + b"\r\n"
            + b"\xff\xfe garbage\n" + b'[1, 2]\n' + b'{"resourceType": "Dupont"}\n' + lines[2])
    stats = ReadStats()
    units = read_all(data, "x.ndjson", stats)
    check_units(units)
    got = [(type(u).__name__, u.position.line, getattr(u, "field", None), getattr(u, "reason", None))
           for u in units]
    assert got == [
        ("Parsed", 1, None, None),
        ("Rejected", 4, "record", "invalid JSON"),
        ("Parsed", 5, None, None),
        ("Rejected", 7, "record", "not valid UTF-8"),
        ("Rejected", 8, "resourceType", "not a FHIR resource"),
        ("Rejected", 9, "resourceType", "not a FHIR R4 resource type"),
        ("Parsed", 10, None, None),
    ]
    assert "UTF-8 BOM" in stats.notes and "3 blank lines skipped" in stats.notes
    assert "Dupont" not in repr(stats.segments)
    assert all(same(u, r) for u, r in zip([units[0], units[2], units[6]], recs[:3], strict=True))


def test_r5_only_element_is_rejected(one: Any) -> None:
    bundle = bundle_of(one)
    obs = resources(bundle, "Observation")[0]
    obs["triggeredBy"] = [{"observation": {"reference": "Observation/x"}, "type": "reflex"}]
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Observation", "unknown element (not FHIR R4)")


def test_required_element_missing(one: Any) -> None:
    bundle = bundle_of(one)
    del resources(bundle, "Observation")[0]["code"]
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Observation.code", "required element missing")


def test_nested_path_without_indices(one: Any) -> None:
    bundle = bundle_of(one)
    resources(bundle, "Patient")[0]["name"][0]["given"] = "Jean"
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Patient.name.given", "wrong JSON type")


def test_two_patients_in_one_bundle(recs: list) -> None:
    a, b = bundle_of(recs[0]), bundle_of(recs[1])
    both = {"resourceType": "Bundle", "type": "transaction",
            "entry": [dict(e, request={"method": "POST", "url": e["resource"]["resourceType"]})
                      for e in a["entry"] + b["entry"]]}
    units = read_all(line(both))
    check_units(units)
    assert [u.position.segment for u in units] == ["entry 1", f"entry {len(a['entry']) + 1}"]
    assert all(same(u, r) for u, r in zip(units, recs[:2], strict=True))
    assert units[0].source_sha256 != sha256(line(both))  # each unit: its own entries


@pytest.mark.parametrize(("bundle", "fld", "reason"), [
    ({"resourceType": "Bundle", "type": "history", "entry": []}, "Bundle.type",
     "unsupported bundle type"),
    ({"resourceType": "Bundle", "entry": []}, "Bundle.type", "required element missing"),
    ({"resourceType": "Bundle", "type": "collection"}, "Bundle.entry", "no Patient resource"),
    ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": 3}]},
     "Bundle.entry.resource", "wrong JSON type"),
    ({"resourceType": "Bundle", "type": "collection", "total": "x"}, "Bundle.total",
     "wrong JSON type"),
])
def test_bundle_level_rejections(bundle: dict[str, Any], fld: str, reason: str) -> None:
    units = read_all(line(bundle))
    assert len(units) == 1 and (units[0].field, units[0].reason) == (fld, reason)
    assert units[0].position == Position("export.ndjson", 1)


def test_identity_reliability_variants(one: Any) -> None:
    bundle = bundle_of(one)
    patient = resources(bundle, "Patient")[0]
    ext = patient["extension"][0]
    ext["url"] = "http://interopsante.org/fhir/StructureDefinition/FrPatientIdentReliability"
    ext["extension"][0]["valueCoding"]["code"] = "QUAL"
    assert read_all(line(bundle))[0].record.patient.ins.status is IdentityStatus.QUALIFIED
    ext["extension"][0]["valueCoding"]["code"] = "VIDE"
    u = read_all(line(bundle))[0]
    assert u.record.patient.ins.status is IdentityStatus.PROVISIONAL
    assert [a.reason for a in u.anomalies] == ["status VIDE read as PROV"]
    ext["extension"][0]["valueCoding"]["code"] = "DOUB"
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Patient.extension.identityReliability",
                                   "unknown identity status code")


def test_ins_nir_and_local_id(one: Any) -> None:
    bundle = bundle_of(one)
    patient = resources(bundle, "Patient")[0]
    nir = one.patient.nir
    patient["identifier"] = [
        {"type": {"coding": [{"code": "PI"}]}, "system": "https://lab.example/ipp", "value": "IPP42"},
        {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:]}"},
        {"type": {"coding": [{"code": "NH"}]}, "system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir},
    ]
    u = read_all(line(bundle))[0]
    assert u.source_patient_id == "IPP42"
    assert u.record.patient.ins.oid is InsOid.NIR and u.record.patient.ins.matricule == nir
    assert u.record.patient.nir == nir


def test_names_official_usual_maiden(one: Any) -> None:
    bundle = bundle_of(one)
    patient = resources(bundle, "Patient")[0]
    patient["name"] = [{"use": "maiden", "family": "Durand"},
                       {"use": "usual", "family": "Martin", "given": ["Marie", "Claire"]}]
    p = read_all(line(bundle))[0].record.patient
    assert (p.last_name, p.birth_name, p.first_names) == ("Martin", "Durand", "Marie Claire")
    patient["name"] = [{"use": "usual", "given": ["Marie"]}]
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Patient.name.family", "required element missing")


def test_practitioner_and_lab_identifiers(one: Any) -> None:
    bundle = bundle_of(one)
    pr = next(o.prescriber for o in one.orders if o.prescriber)
    for prac in resources(bundle, "Practitioner"):
        prac["identifier"] = [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + pr.rpps},
                              {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "0123456789"}]
    for org in resources(bundle, "Organization"):
        org["identifier"] = org["identifier"][:1]  # idNatSt "1" + FINESS only
    u = read_all(line(bundle))[0]
    order = next(o for o in u.record.orders if o.prescriber)
    assert order.prescriber.rpps == pr.rpps and order.prescriber.adeli == "123456789"
    assert [o.lab_finess for o in u.record.orders] == [o.lab_finess for o in one.orders]


def test_missing_finess_rejected(one: Any) -> None:
    bundle = bundle_of(one)
    for dr in resources(bundle, "DiagnosticReport"):
        del dr["performer"]
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("DiagnosticReport.performer", "no laboratory FINESS identifier")


def test_unsupported_codes_rejected(one: Any) -> None:
    bundle = bundle_of(one)
    obs = resources(bundle, "Observation")[0]
    obs["interpretation"] = [{"coding": [{"code": "XYZ"}]}]
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Observation.interpretation", "unsupported code")
    obs.pop("interpretation")
    obs["status"] = "unknown"
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Observation.status", "unsupported code")
    obs["status"] = "entered-in-error"
    u = read_all(line(bundle))[0]
    assert isinstance(u, Parsed)
    assert u.record.result_count() == one.result_count() - 1
    assert [a.field for a in u.anomalies] == ["Observation.status"]
    resources(bundle, "Patient")[0]["gender"] = "m"
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Patient.gender", "unknown code")


def test_other_value_shapes_and_panels(one: Any) -> None:
    bundle = bundle_of(one)
    dr = resources(bundle, "DiagnosticReport")[0]
    first, *_rest = [r for r in resources(bundle, "Observation")
                    if {"reference": f"urn:uuid:{r['id']}"} in dr["result"]]
    first.pop("valueQuantity", None)
    first.pop("valueString", None)
    first["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct",
                                                 "code": "260385009", "display": "Negative"}]}
    first["referenceRange"] = [{"low": {"value": 0.50, "unit": "g/L"},
                                "high": {"value": 1.10, "unit": "g/L"}}]
    first["interpretation"] = [{"coding": [{"code": "NEG"}]}]
    first["status"] = "amended"
    panel = {"resourceType": "Observation", "id": "panel", "status": "final",
             "code": {"text": "Panel"}, "hasMember": dr["result"][1:]}
    bundle["entry"].append({"fullUrl": "urn:uuid:panel", "resource": panel})
    dr["result"] = [dr["result"][0], {"reference": "urn:uuid:panel"}]
    u = read_all(line(bundle))[0]
    assert isinstance(u, Parsed)
    r = u.record.orders[0].results[0]
    assert (r.value, r.reference_range, r.abnormal_flag, r.status) == (
        "Negative", "0.5-1.1", AbnormalFlag.NORMAL, ResultStatus.CORRECTED)
    assert [x.code for x in u.record.orders[0].results] == [x.code for x in one.orders[0].results]


def test_observation_outside_any_report_rejected(one: Any) -> None:
    bundle = bundle_of(one)
    for dr in resources(bundle, "DiagnosticReport"):
        dr.pop("result", None)
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Observation", "not referenced by any DiagnosticReport")


def test_coverage_mapping(one: Any) -> None:
    bundle = bundle_of(one)
    amo = next(c for c in resources(bundle, "Coverage") if c["type"]["coding"][0]["code"] == "PUBLICPOL")
    amo["dependent"] = "x1"
    u = read_all(line(bundle))[0]
    assert (u.field, u.reason) == ("Coverage.dependent", "not a beneficiary rank")
    amo["dependent"] = "2"
    u = read_all(line(bundle))[0]
    assert u.record.patient.mandatory_insurance.beneficiary_rank == 2


def test_streaming_is_lazy(recs: list) -> None:
    data = written(recs * 20)

    class Counting(io.BytesIO):
        consumed = 0

        def __next__(self) -> bytes:
            chunk = super().__next__()
            Counting.consumed += len(chunk)
            return chunk

    stream = Counting(data)
    first = next(fhir.read(stream, "big.ndjson"))
    assert isinstance(first, Parsed)
    assert Counting.consumed < len(data) // 10


# --- sniffing ----------------------------------------------------------------------------------
def test_sniff(recs: list) -> None:
    for options in ({}, {"per_resource": True}, {"ndjson": False, "indent": 2}, {"bom": True}):
        assert fhir.sniff(written(recs[:2], **options)[:4096])
    for head in (b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|1|P|2.5\r",
                 b"H|\\^~&|||LAB|||||||P|H2.2|20240101\rP|1|",
                 b"nom;prenom;date_naissance\nDUPONT;Jean;01/01/1980\n",
                 b"", b"{}", b'{"name": "x"}', b"[1,2]", b"\xef\xbb\xbfMSH|^~\\&|"):
        assert not fhir.sniff(head)


# --- properties --------------------------------------------------------------------------------
_FIXTURE = records(3, seed=5)
_SECRETS = [s for r in _FIXTURE for s in (r.patient.last_name, r.patient.nir, r.patient.phone)
            if s and len(s) > 3]
_VALID = {
    "bundles": written(_FIXTURE),
    "resources": written(_FIXTURE, per_resource=True),
    "pretty": written(_FIXTURE, ndjson=False, indent=1),
}


def assert_sane(data: bytes) -> None:
    units = read_all(data, "fuzz.ndjson")
    check_units(units)
    for u in units:
        if isinstance(u, Rejected):
            text = f"{u.field} {u.reason}"
            assert not any(s in text for s in _SECRETS)
            assert u.field and u.reason


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(data: bytes) -> None:
    assert_sane(data)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet='{}[]":,0123456789.-eEtrufalsn \n\\"resourceTypePatientBundle', max_size=400))
def test_json_like_text(text: str) -> None:
    assert_sane(text.encode("utf-8"))


@settings(max_examples=120, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(_VALID)), data=st.data())
def test_mutated_valid_files(kind: str, data: st.DataObject) -> None:
    raw = bytearray(_VALID[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "delete", "truncate", "duplicate", "insert"]))
        if not raw:
            break
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "delete":
            del raw[i: i + data.draw(st.integers(1, 40))]
        elif op == "truncate":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.sampled_from([b"\n", b"{", b'"', b"\xff", b"\r\n", b"null,"]))
        else:
            lines = bytes(raw).splitlines(keepends=True)
            j = data.draw(st.integers(0, len(lines) - 1))
            raw = bytearray(b"".join(lines[: j + 1] + lines[j:]))
    assert_sane(bytes(raw))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "x", "2024", "2024-01-01", "2024-01-01T10:00:00", "Patient/x",
                       "urn:uuid:x", "final", "PUBLICPOL", "LL", "VALI", "8" * 12]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["reference", "code", "system", "value", "coding", "text", "family"]), c,
        max_size=3),
    max_leaves=6)
_OBJECTS = {k: [json.loads(x) for x in _VALID[k].splitlines()] for k in ("bundles", "resources")}


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out += _paths(v, (*prefix, k))
    return out


@settings(max_examples=100, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(_OBJECTS)), data=st.data())
def test_mutated_json_structure(kind: str, data: st.DataObject) -> None:
    """Well-formed JSON with elements deleted or replaced by odd values: never a crash."""
    objs = copy.deepcopy(_OBJECTS[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        obj = objs[data.draw(st.integers(0, len(objs) - 1))]
        path = data.draw(st.sampled_from(_paths(obj)))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_JSON_VALUES)
    assert_sane(b"".join(line(o) for o in objs))


def test_duplicated_bundle_line_gives_two_units(recs: list) -> None:
    lines = written(recs[:1]).splitlines(keepends=True)
    units = read_all(lines[0] * 2)
    assert [type(u) for u in units] == [Parsed, Parsed]
    assert units[0].source_sha256 == units[1].source_sha256


def test_birth_date_type(one: Any) -> None:
    u = read_all(written([one]))[0]
    assert isinstance(u.record.patient.birth_date, date)


def test_two_bad_leading_lines_stay_ndjson(recs: list) -> None:
    good = written(recs[:1])
    units = read_all(b'{"resourceType": "Patient", \n{"broken\n' + good)
    assert [(type(u), u.position.line) for u in units] == [(Rejected, 1), (Rejected, 2), (Parsed, 3)]
    assert [u.reason for u in units[:2]] == ["truncated JSON", "truncated JSON"]
