"""CSV import/export through mapping files: round trips, ugly inputs, mapping errors, fuzzing.

Every person here is synthetic (SyntheticLab, or invented names with invalid identifiers).
"""

from __future__ import annotations

import dataclasses
import io
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labvault.domain.records import (
    Comment,
    Order,
    Patient,
    PatientRecord,
    Result,
    ResultStatus,
    Sex,
)
from labvault.errors import ConfigurationError
from labvault.ingest import csv_rows
from labvault.ingest.base import Parsed, ReadStats, Rejected, sha256
from labvault.ingest.content import canonical_bytes, record_content
from labvault.ingest.csv_mapping import CsvMapping, flat_mapping, load_mapping, parse_mapping
from labvault.ingest.csv_rows import NOT_CARRIED, check_header, read, reader, sniff, write
from labvault.synthetic import SyntheticLab

LEGACY_TOML = """
name = "legacy"
encoding = "cp1252"
delimiter = ";"
header = true
line_ending = "CRLF"
date_format = ["%d/%m/%Y", "%d/%m/%y"]
datetime_format = ["%d/%m/%Y %H:%M", "%d/%m/%Y"]
decimal_comma = true
comment_separator = "|"

[fields]
patient.source_id = "IPP"
patient.last_name = "NOM"
patient.first_names = "PRENOM"
patient.birth_date = "DDN"
patient.sex = { column = "SEXE", values = { "1" = "M", "2" = "F", "H" = "M" } }
patient.nir = "NIR"
order.lab_finess = { const = "750000001" }
order.lab_file_number = "DOSSIER"
order.sampled_at = "PRELEVEMENT"
result.code_system = { const = "LN" }
result.code = "CODE"
result.label = "LIBELLE"
result.value = "RESULTAT"
result.unit = "UNITE"
result.reference_range = "NORMES"
result.comment = "COMMENTAIRE"
"""
HEADER = "IPP;NOM;PRENOM;DDN;SEXE;NIR;DOSSIER;PRELEVEMENT;CODE;LIBELLE;RESULTAT;UNITE;NORMES;COMMENTAIRE"
ROW_A1 = ("P001;Lefèvre;Hélène;03/02/1971;2;2 71 02 75 123 456 78;D1;05/03/2024 08:30;718-7;Hémoglobine;"
          "12,5;g/dL;12,0-16,0;")
ROW_A2 = ('P001;Lefèvre;Hélène;03/02/1971;2;2 71 02 75 123 456 78;D1;05/03/2024 08:30;2951-2;Sodium;140;'
          'mmol/L;136-145;"Contrôle; à refaire\r\nle ""lendemain"""')
ROW_B1 = "P002;Dupré;Jérôme;17/08/45;H;;D2;01/07/2024;2823-3;Potassium;4,1;mmol/L;;"
ROW_C1 = "P003;Œillet;Zoé;29/02/2000;1;;D3;01/07/2024 10:00;2160-0;Créatinine;8,2;mg/L;7,0-12,0;Vu"


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> CsvMapping:
    path = tmp_path_factory.mktemp("mapping") / "legacy.toml"
    path.write_text(LEGACY_TOML, encoding="utf-8")
    return load_mapping(path)


def legacy_file(*rows: str, end: str = "\r\n", encoding: str = "cp1252") -> bytes:
    return end.join([HEADER, *rows]).encode(encoding)


def read_all(data: bytes, mapping: CsvMapping | None = None, stats: ReadStats | None = None
             ) -> list[Parsed | Rejected]:
    read_fn = reader(mapping) if mapping else read
    units = list(read_fn(io.BytesIO(data), "dir/export.csv", stats))
    assert [u.seq for u in units] == list(range(1, len(units) + 1))
    return units


def split_orders(records: list[PatientRecord]) -> list[PatientRecord]:
    """A CSV unit is one patient and one order: the records as the reader returns them."""
    return [PatientRecord(r.patient, (o,) if o else ()) for r in records for o in (r.orders or (None,))]


def assert_round_trip(records: list[PatientRecord], units: list[Parsed | Rejected],
                      omit: frozenset[str] = NOT_CARRIED) -> None:
    expected = split_orders(records)
    assert len(units) == len(expected)
    for unit, original in zip(units, expected, strict=True):
        assert isinstance(unit, Parsed), (unit.field, unit.reason)
        assert record_content(unit.record, omit) == record_content(original, omit)
        assert unit.source_patient_id == str(original.patient.id)


# ---------------------------------------------------------------------------- round trips


def test_round_trip_flat_layout() -> None:
    records = list(SyntheticLab(7).records(60))
    out = io.BytesIO()
    write(records, out)
    data = out.getvalue()
    stats = ReadStats()
    units = read_all(data, stats=stats)
    assert_round_trip(records, units)
    assert NOT_CARRIED == frozenset() == flat_mapping().not_carried
    assert stats.encoding == "utf-8" and stats.line_ending == "CRLF"
    assert stats.segments["header"] == 1
    assert stats.segments["row"] == sum(max(1, len(o.results)) for r in records for o in r.orders)
    # positions: physical lines, quoted line breaks (multi-comment cells) counted
    assert units[0].position.line == 2 and units[0].position.file == "export.csv"
    lines = [u.position.line for u in units]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    assert data.startswith(b"patient_id,last_name,birth_name,first_names,birth_date,sex,")


def test_units_are_contiguous_raw_bytes() -> None:
    records = list(SyntheticLab(8).records(5))
    out = io.BytesIO()
    write(records, out, line_ending="LF")
    data = out.getvalue()
    offset = data.index(b"\n") + 1  # the header is framing
    ends = [i + 1 for i, byte in enumerate(data) if byte == 10]
    for unit in read_all(data):
        assert isinstance(unit, Parsed)
        assert data.count(b"\n", 0, offset) + 1 == unit.position.line
        # the unit's digest is that of the bytes from its first row up to the next unit
        offset = next(e for e in ends if e > offset and sha256(data[offset:e]) == unit.source_sha256)
    assert offset == len(data)


def _encodable(records: list[PatientRecord], encoding: str) -> list[PatientRecord]:
    def ok(r: PatientRecord) -> bool:
        try:
            canonical_bytes(record_content(r)).decode().encode(encoding)
        except UnicodeEncodeError:
            return False
        return True

    return [r for r in records if ok(r)]


@pytest.mark.parametrize(("encoding", "delimiter", "line_ending", "decimal_comma"), [
    ("utf-8-sig", ",", "CRLF", False),
    ("cp1252", ";", "CRLF", True),
    ("iso-8859-1", "\t", "LF", False),
    ("utf-8", "|", "CR", True),
])
def test_round_trip_variants(encoding: str, delimiter: str, line_ending: str, decimal_comma: bool) -> None:
    records = _encodable(list(SyntheticLab(11).records(25)), encoding)
    assert len(records) > 15
    out = io.BytesIO()
    write(records, out, encoding=encoding, delimiter=delimiter, line_ending=line_ending,
          decimal_comma=decimal_comma)
    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    if delimiter != ",":
        assert bool(re.search(rb"\d,\d", data)) == decimal_comma
    variant = dataclasses.replace(flat_mapping(), encoding=encoding, delimiter=delimiter,
                                  decimal_comma=decimal_comma)
    stats = ReadStats()
    units = read_all(data, variant, stats)
    assert_round_trip(records, units)
    assert stats.line_ending == line_ending
    assert stats.encoding == encoding


def test_cr_line_ends_across_read_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    records = list(SyntheticLab(12).records(20))
    out = io.BytesIO()
    write(records, out, line_ending="CR")
    assert b"\r\n" not in out.getvalue() and out.getvalue().count(b"\r") > 100
    monkeypatch.setattr(csv_rows, "MAX_LINE_BYTES", 2048)  # many CR lines per read chunk
    assert len(out.getvalue()) > 20 * 2048
    assert_round_trip(records, read_all(out.getvalue()))


def test_bom_file_read_with_the_default_utf8_mapping() -> None:
    records = list(SyntheticLab(3).records(4))
    out = io.BytesIO()
    write(records, out, encoding="utf-8-sig")
    stats = ReadStats()
    assert sniff(out.getvalue())
    assert_round_trip(records, read_all(out.getvalue(), stats=stats))
    assert stats.encoding == "utf-8-sig"


def test_patient_without_orders_and_order_without_results_round_trip() -> None:
    lab = SyntheticLab(5)
    p1, p2 = lab.patient(), lab.patient()
    when = datetime(2024, 3, 5, 7, 30, tzinfo=UTC)
    order = Order(lab_finess="750000001", sampled_at=when, lab_file_number="F1")
    records = [PatientRecord(p1), PatientRecord(p2, (order,))]
    out = io.BytesIO()
    write(records, out)
    assert out.getvalue().count(b"\r\n") == 3  # header + one row each
    units = read_all(out.getvalue())
    assert_round_trip(records, units)
    assert units[0].record.orders == () and units[1].record.orders[0].results == ()


def test_several_comments_and_quoting_round_trip() -> None:
    lab = SyntheticLab(6)
    result = Result("LN", "718-7", 'Hémoglobine, "totale"', "12.5", "g/dL",
                    comments=(Comment("premier; avec point-virgule"), Comment('second "cité", virgule')))
    order = Order("750000001", lab_file_number="F9", results=(result,),
                  comments=(Comment("À jeun"), Comment("Prélèvement difficile")))
    records = [PatientRecord(lab.patient(), (order,))]
    out = io.BytesIO()
    write(records, out, delimiter=";")
    variant = dataclasses.replace(flat_mapping(), delimiter=";")
    units = read_all(out.getvalue(), variant)
    assert_round_trip(records, units)
    assert units[0].position.line == 2


def test_headerless_mapping_round_trip() -> None:
    mapping = parse_mapping({
        "header": False, "delimiter": "|", "column_count": 8, "date_format": "%d%m%Y",
        "fields": {"patient": {"last_name": 1, "first_names": 2, "birth_date": 3,
                               "sex": {"column": 4, "values": {"1": "M", "2": "F"}}},
                   "order": {"lab_finess": {"const": "750000001"}, "lab_file_number": 5},
                   "result": {"code_system": {"const": "LN"}, "code": 6, "value": 8}}})
    patient = Patient("Martinez", "Léa", date(1990, 4, 1), Sex.FEMALE)
    order = Order("750000001", lab_file_number="F1",
                  results=(Result("LN", "718-7", "", "13.1"), Result("LN", "777-3", "", "250")))
    out = io.BytesIO()
    write([PatientRecord(patient, (order,))], out, mapping=mapping)
    assert out.getvalue().split(b"\r\n")[0] == "Martinez|Léa|01041990|2|F1|718-7||13.1".encode()
    units = read_all(out.getvalue(), mapping)
    assert len(units) == 1 and isinstance(units[0], Parsed)
    omit = mapping.not_carried
    assert {"patient.nir", "result.label", "order.sampled_at"} <= omit
    assert record_content(units[0].record, omit) == record_content(PatientRecord(patient, (order,)), omit)
    assert units[0].position.line == 1 and units[0].source_patient_id is None


# ---------------------------------------------------------------------------- ugly inputs


def test_legacy_cp1252_semicolons_decimal_commas_quoted_newline(legacy: CsvMapping) -> None:
    stats = ReadStats()
    units = read_all(legacy_file(ROW_A1, ROW_A2, ROW_B1, ROW_C1) + b"\r\n", legacy, stats)
    assert [type(u) for u in units] == [Parsed, Parsed, Parsed]
    a, b, c = (u.record for u in units if isinstance(u, Parsed))
    assert [u.position.line for u in units] == [2, 5, 6]  # ROW_A2 spans lines 3-4
    assert units[0].source_patient_id == "P001"
    pa = a.patient
    assert (pa.last_name, pa.first_names, pa.birth_date, pa.sex) == (
        "Lefèvre", "Hélène", date(1971, 2, 3), Sex.FEMALE)
    assert pa.nir == "271027512345678"  # spaces normalised, the key is checked later
    order = a.orders[0]
    assert order.lab_finess == "750000001" and order.lab_file_number == "D1"
    assert order.sampled_at == datetime(2024, 3, 5, 7, 30, tzinfo=UTC)  # 08:30 Paris, winter
    r1, r2 = order.results
    assert (r1.code_system, r1.code, r1.label, r1.value, r1.unit, r1.reference_range) == (
        "LN", "718-7", "Hémoglobine", "12.5", "g/dL", "12.0-16.0")
    assert r1.comments == () and r1.status is ResultStatus.FINAL and r1.abnormal_flag is None
    assert [cm.text for cm in r2.comments] == ['Contrôle; à refaire\nle "lendemain"']
    pb = b.patient
    assert pb.sex is Sex.MALE and pb.nir is None  # "H" mapped; empty optional NIR
    assert pb.birth_date == date(1945, 8, 17)  # two-digit year in the future: last century
    assert b.orders[0].sampled_at == datetime(2024, 6, 30, 22, 0, tzinfo=UTC)  # midnight Paris, summer
    assert b.orders[0].results[0].reference_range is None
    assert c.patient.last_name == "Œillet" and c.orders[0].results[0].comments[0].text == "Vu"
    assert stats.encoding == "cp1252" and stats.line_ending == "CRLF"
    assert stats.segments == {"header": 1, "row": 4}


def test_iso_8859_1_and_lf(legacy: CsvMapping) -> None:
    latin = dataclasses.replace(legacy, encoding="iso-8859-1")
    units = read_all(legacy_file(ROW_A1, end="\n", encoding="latin-1"), latin)
    assert isinstance(units[0], Parsed) and units[0].record.patient.first_names == "Hélène"


def test_truncated_last_row_rejects_its_whole_block(legacy: CsvMapping) -> None:
    cut = ROW_A2[:ROW_A2.index("Sodium")]  # fewer columns, no final line break
    data = legacy_file(ROW_B1, ROW_A1, cut)
    units = read_all(data, legacy)
    assert isinstance(units[0], Parsed)
    bad = units[1]
    assert isinstance(bad, Rejected) and len(units) == 2
    assert (bad.field, bad.reason) == ("record", "truncated: the last row lacks columns and its line break")
    assert bad.position.line == 4 and bad.position.segment == "exam block from line 3"
    assert bad.raw == (ROW_A1 + "\r\n" + cut).encode("cp1252")


def test_truncated_inside_a_quoted_field(legacy: CsvMapping) -> None:
    cut = ROW_A2[:ROW_A2.index("refaire")]
    units = read_all(legacy_file(ROW_A1, cut) + b"\r\n", legacy)
    assert len(units) == 1 and isinstance(units[0], Rejected)
    assert units[0].reason == "truncated: unclosed quoted field at the end of the file"
    assert units[0].position.line == 3


def test_unknown_date_format_names_field_and_column(legacy: CsvMapping) -> None:
    bad_row = ROW_A2.replace("03/02/1971", "1971-02-03")
    units = read_all(legacy_file(ROW_B1, ROW_A1, bad_row, ROW_C1), legacy)
    assert [type(u) for u in units] == [Parsed, Rejected, Parsed]
    rej = units[1]
    assert isinstance(rej, Rejected)
    assert rej.field == "patient.birth_date"
    assert rej.reason == "does not match the date format (column 'DDN')"
    assert rej.position.line == 4 and rej.position.segment == "exam block from line 3"
    assert rej.raw.count(b"\r\n") == 3  # both rows of the block (and the quoted line break)
    assert units[2].position.line == 6


def test_unknown_sex_code(legacy: CsvMapping) -> None:
    units = read_all(legacy_file(ROW_A1.replace(";2;2 71", ";9;2 71"), ROW_C1), legacy)
    rej = units[0]
    assert isinstance(rej, Rejected) and isinstance(units[1], Parsed)
    assert (rej.field, rej.reason) == ("patient.sex", "unknown sex code (column 'SEXE')")
    assert rej.position.line == 2 and rej.position.segment is None


def test_domain_code_accepted_beside_the_value_map(legacy: CsvMapping) -> None:
    units = read_all(legacy_file(ROW_A1.replace(";2;2 71", ";f;2 71")), legacy)
    assert isinstance(units[0], Parsed) and units[0].record.patient.sex is Sex.FEMALE


def test_wrong_column_count_and_junk_rows(legacy: CsvMapping) -> None:
    extra = ROW_C1 + ";surplus"
    units = read_all(legacy_file(ROW_A1, "ceci n'est pas une ligne", ROW_B1, extra, ""), legacy)
    assert [type(u) for u in units] == [Parsed, Rejected, Parsed, Rejected]
    assert [(u.field, u.reason) for u in units if isinstance(u, Rejected)] == [
        ("record", "wrong number of columns")] * 2
    assert [u.position.line for u in units] == [2, 3, 4, 5]


def test_missing_required_value_and_differing_rows(legacy: CsvMapping) -> None:
    no_value = ROW_B1.replace("4,1", "")
    other_name = ROW_A2.replace("Hélène", "Héloïse")
    units = read_all(legacy_file(no_value, ROW_A1, other_name), legacy)
    assert [(u.field, u.reason, u.position.line) for u in units if isinstance(u, Rejected)] == [
        ("result.value", "required value missing (column 'RESULTAT')", 2),
        ("patient.first_names", "differs between rows of one exam (column 'PRENOM')", 4)]


def test_empty_repeated_cells_are_not_a_disagreement(legacy: CsvMapping) -> None:
    sparse = ";;;;;;D1;;2951-2;Sodium;140;mmol/L;136-145;"
    units = read_all(legacy_file(ROW_A1, sparse.replace(";;;;;;D1", "P001;;;;;;D1")), legacy)
    assert len(units) == 1 and isinstance(units[0], Parsed)
    assert len(units[0].record.orders[0].results) == 2


def test_blank_rows_belong_to_the_block_before(legacy: CsvMapping) -> None:
    data = legacy_file("", ROW_A1, ";;;;;;;;;;;;;", "", ROW_C1, "")
    stats = ReadStats()
    units = read_all(data, legacy, stats)
    assert [type(u) for u in units] == [Parsed, Parsed]
    assert [u.position.line for u in units] == [3, 6]
    assert stats.segments["blank"] == 3


def test_invalid_encoding_bytes(legacy: CsvMapping) -> None:
    utf8 = dataclasses.replace(legacy, encoding="utf-8")
    units = read_all(legacy_file(ROW_A1, ROW_C1, encoding="cp1252"), utf8)
    assert all(isinstance(u, Rejected) for u in units) and len(units) == 2
    assert units[0].reason == "text not valid in the declared encoding utf-8"
    assert units[0].field == "record"


def test_block_too_large_is_rejected_in_chunks(legacy: CsvMapping, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_rows, "MAX_BLOCK_ROWS", 3)
    units = read_all(legacy_file(*[ROW_A1] * 7, ROW_C1), legacy)
    assert [type(u) for u in units] == [Rejected, Rejected, Rejected, Parsed]
    assert units[0].reason.startswith("block too large")
    assert [u.position.line for u in units] == [2, 5, 8, 9]


def test_required_column_missing_from_header(legacy: CsvMapping) -> None:
    data = legacy_file(ROW_A1, ROW_C1).replace(b"NOM;", b"NOM_USAGE;", 1)
    with pytest.raises(ConfigurationError, match=r"required column 'NOM' \(patient.last_name\)"):
        check_header(legacy, data[:4096])
    check_header(legacy, legacy_file(ROW_A1))  # a matching header passes
    stats = ReadStats()
    units = read_all(data, legacy, stats)
    assert [(type(u), u.field, u.reason) for u in units] == [  # type: ignore[union-attr]
        (Rejected, "patient.last_name", "required column 'NOM' is missing from the header")] * 2
    assert any("missing from the header" in n for n in stats.notes)


def test_optional_column_absent_and_case_insensitive_header(legacy: CsvMapping) -> None:
    header = HEADER.replace(";COMMENTAIRE", "").replace("LIBELLE", "Libelle")
    row = ROW_C1.rsplit(";", 1)[0]
    stats = ReadStats()
    units = list(reader(legacy)(io.BytesIO(f"{header}\r\n{row}\r\n".encode("cp1252")), "x", stats))
    assert isinstance(units[0], Parsed)
    assert units[0].record.orders[0].results[0].label == "Créatinine"
    assert "optional columns absent from the header: column 'COMMENTAIRE'" in stats.notes


def test_writer_reverses_the_value_map_and_decimal_comma(legacy: CsvMapping) -> None:
    units = read_all(legacy_file(ROW_A1, ROW_A2, ROW_B1), legacy)
    records = [u.record for u in units if isinstance(u, Parsed)]
    out = io.BytesIO()
    write(records, out, mapping=legacy)
    lines = out.getvalue().decode("cp1252").split("\r\n")
    assert lines[0] == HEADER
    assert not lines[1].startswith("P001")  # records hold labvault ids, written as the source id
    assert ";Lefèvre;Hélène;03/02/1971;2;271027512345678;D1;05/03/2024 08:30;718-7;" in lines[1]
    assert ";12,5;g/dL;12,0-16,0;" in lines[1]
    again = read_all(out.getvalue(), legacy)
    for before, after in zip(records, again, strict=True):
        assert isinstance(after, Parsed)
        assert record_content(after.record) == record_content(before)


def test_writer_refuses_unencodable_text_unless_told() -> None:
    lab = SyntheticLab(1)
    order = Order("750000001", results=(Result("LN", "2106-3", "β-hCG", "Positif"),))
    record = PatientRecord(lab.patient(), (order,))
    with pytest.raises(UnicodeEncodeError):
        write([record], io.BytesIO(), encoding="cp1252")
    out = io.BytesIO()
    write([record], out, encoding="cp1252", errors="replace")
    assert b"?-hCG" in out.getvalue()


# ---------------------------------------------------------------------------- mappings


def _load(tmp_path: Path, text: str) -> CsvMapping:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(path)


@pytest.mark.parametrize(("change", "message"), [
    (("patient.last_name = \"NOM\"", "patient.lastname = \"NOM\""),
     r"fields\.patient\.lastname: unknown domain field"),
    (("patient.nir = \"NIR\"", "patient.nir = \"NIR\"\npatient.blood_group = \"GS\""),
     r"fields\.patient\.blood_group: unknown domain field"),
    (("\"750000001\" }", "\"750000001\", colour = \"red\" }"),
     r"fields\.order\.lab_finess: unknown option 'colour'"),
    (("\"1\" = \"M\"", "\"1\" = \"X\""), r"fields\.patient\.sex\.values"),
    (("encoding = \"cp1252\"", "encoding = \"ebcdic\""), "encoding must be one of"),
    (("delimiter = \";\"", "delimiter = \";;\""), "delimiter must be one character"),
    (("name = \"legacy\"", "name = \"legacy\"\ndelimeter = \",\""), "unknown key 'delimeter'"),
    (("patient.first_names = \"PRENOM\"\n", ""), r"fields\.patient\.first_names: required field not mapped"),
    (("result.code = \"CODE\"\n", ""), r"fields\.result\.code: required field not mapped"),
    (("order.lab_finess = { const = \"750000001\" }\n", ""), r"fields\.order\.lab_finess: required field"),
    (("date_format = [", "date_format = [\"nope\", "), "date_format: expected a strptime pattern"),
    (("patient.nir = \"NIR\"", "patient.nir = 6"), "column positions .* need header = false"),
    (("decimal_comma = true", "decimal_comma = \"yes\""), "decimal_comma: expected true or false"),
    (("patient.nir = \"NIR\"", "patient.nir = { column = \"NIR\", format = \"%d\" }"),
     "format is only for date and datetime fields"),
    (("header = true", "header = true\ntimezone = \"America/Cayenne\""), None),
    (("header = true", "header = true\ntimezone = \"Mars/Olympus\""), "timezone: unknown time zone"),
    (("header = true", "header = true\n[[oops"), "not valid TOML"),
])
def test_mapping_errors_name_the_key(tmp_path: Path, change: tuple[str, str], message: str | None) -> None:
    text = LEGACY_TOML.replace(*change)
    if message is None:
        _load(tmp_path, text)
        return
    assert text != LEGACY_TOML
    with pytest.raises(ConfigurationError, match=message) as info:
        _load(tmp_path, text)
    assert "m.toml" in str(info.value)


def test_mapping_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_mapping(tmp_path / "absent.toml")


def test_mapping_quoted_keys_and_constants(tmp_path: Path) -> None:
    mapping = _load(tmp_path, """
[fields]
"patient.last_name" = "N"
"patient.first_names" = "P"
"patient.birth_date" = "D"
"patient.sex" = { const = "U" }
""")
    assert [s.field for s in mapping.fields][-1] == "patient.sex"
    units = read_all(b"N,P,D\nDoe,Jo,2001-02-03\n", mapping)
    assert isinstance(units[0], Parsed) and units[0].record.patient.sex is Sex.UNKNOWN
    assert units[0].record.orders == ()
    with pytest.raises(ConfigurationError, match=r"fields\.patient\.sex\.const"):
        _load(tmp_path, '[fields]\npatient.last_name = "N"\npatient.first_names = "P"\n'
                        'patient.birth_date = "D"\npatient.sex = { const = "Z" }\n')


# ---------------------------------------------------------------------------- sniff


def test_sniff() -> None:
    out = io.BytesIO()
    write(SyntheticLab(2).records(2), out)
    assert sniff(out.getvalue()[:4096])
    assert sniff(b"patient_id,last_name,birth_name,first_names,birth_date,sex\r\n")
    for head in (
        b"",
        HEADER.encode(),
        b"H|^~\\&|RESULTS.HPR||LAB||ORU|||DOC||P|H2.2|202401010000\r",
        b"MSH|^~\\&|LAB|FAC|EHR|FAC|20240101||ORU^R01|1|P|2.5\r",
        b'{"resourceType": "Bundle", "type": "collection"}',
        b"P0001\r\nDUPONT\r\nMARIE\r\n\r\n\r\n75011 PARIS\r\n01/01/1970\r\n",
        b"patient_id;last_name;birth_name;first_names;birth_date;sex\r\n",
    ):
        assert not sniff(head), head


# ---------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def fixture_file() -> tuple[bytes, list[str]]:
    records = list(SyntheticLab(21, results_per_patient=4).records(6))
    out = io.BytesIO()
    write(records, out)
    secrets = [r.patient.last_name for r in records] + [r.patient.nir for r in records if r.patient.nir]
    return out.getvalue(), secrets


def check_units(data: bytes, secrets: list[str], mapping: CsvMapping | None = None) -> None:
    units = read_all(data, mapping)
    for unit in units:
        assert isinstance(unit, Parsed | Rejected)
        if isinstance(unit, Rejected):
            assert unit.field and unit.reason and unit.raw
            for secret in secrets:
                assert secret not in unit.reason and secret not in unit.field
                assert secret not in str(unit.position)


SETTINGS = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    check_units(data, [])
    check_units(data, [], dataclasses.replace(flat_mapping(), encoding="cp1252", delimiter=";"))


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_after_a_valid_header(legacy: CsvMapping, data: bytes) -> None:
    check_units(HEADER.encode() + b"\r\n" + data, [], legacy)


@SETTINGS
@given(st.data())
def test_mutated_files_never_raise(fixture_file: tuple[bytes, list[str]], data: st.DataObject) -> None:
    original, secrets = fixture_file
    buf = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "delete", "truncate", "duplicate", "insert"]))
        at = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if kind == "flip" and buf:
            buf[at] = data.draw(st.sampled_from([0, 10, 13, 34, 44, 59, 0xE9, 0xFF, ord("x")]))
        elif kind == "delete":
            del buf[at:at + data.draw(st.integers(1, 80))]
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=20))
        else:
            lines = bytes(buf).split(b"\r\n")
            i = data.draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            buf = bytearray(b"\r\n".join(lines))
    check_units(bytes(buf), secrets)
