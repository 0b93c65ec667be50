"""HPRIM Médecin / HPRIM Net: round trips, ugly inputs, fuzzing, sniffing."""

from __future__ import annotations

import io
import re
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labvault.domain.records import (
    AbnormalFlag,
    Address,
    Comment,
    Order,
    Patient,
    PatientRecord,
    Result,
    ResultStatus,
    Sex,
)
from labvault.ingest import hprim_medecin as hm
from labvault.ingest.base import Parsed, ReadStats, Rejected, sha256
from labvault.ingest.content import record_content
from labvault.synthetic import SyntheticLab

FINESS = "750000010"
NIR = "2850775123456 55"
HEADER = ["0000129610", "DUPONT", "Marie", "12 RUE DES LILAS", "BAT B", "75011 PARIS",
          "14/07/1985", NIR, "24-000123", "22/05/2024", FINESS, "10003456786 MARTIN, Paul"]
LAB_LINES = ["****LAB****", "TEX|A jeun", "RES|Hémoglobine|718-7|N|13.2|g/dL|12.0|16.0|N|F",
             "TEX|Contrôlé", "RES|CRP|CRP01|N|7|mg/L||5|H|R", "****FIN****"]


def report(header: list[str] | None = None, lab: list[str] | None = None,
           text: tuple[str, ...] = ("", "   Compte rendu", "")) -> list[str]:
    return [*(HEADER if header is None else header), *text, *(LAB_LINES if lab is None else lab)]


def encode(lines: list[str], eol: str = "\r\n", encoding: str = "cp1252") -> bytes:
    return "".join(line + eol for line in lines).encode(encoding)


def units(data: bytes, stats: ReadStats | None = None, name: str = "dir/lab.hpr") -> list:
    return list(hm.read(io.BytesIO(data), name, stats))


def expected(records: list[PatientRecord]) -> list[PatientRecord]:
    return [PatientRecord(r.patient, (o,)) for r in records for o in r.orders]


def synthetic(seed: int, n: int) -> list[PatientRecord]:
    return [r for r in SyntheticLab(seed).records(n) if r.orders]


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "encoding", "ending"), [
    ({}, "iso-8859-1", "CRLF"),
    ({"encoding": "utf-8", "line_ending": b"\n"}, "utf-8", "LF"),
    ({"encoding": "iso-8859-1", "line_ending": b"\r", "nir_with_space": False}, "iso-8859-1", "CR"),
    ({"html_entities": True, "final_marker": False}, "ascii", "CRLF"),
])
def test_round_trip(options: dict, encoding: str, ending: str) -> None:
    records = synthetic(3, 40)
    out = io.BytesIO()
    hm.write(records, out, **options)
    stats = ReadStats()
    got = units(out.getvalue(), stats)
    want = expected(records)
    assert [u.seq for u in got] == list(range(1, len(want) + 1))
    assert all(isinstance(u, Parsed) for u in got)
    for u, e in zip(got, want, strict=True):
        assert record_content(u.record, hm.NOT_CARRIED) == record_content(e, hm.NOT_CARRIED)
        p, o = u.record.patient, u.record.orders[0]
        assert p.sex == (e.patient.sex if e.patient.nir else Sex.UNKNOWN)
        assert o.sampled_at is not None and e.orders[0].sampled_at is not None
        assert o.sampled_at.date() == e.orders[0].sampled_at.astimezone(hm.PARIS).date()
        assert o.sampled_at.tzinfo is not None and (o.sampled_at.hour, o.sampled_at.minute) == (0, 0)
        assert u.source_patient_id is not None and len(u.source_patient_id) == 15
        assert u.position.file == "lab.hpr"
    assert stats.encoding == encoding and stats.line_ending == ending
    assert stats.segments["report"] == len(want)
    assert stats.segments["RES"] == sum(len(e.orders[0].results) for e in want)
    assert ("no ****FINFICHIER**** end-of-file marker" in stats.notes) == (options.get(
        "final_marker") is False)


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


C1 = "".join(map(chr, range(0x80, 0xA0)))  # C1 controls read back as CP1252: not carried


def _record(comment: str) -> PatientRecord:
    patient = Patient(last_name="Dupont", first_names="Marie", birth_date=date(1985, 7, 14),
                      sex=Sex.FEMALE, nir="285077512345655",
                      address=Address("1 rue A", "75011", "Paris"))
    result = Result("LN", "718-7", comment, comment, "g/L", comment, AbnormalFlag.HIGH,
                    ResultStatus.CORRECTED, comments=(Comment(comment),))
    order = Order(FINESS, datetime(2024, 5, 22, tzinfo=hm.PARIS), results=(result,),
                  comments=(Comment(comment),), lab_file_number=comment)
    return PatientRecord(patient, (order,))


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs", "Cn"), exclude_characters=C1),
                   min_size=1, max_size=30)
       .filter(lambda s: s == s.strip()),
       encoding=st.sampled_from(["cp1252", "iso-8859-1", "utf-8"]), named=st.booleans())
def test_text_fields_survive_any_text(text: str, encoding: str, named: bool) -> None:
    # a bare number as a reference range reads back as a lower bound (">5"): documented
    assume(re.fullmatch(r"[+-]?\d+(?:[.,]\d+)?", text) is None)
    # 8-bit text that is also valid UTF-8 ("Ã©") is read as UTF-8: documented
    assume(encoding == "utf-8" or text.isascii() or not _valid_utf8(text.encode(encoding, "ignore")))
    record = _record(text)
    out = io.BytesIO()
    hm.write([record], out, encoding=encoding, html_entities=named)
    (u,) = units(out.getvalue())
    assert isinstance(u, Parsed)
    assert record_content(u.record, hm.NOT_CARRIED) == record_content(record, hm.NOT_CARRIED)


def test_writer_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="encoding"):
        hm.write([], io.BytesIO(), encoding="utf-16")
    with pytest.raises(ValueError, match="line_ending"):
        hm.write([], io.BytesIO(), line_ending=b"\n\r")


# --- ugly inputs ---------------------------------------------------------------------------

def test_hand_written_report_maps_every_field() -> None:
    stats = ReadStats()
    data = encode(report()) + b"****FINFICHIER****\r\n"
    (u,) = units(data, stats)
    assert isinstance(u, Parsed) and u.seq == 1 and u.position.line == 1
    assert u.source_sha256 == sha256(data) and u.source_patient_id == "0000129610"
    p, o = u.record.patient, u.record.orders[0]
    assert (p.last_name, p.first_names, p.birth_date) == ("DUPONT", "Marie", date(1985, 7, 14))
    assert p.nir == "285077512345655" and p.sex is Sex.FEMALE
    assert p.address == Address("12 RUE DES LILAS", "75011", "PARIS", "BAT B")
    assert (o.lab_finess, o.lab_file_number) == (FINESS, "24-000123")
    assert o.sampled_at == datetime(2024, 5, 22, tzinfo=hm.PARIS)
    assert o.prescriber is not None
    assert (o.prescriber.last_name, o.prescriber.first_name) == ("MARTIN", "Paul")
    assert (o.prescriber.rpps, o.prescriber.adeli) == ("10003456786", None)
    assert [c.text for c in o.comments] == ["A jeun"]
    hb, crp = o.results
    assert (hb.code_system, hb.code, hb.label, hb.value, hb.unit) == (
        "LN", "718-7", "Hémoglobine", "13.2", "g/dL")
    assert (hb.reference_range, hb.abnormal_flag, hb.status) == (
        "12.0-16.0", AbnormalFlag.NORMAL, ResultStatus.FINAL)
    assert [c.text for c in hb.comments] == ["Contrôlé"]
    assert (crp.code_system, crp.reference_range, crp.abnormal_flag, crp.status) == (
        "LOCAL", "<5", AbnormalFlag.HIGH, ResultStatus.PRELIMINARY)
    assert stats.encoding == "iso-8859-1" and stats.line_ending == "CRLF" and not stats.notes
    assert stats.segments["RES"] == 2 and stats.segments["TEX"] == 2


def test_cp1252_accents_euro_and_html_entities() -> None:
    header = [*HEADER]
    header[1], header[2] = "L&eacute;GER", "Ren&#233;e &amp; Zo&euml;"
    lab = ["****LAB****", "RES|Forfait|F01|A|Réglé 5 €|||||F", "TEX|Coût : 3 € &lt;payé&gt;",
           "****FIN****"]
    stats = ReadStats()
    (u,) = units(encode(report(header, lab)), stats)
    assert isinstance(u, Parsed)
    assert (u.record.patient.last_name, u.record.patient.first_names) == ("LéGER", "Renée & Zoë")
    (r,) = u.record.orders[0].results
    assert r.value == "Réglé 5 €" and r.comments[0].text == "Coût : 3 € <payé>"
    assert r.reference_range is None and r.abnormal_flag is None and r.status is ResultStatus.FINAL
    assert stats.encoding == "cp1252"


def test_utf8_with_bom_lf_and_cr_only_files() -> None:
    stats = ReadStats()
    (u,) = units(b"\xef\xbb\xbf" + encode(report(), "\n", "utf-8"), stats)
    assert isinstance(u, Parsed) and u.source_patient_id == "0000129610"
    assert u.record.orders[0].results[0].label == "Hémoglobine"
    assert (stats.encoding, stats.line_ending) == ("utf-8", "LF")
    stats = ReadStats()
    (u,) = units(encode(report(), "\r"), stats)
    assert isinstance(u, Parsed) and stats.line_ending == "CR"


def test_nir_spellings_and_sex() -> None:
    for spelling, sex in [("1850775123456 55", Sex.MALE), ("285077512345655", Sex.FEMALE),
                          ("2 85 07 75 123 456 55", Sex.FEMALE), ("", Sex.UNKNOWN)]:
        header = [*HEADER]
        header[7] = spelling
        (u,) = units(encode(report(header)))
        assert isinstance(u, Parsed) and u.record.patient.sex is sex
        assert u.record.patient.nir == ("".join(spelling.split()) or None)
    header = [*HEADER]
    header[7] = "28507751234"
    (u,) = units(encode(report(header)))
    assert isinstance(u, Rejected) and (u.field, u.reason) == (
        "patient.nir", "not a nir: expected fifteen characters")


def test_several_reports_truncated_last() -> None:
    first, second = encode(report()), encode(report())
    third = encode(report()[:16])  # header and part of the text, no ****FIN****
    stats = ReadStats()
    got = units(first + second + third, stats)
    assert [u.seq for u in got] == [1, 2, 3]
    assert [type(u) for u in got] == [Parsed, Parsed, Rejected]
    assert [u.position.line for u in got] == [1, 22, 43]
    assert got[1].source_sha256 == sha256(second)
    assert (got[2].field, got[2].reason, got[2].raw) == (
        "record", "truncated: no ****FIN**** end marker", third)
    assert "no ****FINFICHIER**** end-of-file marker" in stats.notes


def test_bad_birth_dates() -> None:
    for value, reason in [("31/02/1980", "not a valid date"), ("1980-02-03", "not a date: "
                          "expected DD/MM/YYYY"), ("inconnue", "not a date: expected DD/MM/YYYY"),
                          ("", "not a date: expected DD/MM/YYYY")]:
        header = [*HEADER]
        header[6] = value
        data = encode(report(header)) + encode(report())
        bad, good = units(data)
        assert isinstance(bad, Rejected) and (bad.seq, bad.field, bad.reason) == (
            1, "patient.birth_date", reason)
        assert bad.raw == encode(report(header)) and bad.position.line == 1
        assert bad.position.segment == "line 7"
        assert isinstance(good, Parsed) and good.seq == 2


def test_junk_before_first_report_and_after_last() -> None:
    junk = encode(["From: labo@example.org", "Subject: resultats", ""])
    body = encode(report())
    tail = encode(["****FINFICHIER****", "", "-- ", "Envoye par messagerie securisee"])
    got = units(junk + body + tail)
    assert [u.seq for u in got] == [1, 2, 3]
    j, parsed, trailer = got
    assert isinstance(j, Rejected) and (j.field, j.reason, j.raw) == (
        "record", "text outside any report", junk)
    assert j.position.line == 1
    assert isinstance(parsed, Parsed) and parsed.position.line == 4
    assert parsed.source_sha256 == sha256(body + encode(["****FINFICHIER****"]))
    assert isinstance(trailer, Rejected) and trailer.reason == "text outside any report"
    assert trailer.raw == encode(["", "-- ", "Envoye par messagerie securisee"])
    assert trailer.position.line == 27


def test_empty_optional_lines() -> None:
    header = [*HEADER]
    header[0] = header[3] = header[4] = header[5] = header[7] = header[8] = ""
    header[9] = header[11] = ""
    lines = [*report(), "", "", *report(header)]  # the dates place the header: line 1 empty
    first, u = units(encode(lines))
    assert isinstance(first, Parsed) and first.source_sha256 == sha256(encode(report()))
    assert isinstance(u, Parsed) and u.position.line == 24 and u.source_patient_id is None
    assert u.source_sha256 == sha256(encode(["", "", *report(header)]))
    assert u.record.patient.last_name == "DUPONT"
    p, o = u.record.patient, u.record.orders[0]
    assert (p.address, p.nir, p.sex) == (None, None, Sex.UNKNOWN)
    assert (o.lab_file_number, o.sampled_at, o.prescriber) == (None, None, None)


def test_res_line_with_too_few_fields_or_no_value() -> None:
    lab = ["****LAB****", "RES|Glycémie", "****FIN****"]
    (u,) = units(encode(report(lab=lab)))
    assert isinstance(u, Rejected) and (u.field, u.reason) == ("RES", "too few fields")
    assert u.position.segment == "line 17" and u.position.line == 1
    lab = ["****LAB****", "TEX", "RES||IGET 005|A", "TEX|Valeurs normales : 0 a 100",
           "RES|IgE|IGET|N|164|UI/ml|0|100|H|F", "****FIN****"]
    (u,) = units(encode(report(lab=lab)))
    assert isinstance(u, Parsed)
    assert [(a.field, a.position) for a in u.anomalies] == [("result.value", "line 18")]
    o = u.record.orders[0]
    assert [c.text for c in o.comments] == ["Valeurs normales : 0 a 100"]
    assert [r.code for r in o.results] == ["IGET"]


@pytest.mark.parametrize(("line", "field", "reason"), [
    ("RES|Hb|718-7|N|13|g/dL|12|16|Z|F", "result.abnormal_flag", "unknown abnormal flag"),
    ("RES|Hb|718-7|N|13|g/dL|12|16|N|Q", "result.status", "unknown result status"),
    ("RES|Hb||N|13|g/dL|12|16|N|F", "result.code", "missing"),
    ("OBX|1|NM|718-7", "LAB", "unknown line type in the structured section"),
])
def test_bad_structured_lines(line: str, field: str, reason: str) -> None:
    (u,) = units(encode(report(lab=["****LAB****", line, "****FIN****"])))
    assert isinstance(u, Rejected) and (u.field, u.reason) == (field, reason)


def test_reference_ranges_second_unit_and_status_letters() -> None:
    lab = ["****LAB****", "RES|HDL|2085-9|N|0.63|g/l|0.40||N|C|1.63|mmol/l|1.03|",
           "RES|VIH|56888-1|A|Positif||Négatif|||X", "RES|PSA|2857-1|N|1.2|µg/L|||",
           "****FIN****"]
    (u,) = units(encode(report(lab=lab)))
    assert isinstance(u, Parsed)
    hdl, hiv, psa = u.record.orders[0].results
    assert (hdl.reference_range, hdl.status) == (">0.40", ResultStatus.CORRECTED)
    assert (hiv.reference_range, hiv.status) == ("Négatif", ResultStatus.CANCELLED)
    assert (psa.reference_range, psa.abnormal_flag, psa.status) == (None, None, ResultStatus.FINAL)
    assert [a.field for a in u.anomalies] == ["RES"]


def test_postal_code_and_city_on_separate_lines() -> None:
    header = [*HEADER[:5], "75011", "PARIS", *HEADER[6:]]
    (u,) = units(encode(report(header)))
    assert isinstance(u, Parsed)
    assert u.record.patient.address == Address("12 RUE DES LILAS", "75011", "PARIS", "BAT B")
    assert u.record.patient.birth_date == date(1985, 7, 14)
    assert u.record.orders[0].lab_finess == FINESS
    assert [a.field for a in u.anomalies] == ["header"]


def test_padded_header_recipient_without_codes_and_finfichier_alone() -> None:
    header = [f"{h:<30}" for h in HEADER]
    header[10] = f"   {FINESS} Laboratoire des Lilas   "
    header[11] = "     DR MARTIN PAUL        "
    lines = report(header, [*LAB_LINES[:-1], "****FINFICHIER****"])
    (u,) = units(encode(lines, "\n"))
    assert isinstance(u, Parsed) and u.record.patient.last_name == "DUPONT"
    o = u.record.orders[0]
    assert o.lab_finess == FINESS and o.prescriber is not None
    assert (o.prescriber.last_name, o.prescriber.first_name, o.prescriber.rpps) == (
        "DR MARTIN PAUL", None, None)
    assert [a.reason for a in u.anomalies] == ["report ended by ****FINFICHIER**** alone"]


def test_free_text_report_and_short_header() -> None:
    letter = [*HEADER, "", "Cher confrere,", "****FIN****"]
    short = [*HEADER[:6], "****LAB****", "****FIN****"]
    a, b = units(encode(letter) + encode(short))
    assert isinstance(a, Rejected) and (a.field, a.seq) == ("LAB", 1)
    assert isinstance(b, Rejected) and (b.field, b.reason, b.seq) == (
        "header", "fewer than twelve header lines", 2)
    assert b.position.line == len(letter) + 1


def test_empty_and_blank_inputs() -> None:
    assert units(b"") == []
    assert units(b"\r\n\r\n****FINFICHIER****\r\n") == []


def test_oversized_unit_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hm, "MAX_UNIT_BYTES", 200)
    data = encode(["x" * 50] * 10)
    got = units(data)
    assert [u.seq for u in got] == list(range(1, len(got) + 1))
    assert all(isinstance(u, Rejected) for u in got)
    assert b"".join(u.raw for u in got) == data


# --- fuzzing -------------------------------------------------------------------------------

FIXTURE = synthetic(11, 3)
FIXTURE_BYTES = io.BytesIO()
hm.write(FIXTURE, FIXTURE_BYTES)
VALID = FIXTURE_BYTES.getvalue()
PERSONAL = {v for r in FIXTURE for v in (r.patient.last_name, r.patient.first_names,
                                         r.patient.nir, r.patient.nir and r.patient.nir[:13]) if v}


def check(data: bytes, personal: set[str] = PERSONAL) -> list:
    got = units(data)
    assert [u.seq for u in got] == list(range(1, len(got) + 1))
    for u in got:
        assert isinstance(u, Parsed | Rejected)
        if isinstance(u, Rejected):
            shown = f"{u.field} {u.reason} {u.position}"
            assert not any(v in shown for v in personal)
            assert u.raw and u.raw in data
    return got


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_file(data: st.DataObject) -> None:
    b = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "delete", "truncate", "duplicate", "insert"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "delete":
            del b[i:i + data.draw(st.integers(1, 40))]
        elif op == "truncate":
            del b[i:]
        elif op == "insert":
            b[i:i] = data.draw(st.sampled_from([b"****FIN****\r\n", b"\r", b"|", b"&#", b"\xff"]))
        else:
            lines = bytes(b).split(b"\r\n")
            k = data.draw(st.integers(0, len(lines) - 1))
            lines.insert(k, lines[k])
            b = bytearray(b"\r\n".join(lines))
    check(bytes(b))


VOCABULARY = [*HEADER, "", "  ", "Compte rendu", "****LAB****", "****FIN****", "****FINFICHIER****",
              *LAB_LINES[1:5], "TEX", "RES|a", "RES||X|A", "RES|a|b|N|1|u|||Q|F", "31/02/1980",
              "75011", "PARIS", "From: x", "&eacute;&#", "\xe9\u20ac"]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.sampled_from(VOCABULARY), max_size=80),
       eol=st.sampled_from(["\r\n", "\n", "\r"]), encoding=st.sampled_from(["cp1252", "utf-8"]))
def test_random_line_sequences(lines: list[str], eol: str, encoding: str) -> None:
    got = check(encode(lines, eol, encoding), {"DUPONT", "Marie", NIR, NIR[:13], "MARTIN"})
    assert sum(isinstance(u, Parsed) for u in got) <= lines.count("****FIN****") + lines.count(
        "****FINFICHIER****")


def test_unmutated_fixture_has_no_rejection() -> None:
    assert all(isinstance(u, Parsed) for u in check(VALID))


# --- sniffing ------------------------------------------------------------------------------

def test_sniff() -> None:
    assert hm.sniff(VALID[:4096])
    head = encode([*HEADER, *["Ligne de texte libre assez longue pour remplir"] * 120])[:4096]
    assert b"****" not in head and hm.sniff(head)
    assert not hm.sniff(b"H|^~\\&|LAB001|||LABO|||||ORU|P|H2.2|202405221030\rP|1|")
    assert not hm.sniff(b"MSH|^~\\&|LAB|FAC|EHR|FAC|20240522||ORU^R01|1|P|2.5\r")
    assert not hm.sniff(b'{"resourceType": "Bundle", "type": "collection"}')
    assert not hm.sniff(b"nom;prenom;date_naissance;code;valeur\r\nDUPONT;Marie;14/07/1985;x;1\r\n")
    assert not hm.sniff(b"")
