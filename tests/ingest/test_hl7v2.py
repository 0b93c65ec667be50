"""HL7 v2 ORU^R01 reader and writer: round trips, ugly inputs, fuzzing, sniffing."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labvault.domain.records import (
    AbnormalFlag,
    Comment,
    IdentityStatus,
    InsOid,
    PatientRecord,
    ResultStatus,
    Sex,
)
from labvault.ingest import hl7v2
from labvault.ingest.base import Parsed, ReadStats, Rejected
from labvault.ingest.content import record_content
from labvault.synthetic import SyntheticLab

FIXED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def units_of(data: bytes, stats: ReadStats | None = None, name: str = "lab.hl7") -> list:
    return list(hl7v2.read(io.BytesIO(data), name, stats))


def written(records: list[PatientRecord], **options) -> bytes:
    out = io.BytesIO()
    hl7v2.write(records, out, timestamp=FIXED, **options)
    return out.getvalue()


def per_order(records: list[PatientRecord]) -> list[PatientRecord]:
    """What the reader gives back: one record per order (one message per order)."""
    return [PatientRecord(patient=r.patient, orders=(o,) if o else ())
            for r in records for o in (r.orders or (None,))]


def same_content(units: list, records: list[PatientRecord]) -> None:
    expected = per_order(records)
    assert len(units) == len(expected)
    for unit, record in zip(units, expected, strict=True):
        assert isinstance(unit, Parsed), (unit.field, unit.reason)
        assert (record_content(unit.record, hl7v2.NOT_CARRIED)
                == record_content(record, hl7v2.NOT_CARRIED))


@pytest.fixture(scope="module")
def records() -> list[PatientRecord]:
    lab = SyntheticLab(11, results_per_patient=6)
    recs = list(lab.records(40))
    recs += list(SyntheticLab(12, results_per_patient=0.4).records(10))  # some without orders
    assert any(not r.orders for r in recs) and any(len(r.orders) > 2 for r in recs)
    return recs


# ---------------------------------------------------------------- round trips


VARIANTS = [
    {},
    {"encoding": "iso-8859-1", "terminator": b"\r\n"},
    {"encoding": "cp1252", "framing": "mllp", "version": "2.3"},
    {"framing": "mllp", "batch": True, "bom": True, "terminator": b"\n"},
    {"prescriber_segment": "prt", "national_ps_ids": True, "version": "2.4"},
    {"version": "2.3.1", "batch": True, "sending_facility_finess": "750000001"},
    {"version": "2.5", "encoding": "iso-8859-1", "framing": "mllp", "batch": True},
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
                         or "default")
def test_round_trip(records: list[PatientRecord], options: dict) -> None:
    stats = ReadStats()
    units = units_of(written(records, **options), stats)
    same_content(units, records)
    assert [u.seq for u in units] == list(range(1, len(units) + 1))
    assert all(u.source_patient_id for u in units)
    assert stats.version == options.get("version", "2.5.1")
    assert stats.line_ending == {b"\r": "CR", b"\n": "LF", b"\r\n": "CRLF"}[
        options.get("terminator", b"\r")]
    assert stats.segments["MSH"] == len(units) == stats.segments["PID"]
    assert stats.segments["OBX"] == sum(r.result_count() for r in records)
    assert stats.encoding in {"utf-8": {"utf-8"}, "iso-8859-1": {"iso-8859-1"},
                              "cp1252": {"cp1252", "iso-8859-1"}}[options.get("encoding", "utf-8")]
    if options.get("framing") == "mllp":
        assert "MLLP framing" in stats.notes
    if options.get("batch"):
        assert "batch envelope" in stats.notes and stats.segments["BTS"] == 1


def test_not_carried_is_empty() -> None:
    assert hl7v2.NOT_CARRIED == frozenset()


def test_small_chunks_give_the_same_units(records: list[PatientRecord],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = written(records[:8], framing="mllp", terminator=b"\r\n", batch=True)
    expected = [(u.seq, u.position, u.source_sha256) for u in units_of(data)]
    monkeypatch.setattr(hl7v2, "_CHUNK", 7)
    assert [(u.seq, u.position, u.source_sha256) for u in units_of(data)] == expected


def test_units_account_for_every_byte(records: list[PatientRecord]) -> None:
    data = b"junk before\r\n" + written(records[:5], terminator=b"\r\n")
    junk, *messages = re.split(rb"(?=MSH\|)", data)
    units = units_of(data)
    assert isinstance(units[0], Rejected) and units[0].raw == junk
    assert [u.source_sha256 for u in units[1:]] == [hl7v2.sha256(m) for m in messages]


# ---------------------------------------------------------------- writer


def test_writer_one_message_per_order_with_unique_control_ids(records: list[PatientRecord]
                                                             ) -> None:
    text = written(records).decode("utf-8")
    msh = [s for s in text.split("\r") if s.startswith("MSH|")]
    assert len(msh) == len(per_order(records))
    ids = [s.split("|")[9] for s in msh]
    assert len(set(ids)) == len(ids)
    assert all(s.split("|")[8] == "ORU^R01^ORU_R01" for s in msh)


def test_writer_escapes_delimiters_and_unencodable_characters(records: list[PatientRecord]
                                                              ) -> None:
    r = records[0]
    o = r.orders[0]
    text = "a|b^c~d\\e&f\ng\rh\tβ€\x85"
    res = replace(o.results[0], value="x|y", label="Label ^ ~ & \\")
    o2 = replace(o, comments=(Comment(text=text),), results=(res,))
    rec = PatientRecord(patient=replace(r.patient, last_name="O'Brien|Dupont"), orders=(o2,))
    for encoding in ("utf-8", "iso-8859-1", "cp1252"):
        data = written([rec], encoding=encoding)
        assert b"\\F\\" in data and b"\\.br\\" in data and b"\\X0D\\" in data
        if encoding != "utf-8":
            assert b"\\ZU03B2\\" in data
        [unit] = units_of(data)
        same_content([unit], [rec])


def test_writer_rejects_bad_options(records: list[PatientRecord]) -> None:
    for bad in ({"version": "2.6"}, {"framing": "tcp"}, {"encoding": "utf-16"},
                {"terminator": b"\r\r"}, {"prescriber_segment": "pv1"},
                {"bom": True, "encoding": "cp1252"}):
        with pytest.raises(ValueError):
            hl7v2.write(records[:1], io.BytesIO(), **bad)


# ---------------------------------------------------------------- ugly inputs

MSH = "MSH|^~\\&|LAB|690000001|||20240105120000||ORU^R01^ORU_R01|1|P|2.5.1"
PID = ("PID|1||4242^^^LAB^PI~279056912345678^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
       "~2 79 05 69 123 456 78^^^^NH||ZORGLUB^Zoé^^^^^D~FANTASIO^Zoé^Zoé Marie^^^^L||19790512|F"
       "|||1 rue des Essais^Bât B^Lyon^^69001^FRA^H~^^^^^^BDL^^69123"
       "||^PRN^PH^^^^^^^^^0601020304~^NET^Internet^zoe@example.org|||||||||||||||||||QUAL")
ORC = "ORC|RE||F123||||||||||||||||||^^^^^ASIP-SANTE-ET&1.2.250.1.71.4.2.2&ISO^FINEG^^^130000001"
OBR = ("OBR|1||F123|BIO^Bilan^L|||20240705083000|||||||||810001234567^SPIROU^Jean^^^^^^"
       "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^L^^^RPPS~012345678^SPIROU^Jean^^^^^^^^^^ADELI")
OBX = "OBX|1|NM|718-7^Hémoglobine^LN||13.5|g/dL|12.0-16.0|H|||F|||20240705100000+0000"
PERSONAL = ("ZORGLUB", "FANTASIO", "Zoé", "279056912345678", "0601020304", "zoe@example.org",
            "1 rue des Essais", "SPIROU")


def message(*segments: str, msh: str = MSH) -> str:
    return "\r".join((msh, *segments)) + "\r"


def test_french_message_mapping() -> None:
    text = message(PID, "PV1|1|O", ORC, OBR, "NTE|1|L|Patient à jeun", OBX,
                   "NTE|1|L|Contrôlé", "OBX|2|CE|56888-1^VIH^LN||NEG^Négatif^L||||||F",
                   "OBX|3|SN|1988-5^CRP^LN||<^5|mg/L||||||F",
                   "OBX|4|ED|PDF^Compte rendu^L||^AP^PDF^Base64^AAAA||||||F",
                   "OBX|5|NM|2951-2^Sodium^LOINC||140|mmol/L||ZZ|||R", "SPM|1", "ZFU|1|x")
    stats = ReadStats()
    [unit] = units_of(text.encode("utf-8"), stats)
    assert isinstance(unit, Parsed)
    assert unit.position.line == 1 and unit.position.segment == "message 1"
    assert unit.source_patient_id == "4242"
    p = unit.record.patient
    assert (p.last_name, p.first_names, p.birth_name) == ("ZORGLUB", "Zoé Marie", "FANTASIO")
    assert p.birth_date == date(1979, 5, 12) and p.sex is Sex.FEMALE
    assert p.nir == "279056912345678"
    assert p.ins is not None and p.ins.matricule == "279056912345678"
    assert p.ins.oid is InsOid.NIR and p.ins.status is IdentityStatus.QUALIFIED
    assert p.birth_place == "69123"
    assert p.address is not None
    assert (p.address.line1, p.address.line2, p.address.postal_code, p.address.city,
            p.address.country) == ("1 rue des Essais", "Bât B", "69001", "Lyon", "FR")
    assert (p.phone, p.email) == ("0601020304", "zoe@example.org")
    [order] = unit.record.orders
    assert order.lab_finess == "130000001" and order.lab_file_number == "F123"
    assert order.sampled_at == datetime(2024, 7, 5, 6, 30, tzinfo=UTC)  # Paris summer time
    assert order.requested_at is None
    assert order.prescriber is not None
    assert (order.prescriber.last_name, order.prescriber.first_name, order.prescriber.rpps,
            order.prescriber.adeli) == ("SPIROU", "Jean", "10001234567", "012345678")
    assert [c.text for c in order.comments] == ["Patient à jeun"]
    hb, hiv, crp, na = order.results
    assert (hb.code_system, hb.code, hb.label, hb.value, hb.unit, hb.reference_range) == (
        "LN", "718-7", "Hémoglobine", "13.5", "g/dL", "12.0-16.0")
    assert hb.abnormal_flag is AbnormalFlag.HIGH and hb.status is ResultStatus.FINAL
    assert hb.observed_at == datetime(2024, 7, 5, 10, 0, tzinfo=UTC)  # offset honoured
    assert [c.text for c in hb.comments] == ["Contrôlé"]
    assert (hiv.value, crp.value, crp.unit) == ("Négatif", "<5", "mg/L")
    assert na.code_system == "LN" and na.abnormal_flag is None
    assert na.status is ResultStatus.PRELIMINARY
    reasons = {(a.field, a.reason) for a in unit.anomalies}
    assert ("result", "encapsulated data or reference not imported (OBX-2)") in reasons
    assert ("result.abnormal_flag", "unknown abnormal flag ignored (OBX-8)") in reasons
    assert stats.segments["SPM"] == 1 and stats.segments["ZFU"] == 1
    assert stats.encoding == "utf-8" and stats.line_ending == "CR"


def test_prescriber_in_prt_and_adeli_national_id() -> None:
    obr = "OBR|1||F9|BIO^Bilan^L|||20240105083000"
    prt = "PRT||AD||OP^Ordering Provider^HL70912|0123456789^GASTON^Léon^^^^^^^^^^ADELI"
    [unit] = units_of(message(PID, ORC, obr, prt, OBX).encode())
    prescriber = unit.record.orders[0].prescriber
    assert (prescriber.last_name, prescriber.rpps, prescriber.adeli) == (
        "GASTON", None, "123456789")


def test_identity_status_and_authority_checks() -> None:
    bad_oid = PID.replace("1.2.250.1.213.1.4.8", "1.2.3.4")
    [u] = units_of(message(bad_oid, ORC, OBR, OBX).encode())
    assert isinstance(u, Rejected)
    assert (u.field, u.reason) == ("patient.ins", "unknown assigning authority oid (PID-3)")
    assert u.position.segment == "message 1, PID at line 2"
    [u] = units_of(message(PID.replace("|QUAL", "|MAYBE"), ORC, OBR, OBX).encode())
    assert (u.field, u.reason) == ("patient.ins", "unknown identity status (PID-32)")
    [u] = units_of(message(PID.replace("|QUAL", "|"), ORC, OBR, OBX).encode())
    assert u.record.patient.ins.status is IdentityStatus.PROVISIONAL
    assert any(a.field == "patient.ins.status" for a in u.anomalies)


def test_iso_8859_1_and_cp1252_without_msh18() -> None:
    text = message(PID, ORC, OBR, "NTE|1|L|Prélèvement à l’accueil", OBX)
    for encoding, label in (("cp1252", "cp1252"), ("iso-8859-1", "iso-8859-1")):
        data = text.replace("’", "'").encode(encoding) if encoding == "iso-8859-1" \
            else text.encode(encoding)
        stats = ReadStats()
        [u] = units_of(data, stats)
        assert u.record.patient.first_names == "Zoé Marie"
        assert u.record.orders[0].comments[0].text.startswith("Prélèvement à l")
        assert stats.encoding == label


def test_msh18_declared_charset() -> None:
    latin = message(PID, ORC, OBR, OBX, msh=MSH + "|||||FRA|8859/1").encode("cp1252")
    [u] = units_of(latin)
    assert u.record.patient.last_name == "ZORGLUB" and not u.anomalies
    lying = message(PID, ORC, OBR, OBX, msh=MSH + "|||||FRA|UNICODE UTF-8").encode("latin-1")
    [u] = units_of(lying)
    assert u.record.orders[0].results[0].label == "Hémoglobine"
    assert ("MSH-18", "not valid UTF-8 as declared: read as CP1252") in {
        (a.field, a.reason) for a in u.anomalies}


@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_line_endings_and_bom(eol: str) -> None:
    text = message(PID, ORC, OBR, OBX).replace("\r", eol)
    stats = ReadStats()
    [u] = units_of(b"\xef\xbb\xbf" + text.encode(), stats)
    assert isinstance(u, Parsed) and u.record.orders[0].results[0].value == "13.5"
    assert stats.line_ending == {"\r": "CR", "\n": "LF", "\r\n": "CRLF"}[eol]
    assert "byte order mark" in stats.notes and stats.encoding == "utf-8"


def test_escape_sequences_in_names_and_comments() -> None:
    pid = PID.replace("ZORGLUB^", "D\\T\\ZORG\\F\\LUB^")
    nte = "NTE|1|L|Ligne 1\\.br\\Ligne 2 \\E\\ \\X41\\ \\H\\gras\\N\\ \\S\\ \\R\\ \\ZU03B2\\ \\Q\\"
    [u] = units_of(message(pid, ORC, OBR, nte, OBX).encode())
    assert u.record.patient.last_name == "D&ZORG|LUB"
    assert u.record.orders[0].comments[0].text == "Ligne 1\nLigne 2 \\ A gras ^ ~ β \\Q\\"


def test_line_feed_typed_inside_a_comment_of_a_cr_message() -> None:
    text = message(PID, ORC, OBR, "NTE|1|L|Première ligne\nseconde ligne", OBX)
    [u] = units_of(text.encode())
    assert isinstance(u, Parsed)
    assert u.record.orders[0].comments[0].text == "Première ligne\nseconde ligne"
    assert [a.field for a in u.anomalies] == ["segment"]
    [u] = units_of(text.replace("\r", "\n").encode())  # an LF file: the line is not a segment
    assert isinstance(u, Rejected) and (u.field, u.reason) == ("segment", "malformed segment")
    assert u.position.segment == "message 1, segment at line 6"


def test_empty_optional_fields() -> None:
    pid = "PID|1||||MINIMAL^Alix||20000101"
    obx = "OBX|1|ST|X1^^||"
    [u] = units_of(message(pid, "OBR|1", obx, msh=MSH).encode())
    p = u.record.patient
    assert (p.last_name, p.first_names, p.birth_name, p.sex, p.nir, p.ins, p.address) == (
        "MINIMAL", "Alix", None, Sex.UNKNOWN, None, None, None)
    assert u.source_patient_id is None
    order = u.record.orders[0]
    assert order.lab_finess == "690000001"  # from MSH-4
    assert (order.sampled_at, order.prescriber, order.lab_file_number) == (None, None, None)
    r = order.results[0]
    assert (r.code_system, r.code, r.label, r.value, r.unit, r.reference_range, r.abnormal_flag,
            r.status, r.observed_at) == ("LOCAL", "X1", "", "", None, None, None,
                                         ResultStatus.FINAL, None)


def test_several_patients_in_one_message() -> None:
    pid2 = "PID|2||77^^^LAB^PI||SECOND^Patient||19500101|M"
    text = message(PID, ORC, OBR, OBX, pid2, "OBR|1||F2|||||", "OBX|1|NM|X^Y^L||1||||||F")
    data = text.encode()
    units = units_of(data)
    assert [(u.seq, u.position.line, u.position.segment) for u in units] == [
        (1, 1, "message 1, patient 1"), (2, 6, "message 1, patient 2")]
    assert units[0].source_patient_id == "4242" and units[1].source_patient_id == "77"
    assert units[1].record.patient.last_name == "SECOND"
    assert units[1].record.orders[0].lab_finess == "690000001"  # its own group has no ORC: MSH-4
    second = message(pid2, "OBR|1||F2|||||", "OBX|1|NM|X^Y^L||1||||||F").encode()
    assert units[1].source_sha256 == hl7v2.sha256(second)  # MSH copied, re-readable alone


def test_truncated_last_message() -> None:
    good = message(PID, ORC, OBR, OBX)
    cut = good + MSH + "\rPID|1||99^^^LAB^PI||CUT^Ca"
    units = units_of(cut.encode())
    assert [type(u) for u in units] == [Parsed, Rejected]
    assert (units[1].seq, units[1].position.line, units[1].position.segment) == (
        2, 6, "message 2")
    assert (units[1].field, units[1].reason) == (
        "record", "truncated: the file ends inside this message")
    assert units[1].raw == (MSH + "\rPID|1||99^^^LAB^PI||CUT^Ca").encode()
    # a complete OBX without its final CR is accepted; an OBX cut before OBX-11 is not
    [u] = units_of(good.rstrip("\r").encode())
    assert isinstance(u, Parsed)
    [u] = units_of(good.rstrip("\r")[:-30].encode())
    assert isinstance(u, Rejected) and u.reason.startswith("truncated")
    # an MLLP block without its end byte
    [u] = units_of(b"\x0b" + good.encode())
    assert isinstance(u, Rejected) and u.reason.startswith("truncated")
    [u] = units_of(b"\x0b" + good.encode() + b"\x1c\r")
    assert isinstance(u, Parsed)


def test_junk_before_first_message_and_after_batch() -> None:
    body = message(PID, ORC, OBR, OBX)
    data = ("Exported by LIS v3\r\n\r\nFHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + body + "BTS|1\rFTS|1\r"
            + "-- end of export --\r").encode()
    stats = ReadStats()
    units = units_of(data, stats)
    assert [(type(u), u.seq, u.position.line) for u in units] == [
        (Rejected, 1, 1), (Parsed, 2, 4), (Rejected, 3, 11)]
    assert units[0].raw == b"Exported by LIS v3\r\n\r\n"
    assert (units[0].field, units[0].reason) == ("record", "text outside any message")
    assert units[1].source_sha256 == hl7v2.sha256(
        b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + body.encode() + b"BTS|1\rFTS|1\r")
    assert units[2].raw == b"-- end of export --\r"
    assert stats.segments["junk"] == 2 and stats.segments["FHS"] == 1


def test_non_standard_but_consistent_delimiters(records: list[PatientRecord]) -> None:
    data = written(records[:6])
    assert not re.search(rb"[!{}`#]", data)
    odd = data.translate(bytes.maketrans(b"|^~\\&", b"!{}`#"))
    stats = ReadStats()
    same_content(units_of(odd, stats), records[:6])
    assert "non-standard delimiters" in stats.notes


@pytest.mark.parametrize(("header", "field"), [
    ("MSHX^~\\&X", "MSH-1"), ("MSH|^^\\&|", "MSH-2"), ("MSH|^|", "MSH-2"), ("MSH|a~\\&|", "MSH-2"),
])
def test_garbage_msh_header(header: str, field: str) -> None:
    data = (header + "LAB|690000001|||20240105||ORU^R01|1|P|2.5\r" + PID + "\r" + OBR + "\r"
            + OBX + "\r").encode()
    [u] = units_of(data)
    assert isinstance(u, Rejected) and u.field == field and u.raw == data


def test_unknown_birth_date_format() -> None:
    pid = PID.replace("|19790512|", "|12/05/1979|")
    [u] = units_of(message(pid, ORC, OBR, OBX).encode())
    assert isinstance(u, Rejected)
    assert (u.field, u.reason) == ("patient.birth_date", "not an HL7 date: expected YYYYMMDD (PID-7)")
    assert u.position.segment == "message 1, PID at line 2"


@pytest.mark.parametrize(("segments", "field", "reason"), [
    ((ORC, OBR, OBX), "PID", "message without PID segment"),
    ((OBR, PID, OBX), "PID", "order or result before the PID segment"),
    ((PID, OBX), "result", "OBX outside any order: no OBR before it"),
    ((PID, ORC, OBR, OBX.replace("|F|", "|Q|")), "result.status",
     "unknown result status (OBX-11)"),
    ((PID, ORC, OBR.replace("20240705083000", "2024-07-05"), OBX), "order.sampled_at",
     "not an HL7 date/time: expected YYYYMMDD[HHMM[SS]] (OBR-7)"),
    ((PID.replace("|F|", "|Z|"), ORC, OBR, OBX), "patient.sex", "unknown sex code (PID-8)"),
    ((PID, ORC, OBR, "this is not a segment", OBX), "segment", "malformed segment"),
    ((PID, "OBR|1", OBX), "order.lab_finess", "missing (ORC-21, MSH-4)"),
])
def test_rejections(segments: tuple[str, ...], field: str, reason: str) -> None:
    msh = MSH.replace("690000001", "LABO") if field == "order.lab_finess" else MSH
    [u] = units_of(message(*segments, msh=msh).encode())
    assert isinstance(u, Rejected) and (u.field, u.reason) == (field, reason)
    assert u.seq == 1 and u.position.line == 1


def test_message_type_other_than_oru() -> None:
    adt = MSH.replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01")
    units = units_of((message(PID, msh=adt) + message(PID, ORC, OBR, OBX)).encode())
    assert [(type(u), u.field if isinstance(u, Rejected) else None) for u in units] == [
        (Rejected, "MSH-9"), (Parsed, None)]


def test_mllp_file_with_several_messages() -> None:
    block = b"\x0b" + message(PID, ORC, OBR, OBX).encode() + b"\x1c\r"
    stats = ReadStats()
    units = units_of(block * 3, stats)
    assert [(u.seq, u.position.line) for u in units] == [(1, 1), (2, 6), (3, 11)]
    assert all(isinstance(u, Parsed) for u in units) and units[0].source_sha256 == hl7v2.sha256(
        block)
    assert "MLLP framing" in stats.notes


def test_insurance_segments() -> None:
    in1 = ("IN1|1|AMO^Assurance maladie obligatoire|751|||||0001|||||||01|||||||2",
           "IN1|2|AMC|88888888|Mutuelle Test" + "|" * 32 + "M123")
    [u] = units_of(message(PID, "PV1|1|O", *in1, ORC, OBR, OBX).encode())
    m, c = u.record.patient.mandatory_insurance, u.record.patient.complementary_insurance
    assert (m.scheme, m.fund, m.centre, m.beneficiary_rank) == ("01", "751", "0001", 2)
    assert (c.organisation, c.amc_number, c.member_id) == ("Mutuelle Test", "88888888", "M123")


def test_oversized_message_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hl7v2, "MAX_UNIT_BYTES", 1000)
    monkeypatch.setattr(hl7v2, "_CHUNK", 64)
    big = message(PID, ORC, OBR, *[OBX] * 20)
    units = units_of((big + message(PID, ORC, OBR, OBX)).encode())
    assert units[0].reason == "unit too large: no end within the size limit"
    assert isinstance(units[-1], Parsed)
    assert [u.seq for u in units] == list(range(1, len(units) + 1))


def test_validation_does_not_rely_on_assert() -> None:
    code = ("import io; from labvault.ingest import hl7v2; "
            "u = list(hl7v2.read(io.BytesIO(b'MSH|^^\\\\&|x\\rPID|1\\r'), 'f')); "
            "print(u[0].field)")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "MSH-2"


# ---------------------------------------------------------------- sniffing


@pytest.mark.parametrize("head", [
    MSH.encode(), b"\xef\xbb\xbf" + MSH.encode(), b"\x0b" + MSH.encode(),
    b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + MSH.encode(), b"junk line\r\n" + MSH.encode(),
    MSH.translate(str.maketrans("|^~\\&", "!$*%#")).encode(),
])
def test_sniff_recognises_hl7(head: bytes) -> None:
    assert hl7v2.sniff(head)


@pytest.mark.parametrize("head", [
    b"H|\\^&|||LAB^Laboratoire|||||||P|H2.2|20240105\rP|1|4242|||DUPONT^JEAN\r",
    b"4242\r\nDUPONT\r\nJEAN\r\n\r\n\r\n75011 PARIS\r\n01/02/1970\r\n",
    b'{"resourceType": "Bundle", "type": "collection"}',
    b'{"resourceType":"Patient"}\n{"resourceType":"Observation"}\n',
    b"<Bundle xmlns=\"http://hl7.org/fhir\">", b"nom;prenom;date_naissance;code;valeur\r\n",
    b"", b"MSH", b"MSH|", b"MSHELLO world",
])
def test_sniff_rejects_other_formats(head: bytes) -> None:
    assert not hl7v2.sniff(head)


# ---------------------------------------------------------------- fuzzing


def check_units(data: bytes, personal: tuple[str, ...]) -> None:
    units = units_of(data)
    assert [u.seq for u in units] == list(range(1, len(units) + 1))
    for u in units:
        assert isinstance(u, Parsed | Rejected)
        if isinstance(u, Rejected):
            shown = f"{u.field} {u.reason} {u.position}"
            assert u.raw
        else:
            shown = " ".join(f"{a.field} {a.reason} {a.position}" for a in u.anomalies)
        assert not any(value in shown for value in personal)


@pytest.fixture(scope="module")
def fuzz_base() -> tuple[bytes, tuple[str, ...]]:
    recs = list(SyntheticLab(5, results_per_patient=4).records(3))
    values: set[str] = set(PERSONAL)
    for r in recs:
        p = r.patient
        values |= {v for v in (p.last_name, p.first_names, p.birth_name, p.nir, p.phone, p.email)
                   if v and len(v) >= 4}
        if p.address:
            values |= {p.address.line1, p.address.city}
    data = written(recs) + message(PID, ORC, OBR, OBX).encode()
    return data, tuple(values)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    check_units(data, PERSONAL)
    check_units(b"MSH|^~\\&|" + data, PERSONAL)


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(
        [0x0B, 0x1C, 0x0D, 0x0A, ord("|"), ord("^"), ord("\\"), ord("~"), 0xE9, 0xFF])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=6))
def test_mutated_files_never_raise(fuzz_base: tuple[bytes, tuple[str, ...]],
                                   mutations: list[tuple[str, int, int]]) -> None:
    data, personal = fuzz_base
    buf = bytearray(data)
    for op, where, arg in mutations:
        if not buf:
            break
        i = where % len(buf)
        if op == "flip":
            buf[i] ^= arg
        elif op == "delete":
            del buf[i:i + arg]
        elif op == "truncate":
            del buf[i:]
        elif op == "insert":
            buf.insert(i, arg)
        else:
            lines = bytes(buf).split(b"\r")
            j = where % len(lines)
            buf = bytearray(b"\r".join([*lines[:j + 1], lines[j], *lines[j + 1:]]))
    check_units(bytes(buf), personal)
