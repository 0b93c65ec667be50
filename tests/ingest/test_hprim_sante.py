"""HPRIM Santé reader and writer: round trips, the ugly inputs real laboratories send, fuzzing."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labvault.domain.records import (
    AbnormalFlag,
    Comment,
    IdentityStatus,
    InsOid,
    Order,
    PatientRecord,
    Result,
    ResultStatus,
    Sex,
)
from labvault.ingest import hprim_sante as hs
from labvault.ingest.base import Parsed, ReadStats, Rejected, sha256
from labvault.ingest.content import record_content
from labvault.synthetic import SyntheticLab

STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
FINESS = "130001234"
TRUNCATED = "truncated: message has no L record"
H = "H|~^\\&|TEST.HPR||130001234~LABO TEST||ORU|||||P|H2.2~C|202401011200"
P1 = ("P|1|PAT01||1 84 12 75 123 456 78|DUPONTEL~Jean~Marc|MARTINEZ|19841231|M||1 rue X~~PARIS~~75001"
      "||0102030405")
P2 = "P|2|PAT02|||DURANDIN~Lucie||19900615|F"
OBR = "OBR|1||F001|GLU~Glucose~L|R|202401020800|202401020830|||||||||10000000009~MARTIN~Paul"
OBX = "OBX|1|NM|GLU~Glucose~L||5.2|mmol/L|3.9-5.8|N|||F|||202401021000"
PERSONAL = ("DUPONTEL", "DURANDIN", "MARTINEZ", "184127512345678", "1 84 12 75", "0102030405")


def hprim(*lines: str, eol: str = "\r", end: bool = True, encoding: str = "latin-1") -> bytes:
    return "".join(line + eol for line in lines).encode(encoding) if end else \
        (eol.join(lines)).encode(encoding)


def read(data: bytes, stats: ReadStats | None = None, name: str = "lab/x.hpr") -> list:
    return list(hs.read(io.BytesIO(data), name, stats))


def write(records: list[PatientRecord], **options: object) -> bytes:
    out = io.BytesIO()
    hs.write(records, out, created_at=STAMP, **options)  # type: ignore[arg-type]
    return out.getvalue()


def content(record: PatientRecord) -> dict:
    return record_content(record, omit=hs.NOT_CARRIED)


def kinds(units: list) -> list[str]:
    return ["P" if isinstance(u, Parsed) else f"R:{u.field}" for u in units]


@pytest.fixture(scope="module")
def records() -> list[PatientRecord]:
    return list(SyntheticLab(11).records(40))


# ---------------------------------------------------------------- round trips

def test_round_trip_synthetic(records: list[PatientRecord]) -> None:
    stats = ReadStats()
    data = write(records)
    units = read(data, stats)
    assert [u.seq for u in units] == list(range(1, len(records) + 1))
    assert all(isinstance(u, Parsed) for u in units)
    for unit, original in zip(units, records, strict=True):
        assert content(unit.record) == content(original)
        assert unit.source_patient_id == original.patient.id.hex
        assert unit.position.file == "x.hpr" and unit.position.segment == "P"
    assert stats.encoding == "iso-8859-1" and stats.line_ending == "CRLF" and stats.version == "H2.2"
    assert stats.segments["P"] == len(records) and stats.segments["H"] == stats.segments["L"] == 1
    assert stats.segments["OBX"] == sum(r.result_count() for r in records)
    assert stats.segments["A"] > 0  # OBR-4 code lists run past 220 characters
    assert "delimiters |~^\\&" in stats.notes


@pytest.mark.parametrize("delimiters", ["|~^\\&", "|\\^&~", "|^~\\&", "#$%!*"])
@pytest.mark.parametrize(("encoding", "eol", "name"), [
    ("iso-8859-1", b"\r", "CR"), ("cp1252", b"\r\n", "CRLF"), ("utf-8", b"\n", "LF")])
def test_round_trip_variants(records: list[PatientRecord], delimiters: str, encoding: str,
                             eol: bytes, name: str) -> None:
    stats = ReadStats()
    data = write(records[:12], delimiters=delimiters, encoding=encoding, line_ending=eol,
                 patients_per_message=5, version="H2.4")
    assert data.startswith(b"H" + delimiters.encode())
    units = read(data, stats)
    assert [content(u.record) for u in units] == [content(r) for r in records[:12]]
    assert stats.segments["H"] == stats.segments["L"] == 3
    assert stats.line_ending == name and stats.version == "H2.4"


def test_seq_and_positions_across_messages(records: list[PatientRecord]) -> None:
    data = write(records[:3], patients_per_message=2, max_line=None)
    lines = data.split(b"\r\n")
    p_lines = [i + 1 for i, line in enumerate(lines) if line.startswith(b"P|")]
    units = read(data)
    assert [u.position.line for u in units] == p_lines
    assert [u.seq for u in units] == [1, 2, 3]
    # the unit's bytes run from its P record to the next P or L, exclusive
    first = b"\r\n".join(lines[p_lines[0] - 1:p_lines[1] - 1]) + b"\r\n"
    assert units[0].source_sha256 == sha256(first)


def test_long_comment_round_trips_through_continuation_records(records: list[PatientRecord]) -> None:
    text = "Commentaire très long : " + " ".join(f"mot{i}|~^\\&" for i in range(80))
    rec = records[0]
    order = rec.orders[0]
    result = order.results[0]
    changed = PatientRecord(rec.patient, (Order(
        order.lab_finess, order.sampled_at, order.requested_at, order.prescriber,
        order.lab_file_number, (Result(result.code_system, result.code, result.label, result.value,
                                       comments=(Comment(text),)),), (Comment(text),)),))
    data = write([changed])
    physical = data.split(b"\r\n")
    assert max(len(line) for line in physical) <= 220
    assert sum(line.startswith(b"A|") for line in physical) >= 4
    (unit,) = read(data)
    assert unit.record.orders[0].comments[0].text == text
    assert unit.record.orders[0].results[0].comments[0].text == text


def test_unencodable_characters_are_hex_escaped(records: list[PatientRecord]) -> None:
    rec = records[0]
    order = rec.orders[0]
    beta = Result("LN", "2106-3", "β-hCG ≥ 5", "Positif", comments=(Comment("dosage des β-hCG"),))
    changed = PatientRecord(rec.patient, (Order(order.lab_finess, results=(beta,)),))
    data = write([changed], encoding="iso-8859-1")
    assert b"\\XCEB2\\" in data and b"\\XE289A5\\" in data
    (unit,) = read(data)
    assert content(unit.record) == content(changed)


def test_ambiguous_autumn_hour_keeps_its_offset(records: list[PatientRecord]) -> None:
    first, second = datetime(2024, 10, 27, 0, 30, tzinfo=UTC), datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    rec = records[0]
    results = tuple(Result("LN", "718-7", "Hb", "13.0", observed_at=t) for t in (first, second))
    changed = PatientRecord(rec.patient, (Order(FINESS, sampled_at=datetime(2024, 7, 1, 6, tzinfo=UTC),
                                                results=results),))
    data = write([changed])
    assert b"|202410270230+0200" in data and b"|202410270230+0100" in data
    assert b"|202407010800|" in data  # summer time, unambiguous: no offset
    (unit,) = read(data)
    assert [r.observed_at for r in unit.record.orders[0].results] == [first, second]


# ---------------------------------------------------------------- hand-written files

def test_reference_file_field_mapping() -> None:
    data = hprim(H, P1, OBR, "C|1|L|Prélèvement difficile|G", OBX, "C|1|L|Hémolyse|G",
                 "C|2|L|Contrôlé|G", P2, "L|1")
    stats = ReadStats()
    first, second = read(data, stats)
    p = first.record.patient
    assert (p.last_name, p.first_names, p.birth_name, p.birth_date, p.sex) == (
        "DUPONTEL", "Jean Marc", "MARTINEZ", date(1984, 12, 31), Sex.MALE)
    assert p.nir == "184127512345678" and p.ins is None and p.phone == "0102030405"
    assert p.address is not None
    assert (p.address.line1, p.address.postal_code, p.address.city, p.address.line2) == (
        "1 rue X", "75001", "PARIS", None)
    assert first.source_patient_id == "PAT01"
    (o,) = first.record.orders
    assert o.lab_finess == FINESS and o.lab_file_number == "F001"
    assert o.requested_at == datetime(2024, 1, 2, 7, 0, tzinfo=UTC)
    assert o.sampled_at == datetime(2024, 1, 2, 7, 30, tzinfo=UTC)
    assert o.prescriber is not None
    assert (o.prescriber.last_name, o.prescriber.first_name, o.prescriber.rpps) == ("MARTIN", "Paul",
                                                                                  "10000000009")
    assert [c.text for c in o.comments] == ["Prélèvement difficile"]
    (r,) = o.results
    assert (r.code_system, r.code, r.label, r.value, r.unit, r.reference_range) == (
        "L", "GLU", "Glucose", "5.2", "mmol/L", "3.9-5.8")
    assert (r.abnormal_flag, r.status) == (AbnormalFlag.NORMAL, ResultStatus.FINAL)
    assert r.observed_at == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)
    assert [c.text for c in r.comments] == ["Hémolyse", "Contrôlé"]
    assert second.record.patient.sex is Sex.FEMALE and second.record.orders == ()
    assert (first.position.line, second.position.line) == (2, 8)
    assert stats.encoding == "iso-8859-1" and stats.line_ending == "CR"
    assert stats.segments == {"H": 1, "P": 2, "OBR": 1, "OBX": 1, "C": 3, "L": 1}


@pytest.mark.parametrize(("eol", "name"), [("\r\n", "CRLF"), ("\r", "CR"), ("\n", "LF")])
def test_line_endings(eol: str, name: str) -> None:
    stats = ReadStats()
    units = read(hprim(H, P1, OBR, OBX, "L|1", eol=eol), stats)
    assert kinds(units) == ["P"] and stats.line_ending == name


def test_mixed_line_endings() -> None:
    stats = ReadStats()
    data = (H + "\r\n" + P1 + "\r" + OBR + "\n" + OBX + "\r\nL|1\r\n").encode("latin-1")
    units = read(data, stats)
    assert kinds(units) == ["P"] and len(units[0].record.orders[0].results) == 1
    assert stats.line_ending == "mixed"


def test_encodings_detected() -> None:
    latin = ReadStats()
    (u,) = read(hprim(H, P1.replace("Jean", "Hélène"), "L|1", encoding="latin-1"), latin)
    assert u.record.patient.first_names == "Hélène Marc" and latin.encoding == "iso-8859-1"
    cp = ReadStats()
    (u,) = read(hprim(H, P1.replace("Jean", "Cœur€"), "L|1", encoding="cp1252"), cp)
    assert u.record.patient.first_names == "Cœur€ Marc" and cp.encoding == "cp1252"
    utf = ReadStats()
    (u,) = read(hprim(H, P1.replace("Jean", "Zoë Œ"), "L|1", encoding="utf-8"), utf)
    assert u.record.patient.first_names == "Zoë Œ Marc" and utf.encoding == "utf-8"
    undefined = ReadStats()  # 0x81 is undefined in CP1252: read as ISO-8859-1
    (u,) = read(hprim(H, P1, "L|1").replace(b"Jean", b"J\x81\x9cn"), undefined)
    assert u.record.patient.first_names == "J\x81œn Marc" and undefined.encoding == "cp1252"
    ascii_ = ReadStats()
    read(hprim(H, P2, "L|1"), ascii_)
    assert ascii_.encoding == "ascii"


def test_utf8_bom_and_leading_blank_lines() -> None:
    data = b"\xef\xbb\xbf" + hprim(H, P2, "L|1")
    assert kinds(read(data)) == ["P"]
    assert kinds(read(b"\r\n\r\n" + hprim(H, P2, "L|1"))) == ["P"]


def test_continuation_records_rejoined_before_splitting() -> None:
    obx = "OBX|1|ST|GLU~Glu~L||tres long texte|g/L|||||F"
    data = hprim(H, P2, OBR[:40], "A|" + OBR[40:], obx[:25], "A|" + obx[25:30], "A|" + obx[30:], "L|1")
    stats = ReadStats()
    (u,) = read(data, stats)
    (o,) = u.record.orders
    assert o.sampled_at == datetime(2024, 1, 2, 7, 30, tzinfo=UTC) and o.prescriber is not None
    assert o.results[0].value == "tres long texte" and o.results[0].label == "Glu"
    assert stats.segments["A"] == 3 and stats.segments["OBX"] == 1


def test_header_continued_in_an_a_record() -> None:
    units = read(hprim(H[:30], "A|" + H[30:], P2, OBR.replace("F001", "F9"), "L|1"))
    assert units[0].record.orders[0].lab_finess == FINESS


def test_comment_targets() -> None:
    data = hprim(H, P2, "C|1|L|sur le patient|G", OBR, "C|1|L|demande|G", "C|2|L|demande 2|G",
                 OBX, "C|1|L|résultat|G", "AP|1|x", "C|1|L|sur AP|G", "L|1")
    (u,) = read(data)
    (o,) = u.record.orders
    assert [c.text for c in o.comments] == ["demande", "demande 2"]
    assert [c.text for c in o.results[0].comments] == ["résultat"]
    dropped = [(a.field, a.position) for a in u.anomalies]
    assert dropped == [("comment", "line 3"), ("comment", "line 10")]


def test_escape_sequences() -> None:
    value = "1\\S\\2\\F\\3\\R\\4\\E\\5\\T\\6\\.br\\7\\X0D\\8\\XC3A9\\9\\XE9\\\\Z\\\\H\\x\\N\\"
    obx = f"OBX|1|ST|GLU~Glu\\S\\cose~L||{value}|µ\\R\\g|||||F"
    (u,) = read(hprim(H, P2, OBR, obx, "L|1"))
    r = u.record.orders[0].results[0]
    assert r.value == "1~2|3^4\\5&6\n7\r8é9é\\Z\\x"
    assert r.label == "Glu~cose" and r.unit == "µ^g"


def test_escape_sequences_with_other_delimiters() -> None:
    header = "H|\\^&~|CLIR949.hpr||130001234\\LABORATOIRE||ORU|||M07\\CLINIQUE||P|H2.0\\C|201204042104"
    patient = "P|0001|240932||12012010|BRAHMIAN\\RAFIK||19721129|M||2 RUE&F&BIS\\\\AVIGNON\\\\84000"
    data = hprim(header, patient,
                 "OBR|0001|60412444\\1204126444|\\1204126444|U\\ACIDE URIQUE|R||201204122234",
                 "OBX|0002|ST|GRS\\Hématies\\L||4&S&51|million/mm|4.10-5.70|N|||F|||201204042026", "L|1")
    (u,) = read(data)
    p, (o,) = u.record.patient, u.record.orders
    assert (p.last_name, p.first_names, p.nir) == ("BRAHMIAN", "RAFIK", "12012010")
    assert p.address is not None and p.address.line1 == "2 RUE|BIS" and p.address.postal_code == "84000"
    assert o.lab_file_number == "1204126444" and o.lab_finess == FINESS
    assert o.results[0].value == "4\\51" and o.results[0].label == "Hématies"


def test_empty_optional_fields() -> None:
    data = hprim(H, "P|1||||MINIMAL||20000101|U", "OBR|1", "OBX|1|ST|X||", "L|1")
    (u,) = read(data)
    p = u.record.patient
    assert (p.first_names, p.birth_name, p.nir, p.ins, p.address, p.phone) == ("", None, None, None,
                                                                              None, None)
    assert u.source_patient_id is None
    (o,) = u.record.orders
    assert (o.lab_file_number, o.sampled_at, o.requested_at, o.prescriber) == (None, None, None, None)
    r = o.results[0]
    assert (r.code_system, r.label, r.value, r.unit, r.reference_range, r.abnormal_flag,
            r.status, r.observed_at) == ("L", "", "", None, None, None, ResultStatus.FINAL, None)


def test_missing_sex_is_unknown_with_an_anomaly() -> None:
    (u,) = read(hprim(H, "P|1|X|||NOM~P||19500101", "L|1"))
    assert u.record.patient.sex is Sex.UNKNOWN
    assert [(a.field, a.reason) for a in u.anomalies] == [("patient.sex", "missing: read as unknown")]


def test_ins_and_prescriber_identifiers() -> None:
    ins = f"P|1|X|184127512345678~{InsOid.NIR.value}~QUAL|184127512345678|NOM~P||19841231|M"
    obr = "OBR|1||F|||||||||||||10000000009~DOC~Ann^123456789~DOC~Ann^12~ZZ"
    (u,) = read(hprim(H, ins, obr, "L|1"))
    assert u.record.patient.ins is not None
    assert (u.record.patient.ins.oid, u.record.patient.ins.status) == (InsOid.NIR,
                                                                      IdentityStatus.QUALIFIED)
    pr = u.record.orders[0].prescriber
    assert pr is not None and (pr.rpps, pr.adeli, pr.last_name, pr.first_name) == (
        "10000000009", "123456789", "DOC", "Ann")
    assert [a.reason for a in u.anomalies] == ["identifier of unknown kind ignored"]
    # P-3 without an INS OID is the receiver's own code: ignored
    (u,) = read(hprim(H, "P|1|X|LOCAL42||NOM~P||19841231|M", "L|1"))
    assert u.record.patient.ins is None
    (u,) = read(hprim(H, f"P|1|X|1841~{InsOid.NIR.value}~BOF||NOM~P||19841231|M", "L|1"))
    assert (u.field, u.reason) == ("patient.ins", "unknown identity status")


def test_value_types_ce_fic_tx_and_repeated_codes() -> None:
    data = hprim(H, P2, OBR,
                 "OBX|1|CE|GRP~Groupe~L||A+~Groupe A positif~L||||||F",
                 "OBX|2|FIC|CR~Compte rendu~L||CR2024-001.pdf||||||F",
                 "OBX|3|TX|TXT~Texte~L||ligne 1^ligne 2||||||F",
                 "OBX|4|NM|GLU~Glucose~L||<0.5|g/L|||||F",
                 "OBX|5|NM|GLU~Glucose~L||abc|g/L|||||F", "L|1")
    (u,) = read(data)
    values = [r.value for r in u.record.orders[0].results]
    assert values == ["Groupe A positif", "FIC:CR2024-001.pdf", "ligne 1\nligne 2", "<0.5", "abc"]
    assert [(a.field, a.reason, a.position) for a in u.anomalies] == [
        ("result.value", "points to an attached report file", "line 5"),
        ("result.value", "value of type NM is not a number", "line 8"),
        ("result.code", "result code repeated in one request", "line 8")]


def test_fic_round_trip(records: list[PatientRecord]) -> None:
    rec = records[0]
    fic = Result("L", "CR", "Compte rendu", "FIC:CR 2024|001.pdf")
    changed = PatientRecord(rec.patient, (Order(FINESS, results=(fic,)),))
    data = write([changed])
    assert b"|FIC|CR~Compte rendu~L||CR 2024\\F\\001.pdf" in data
    (u,) = read(data)
    assert content(u.record) == content(changed)


# ---------------------------------------------------------------- rejections

def test_truncated_last_record() -> None:
    data = hprim(H, P1, OBR, OBX, P2, OBR, "OBX|1|NM|GLU~Glu", end=False)
    units = read(data)
    assert kinds(units) == ["P", "R:message"]
    assert units[1].reason == TRUNCATED and units[1].position.line == 5
    assert units[1].raw == hprim(P2, OBR, "OBX|1|NM|GLU~Glu", end=False)
    # a message cut short by the next H record
    units = read(hprim(H, P1, OBR, H, P2, "L|1"))
    assert kinds(units) == ["R:message", "P"] and [u.seq for u in units] == [1, 2]


@pytest.mark.parametrize(("line", "index", "field"), [
    (2, 7, "patient.birth_date"), (3, 7, "order.sampled_at"), (3, 6, "order.requested_at"),
    (4, 14, "result.observed_at")])
@pytest.mark.parametrize("bad", ["19841331", "2024-01-02", "20240102 0830", "202401021261", "2024"])
def test_bad_dates_rejected_naming_the_field(line: int, index: int, field: str, bad: str) -> None:
    lines = [H, P1, OBR, OBX + "|", "L|1"]
    fields = lines[line - 1].split("|")
    fields[index] = bad
    lines[line - 1] = "|".join(fields)
    (u,) = read(hprim(*lines))
    assert (u.field, u.reason, u.position.line) == (field, "not a valid date-time", 2)


@pytest.mark.parametrize(("record", "field", "reason"), [
    ("P|1|X|||~Jean||19841231|M", "patient.last_name", "missing"),
    ("P|1|X|||NOM~Jean|||M", "patient.birth_date", "missing"),
    ("P|1|X|||NOM~Jean||19841231|Z", "patient.sex", "unknown sex code"),
    ("OBX|1|NM|GLU||5|||Q|||F", "result.abnormal_flag", "unknown abnormal flag"),
    ("OBX|1|NM|GLU||5||||||Z", "result.status", "unknown result status"),
    ("OBX|1|XX|GLU||5", "result.value_type", "unknown value type"),
    ("OBX|1||GLU||5", "result.value_type", "missing"),
    ("OBX|1|NM|~Glu||5", "result.code", "missing"),
    ("ZZZ|1|something", "record", "unknown record type"),
])
def test_invalid_records(record: str, field: str, reason: str) -> None:
    lines = [H, P2, OBR, record, "L|1"] if not record.startswith("P") else [H, record, "L|1"]
    (u,) = read(hprim(*lines))
    assert isinstance(u, Rejected) and (u.field, u.reason) == (field, reason)


def test_result_before_any_request() -> None:
    (u,) = read(hprim(H, P2, OBX, "L|1"))
    assert (u.field, u.reason) == ("record", "result record before any request record")


@pytest.mark.parametrize("header", [
    "H|~~\\&|X||130001234", "H|~^\\|X||130001234", "H|~^A&|X||130001234", "H|~^\\&X||130001234",
    "H|~^ &|X", "H|~^", "H|~^\\|&|X"])
def test_garbage_delimiters_reject_the_whole_message(header: str) -> None:
    bad = hprim(header, P1, OBR, OBX, "L|1")
    stats = ReadStats()
    units = read(bad + hprim(H, P2, "L|1"), stats)
    assert kinds(units) == ["R:H.delimiters", "P"] and [u.seq for u in units] == [1, 2]
    assert units[0].raw == bad and units[0].position.line == 1 and units[0].position.segment == "H"
    assert units[1].position.line == 7
    assert "message with unusable delimiters" in stats.notes


def test_junk_outside_and_before_patients() -> None:
    data = hprim("garbage before", "more garbage", H, "C|1|L|message comment|G", "AP|1|ignored",
                 OBX, "C|1|L|x|G", P2, "L|1", "", "trailing junk", H, P1, "L|1")
    units = read(data)
    assert [(u.seq, u.position.line, u.position.segment, getattr(u, "reason", None)) for u in units] == [
        (1, 1, None, "text outside any message"), (2, 6, "OBX", "record before any patient record"),
        (3, 8, "P", None), (4, 11, None, "text outside any message"), (5, 13, "P", None)]
    assert units[0].raw == b"garbage before\rmore garbage\r"
    assert units[3].raw == b"trailing junk\r"


def test_no_laboratory_finess() -> None:
    header = "H|~^\\&|TEST.HPR||~LABO SANS FINESS||ORU|||||P|H2.2~C|202401011200"
    units = read(hprim(header, P1, OBR, OBX, P2, P1, OBR + "||||||||130007777~AUTRE", "L|1"))
    assert kinds(units) == ["R:H.sender", "P", "P"]
    assert units[0].reason == "no laboratory FINESS"
    assert units[2].record.orders[0].lab_finess == "130007777"


def test_ignored_records_are_counted() -> None:
    stats = ReadStats()
    (u,) = read(hprim(H, P2, "AP|1|x", "AC|1|y", OBR, "ERR|1|z", OBX, "L|1"), stats)
    assert isinstance(u, Parsed) and len(u.record.orders[0].results) == 1
    assert (stats.segments["AP"], stats.segments["AC"], stats.segments["ERR"]) == (1, 1, 1)


# ---------------------------------------------------------------- sniff

def test_sniff(records: list[PatientRecord]) -> None:
    for d in ("|~^\\&", "|\\^&~", "|^~\\&"):
        assert hs.sniff(write(records[:1], delimiters=d)[:4096])
    assert hs.sniff(b"\xef\xbb\xbf\r\nH|~^\\&|X")
    assert hs.sniff(b"H|~^\\&\r\nP|1")
    for other in (b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|1|P|2.5\r",
                  b"H|\\^&|||ASTM-Host|||||||P|1\r",
                  b"123456\r\nDUPONT\r\nJean\r\n\r\n\r\n75001 PARIS\r\n01/02/1980\r\n",
                  b"****LAB****\r\nRES|Glucose|GLU|N|5.2", b'{"resourceType": "Bundle"}',
                  b"nom;prenom;date_naissance\r\n", b"", b"H", b"HELLO|~^\\&|", b"H|~^\\&X"):
        assert not hs.sniff(other)


# ---------------------------------------------------------------- properties

def check_units(units: list) -> None:
    assert [u.seq for u in units] == list(range(1, len(units) + 1))
    for u in units:
        assert isinstance(u, Parsed | Rejected)
        assert u.position.segment in (None, "H", "P", "OBR", "OBX", "C", "A", "L", "AP", "AC",
                                      "ERR", "REG", "FAC", "ACT")
        if isinstance(u, Rejected):
            for value in PERSONAL:
                assert value not in u.reason and value not in u.field


FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    stats = ReadStats()
    check_units(read(data, stats))


@FUZZ
@given(st.lists(st.sampled_from([H, P1, P2, OBR, OBX, "C|1|L|x|G", "A|", "L|1", "AP|1", "junk", "",
                                 "H|~~\\&|", "OBX|1|NM|A||1|||Q"]), max_size=25),
       st.sampled_from(["\r", "\n", "\r\n"]), st.booleans())
def test_record_soup(lines: list[str], eol: str, end: bool) -> None:
    check_units(read(hprim(*lines, eol=eol, end=end)))


BASE = hprim(H, P1, OBR, "C|1|L|Jean DUPONTEL au 0102030405|G", OBX, "C|1|L|x|G", P2, OBR, OBX,
             "L|1", eol="\r\n")


@FUZZ
@given(st.data())
def test_mutated_files(data: st.DataObject) -> None:
    raw = bytearray(BASE)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "delete", "truncate", "duplicate", "insert"]))
        if not raw:
            break
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del raw[i:i + data.draw(st.integers(1, 40))]
        elif op == "truncate":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.sampled_from([b"|", b"~", b"\\", b"^", b"&", b"\r", b"\n", b"A|"]))
        else:
            lines = bytes(raw).split(b"\r\n")
            j = data.draw(st.integers(0, len(lines) - 1))
            lines.insert(j, lines[j])
            raw = bytearray(b"\r\n".join(lines))
    stats = ReadStats()
    units = read(bytes(raw), stats)
    check_units(units)
    assert all(u.raw in raw for u in units if isinstance(u, Rejected))
    assert all(value not in " ".join(stats.notes) for value in PERSONAL)


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read: CRLF pairs get split across reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos:self.pos + min(self.step, n if n >= 0 else self.step)]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_reads_split_anywhere(records: list[PatientRecord], step: int) -> None:
    data = write(records[:3]) + b"junk\r"
    whole = read(data)
    stats = ReadStats()
    trickled = list(hs.read(Trickle(data, step), "t.hpr", stats))  # type: ignore[arg-type]
    assert [(u.seq, u.position.line, type(u)) for u in trickled] == [
        (u.seq, u.position.line, type(u)) for u in whole]
    assert stats.line_ending == "mixed"  # CRLF, then the junk line's CR


def test_empty_and_junk_only_files() -> None:
    assert read(b"") == [] and read(b"\r\n\r\n") == []
    (u,) = read(b"not hprim at all\nsecond line")
    assert (u.seq, u.field, u.reason, u.raw) == (1, "record", "text outside any message",
                                                 b"not hprim at all\nsecond line")


def test_speed_smoke() -> None:
    """2,000 results read in well under a second (the real benchmark lives in bench/)."""
    recs = list(SyntheticLab(3).records(200))
    data = write(recs)
    units = read(data)
    assert sum(u.record.result_count() for u in units) == sum(r.result_count() for r in recs)
