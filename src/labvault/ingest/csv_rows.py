"""CSV exports of laboratory software, read and written through a mapping file (`csv_mapping`).

A CSV export is one row per result with the patient and order columns repeated. The mapping (a
TOML file) names the encoding (UTF-8 with or without BOM, CP1252, ISO-8859-1), the delimiter,
the quote character, whether there is a header row, the date patterns, the time zone of local
times (Europe/Paris by default), decimal commas, and which column holds which domain field.
`read` uses the default mapping ``mappings/labvault-flat.toml``, the layout `write` emits;
``reader(load_mapping(path))`` reads any other export. CRLF, LF and CR line ends, quoted fields
holding the delimiter, quotes (doubled) or line breaks, and a missing final line break are read.
The byte stream is split into physical lines and each line decoded on its own (rather than
through one `io.TextIOWrapper`), so a unit keeps its exact source bytes and a byte that is not
valid in the declared encoding rejects its block only; memory stays flat (blocks are bounded).

Units. A unit is a block of consecutive rows with the same patient key (``patient.source_id``,
else the NIR, else last name + birth date) and the same order key (``order.lab_file_number``,
else ``order.sampled_at``): one patient, one order and its results (one result per row whose
result cells are not all empty). ``Position.line`` is the physical line of the block's first
row (quoted line breaks counted). The header row is framing, not a unit; blank rows (every cell
empty) belong to the block before them, or to the framing before the first block.

Rejections. A bad row rejects its whole block, so a partial exam is never stored: ``field`` is
the domain field (``patient.birth_date``), the reason ends with the column (``"does not match
the date format (column 'DDN')"``) and ``Position.line`` is the bad row's line (``segment`` then
says where the block starts). Row-level faults use ``field="record"``: a wrong number of columns,
text not valid in the declared encoding, malformed CSV, a truncated last row (missing columns and
no final line break, or an unclosed quoted field). Cells of one block that disagree (another
birth date on a later row) are rejected; an empty repeated cell is not a disagreement. Blocks
over `MAX_BLOCK_ROWS` rows are rejected in chunks ("block too large"). A header lacking a
required column rejects every block naming that field; `check_header` raises
`ConfigurationError` for it up front. Optional columns absent from the header read as empty.

Writing. One row per result; an order without results is one row with empty result columns, a
patient without orders one row with empty order and result columns; constants are not written.
``patient.source_id`` is written as the patient's labvault id. Options override the mapping's
encoding (``errors`` for characters it cannot encode), delimiter, line ending, decimal comma.

Stats: the encoding (``utf-8-sig`` when a BOM is found), the rows' line ends, segments
``header``/``row``/``blank``, notes (mapping, delimiter, header columns missing).

Flat layout (header names, in order; the TOML file maps each to its domain field): patient_id
(source id), last_name, birth_name, first_names, birth_date (YYYY-MM-DD), sex (M/F/O/U),
birth_place, nir, ins_matricule, ins_oid, ins_status, address_line1, address_line2, postal_code,
city, country, phone, email, amo_scheme, amo_fund, amo_centre, amo_rank, amc_organisation,
amc_number, amc_member_id, lab_finess, lab_file_number, requested_at, sampled_at (ISO 8601 with
offset, written in Europe/Paris), prescriber_last_name, prescriber_first_name, prescriber_rpps,
prescriber_adeli, order_comment, code_system, code, label, value, unit, reference_range,
abnormal_flag, status, observed_at, result_comment. It carries every content field
(`NOT_CARRIED` is empty) but not: more than one order per unit (a patient's orders are separate
units), times below the second (or below the minute with a pattern without seconds), leading or
trailing spaces of a value, empty comments, a comment holding the comment separator (it is read
back as several comments), and with ``decimal_comma`` a domain value that is itself a comma-
decimal number (it is read back with a dot), the hour repeated when clocks go back when a
pattern has no offset (read as the first, summer-time one). A custom mapping carries what it
maps (`CsvMapping.not_carried`).
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from labvault.domain.normalize import normalize_nir
from labvault.domain.records import (
    Address,
    ComplementaryInsurance,
    IdentityStatus,
    Ins,
    MandatoryInsurance,
    Order,
    Patient,
    PatientRecord,
    Prescriber,
    Result,
    ResultStatus,
)
from labvault.errors import ConfigurationError, InvalidRecord
from labvault.ingest.base import (
    BOM,
    Parsed,
    Position,
    Reader,
    ReadStats,
    Rejected,
    Unit,
    line_ending_label,
    sha256,
    source_name,
)
from labvault.ingest.csv_mapping import (
    REQUIRED,
    CsvMapping,
    FieldSpec,
    flat_mapping,
    group_of,
    load_mapping,
)

NOT_CARRIED: frozenset[str] = frozenset()
MAX_BLOCK_ROWS = 2000
MAX_LINE_BYTES = 1 << 20
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_ERRORS = (InvalidRecord, ValueError, KeyError, IndexError, TypeError, OverflowError)
# Cells that do not make their group exist on their own (columns often filled on every row).
_NO_TRIGGER = frozenset({"patient.address.country", "patient.ins.oid", "patient.ins.status",
                         "patient.mandatory_insurance.beneficiary_rank", "result.code_system",
                         "result.status"})
_KEY_FIELDS = ("patient.source_id", "patient.nir", "patient.last_name", "patient.birth_date",
               "order.lab_file_number", "order.sampled_at")


@dataclass(slots=True)
class _Row:
    line: int  # physical line of the row's first line
    raw: bytes
    cells: list[str]
    ended: bool  # the row's last line ends with a line break
    error: tuple[str, str] | None = None


@dataclass(slots=True)
class _Block:
    rows: list[_Row]
    raw: list[bytes]
    overflow: bool = False


def _physical_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines with their ends (CRLF, LF or CR); a line over MAX_LINE_BYTES is cut (junk)."""
    carry = b""
    while piece := stream.readline(MAX_LINE_BYTES):
        more = len(piece) == MAX_LINE_BYTES and not piece.endswith(b"\n")
        piece, carry = carry + piece, b""
        crs = piece.count(b"\r")
        lines = [piece] if crs == 0 or (crs == 1 and piece.endswith(b"\r\n")) else _LINE.findall(piece)
        if more and crs and len(lines[-1]) < MAX_LINE_BYTES:  # CR line ends: the last may go on
            carry = lines.pop()
        yield from lines
    if carry:
        yield carry


def _rows(stream: BinaryIO, mapping: CsvMapping, stats: ReadStats) -> Iterator[_Row]:
    consumed: list[bytes] = []
    bad: list[bool] = [False]
    ends: Counter[bytes] = Counter()
    encoding = "utf-8" if mapping.encoding.startswith("utf-8") else mapping.encoding

    def lines() -> Iterator[str]:
        for number, raw in enumerate(_physical_lines(stream)):
            consumed.append(raw)
            if number == 0 and raw.startswith(BOM):
                if encoding == "utf-8":
                    stats.encoding, raw = "utf-8-sig", raw[3:]
                else:
                    stats.notes.append("UTF-8 byte order mark, but the mapping declares "
                                       + mapping.encoding)
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError:
                bad[0] = True
                yield raw.decode(encoding, "replace")

    parser = csv.reader(lines(), delimiter=mapping.delimiter, quotechar=mapping.quote_char,
                        doublequote=True, strict=False)
    line = 1
    while True:
        error = None
        try:
            cells = next(parser)
        except StopIteration:
            break
        except csv.Error:
            cells, error = [], ("record", "malformed csv row")
        if not consumed:
            break
        raw = b"".join(consumed)
        ends[b"\r\n" if raw.endswith(b"\r\n") else raw[-1:]] += 1  # the row's end, not quoted ones
        if bad[0]:
            error = error or ("record", f"text not valid in the declared encoding {mapping.encoding}")
        row = _Row(line, raw, cells, raw.endswith((b"\n", b"\r")), error)
        line += len(consumed)
        consumed.clear()
        bad[0] = False
        yield row
    stats.line_ending = line_ending_label(ends)  # keys: row ends, or a last row's last byte


class _Plan:
    """The mapping resolved against the header: which cell holds which field."""

    def __init__(self, mapping: CsvMapping, header: list[str] | None, stats: ReadStats) -> None:
        self.mapping = mapping
        self.index: dict[str, int] = {}
        self.header_error: tuple[str, str] | None = None
        self.required = {g: tuple(f"{g}.{n}" for n in names) for g, names in REQUIRED.items()}
        for spec in mapping.fields:
            group = group_of(spec.field)
            if spec.required and spec.field not in self.required.get(group, ()):
                self.required[group] = (*self.required.get(group, ()), spec.field)
        required = {name for names in self.required.values() for name in names}
        columns = [s for s in mapping.fields if s.column is not None]
        if header is None:
            self.index = {s.field: int(s.column) - 1 for s in columns}  # type: ignore[arg-type]
            self.width = mapping.column_count or max(self.index.values(), default=-1) + 1
            self.exact_width = mapping.column_count is not None
        else:
            names = [c.strip() for c in header]
            if names:
                names[0] = names[0].lstrip("\ufeff").strip()
            exact: dict[str, int] = {}
            folded: dict[str, int] = {}
            for i, n in enumerate(names):
                exact.setdefault(n, i)
                folded.setdefault(n.casefold(), i)
            absent = []
            for s in columns:
                column = str(s.column).strip()
                i = exact.get(column, folded.get(column.casefold()))
                if i is not None:
                    self.index[s.field] = i
                elif s.field in required:
                    self.header_error = self.header_error or (
                        s.field, f"required {s.label} is missing from the header")
                    stats.notes.append(f"required {s.label} ({s.field}) missing from the header")
                else:
                    absent.append(s.label)
            if absent:
                stats.notes.append("optional columns absent from the header: " + ", ".join(absent))
            self.width, self.exact_width = len(header), True
        convert = {s.field: mapping.converter(s.field) for s in mapping.fields}
        self.consts = {s.field: convert[s.field](s.const) for s in mapping.fields
                       if s.const is not None and s.const.strip()}
        self.labels = {s.field: s.label for s in mapping.fields}
        self.cols = [(s.field, self.index[s.field], convert[s.field]) for s in columns
                     if s.field in self.index]
        self.po_cols = [(n, i, conv, None if n in _NO_TRIGGER else group_of(n))
                        for n, i, conv in self.cols if not n.startswith("result.")]
        self.po_cells = operator.itemgetter(*[c[1] for c in self.po_cols], 0)
        self.r_cols = [c for c in self.cols if c[0].startswith("result.")]
        self.r_trigger = [i for n, i, _ in self.r_cols if n not in _NO_TRIGGER]
        self.key_cols = {n: self.index[n] for n in _KEY_FIELDS if n in self.index}

    def cell(self, cells: list[str], name: str) -> str:
        i = self.key_cols.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    def key(self, cells: list[str]) -> tuple[Any, ...]:
        if sid := self.cell(cells, "patient.source_id"):
            patient: tuple[str, ...] = ("id", sid)
        elif nir := normalize_nir(self.cell(cells, "patient.nir")):
            patient = ("nir", nir)
        else:
            patient = ("name", self.cell(cells, "patient.last_name").casefold(),
                       self.cell(cells, "patient.birth_date"))
        order = self.cell(cells, "order.lab_file_number") or "@" + self.cell(cells, "order.sampled_at")
        return patient, order

    def continues(self, first: _Row, row: _Row) -> bool:
        """Same keys; a short row (cut off) only needs its key cells to agree as far as they go."""
        if len(row.cells) >= self.width or row.error is None:
            return self.key(first.cells) == self.key(row.cells)
        last = len(row.cells) - 1
        for i in self.key_cols.values():
            if i > last:
                continue
            mine, theirs = row.cells[i].strip(), first.cells[i].strip() if i < len(first.cells) else ""
            if not (theirs.startswith(mine) if i == last else mine == theirs):
                return False
        return True

    def shape_error(self, row: _Row, last: bool) -> tuple[str, str] | None:
        n, cells = len(row.cells), row.cells
        if last and row.raw.count(self.mapping.quote_char.encode()) % 2:
            return "record", "truncated: unclosed quoted field at the end of the file"
        if n < self.width:
            if last and not row.ended:
                return "record", "truncated: the last row lacks columns and its line break"
            return "record", "wrong number of columns"
        if self.exact_width and n > self.width and any(c.strip() for c in cells[self.width:]):
            return "record", "wrong number of columns"
        return None

    def build(self, rows: list[_Row]) -> tuple[PatientRecord, str | None]:
        """The block's record; raises _RowError naming the bad row."""
        values: dict[str, Any] = {k: v for k, v in self.consts.items() if not k.startswith("result.")}
        seen: dict[str, str] = {}
        present: set[str] = {"patient"}
        results: list[Result] = []
        done = None
        for row in rows:
            cells = row.cells
            try:
                same = len(cells) >= self.width and self.po_cells(cells) == done
                for name, i, convert, group in () if same else self.po_cols:
                    text = cells[i].strip() if i < len(cells) else ""
                    if not text:
                        continue
                    previous = seen.get(name)
                    if previous is None:
                        seen[name], values[name] = text, convert(text)
                        if group:
                            present.add(group)
                    elif text != previous and not _same(convert(text), values[name]):
                        raise InvalidRecord(name, f"differs between rows of one exam ({self.labels[name]})")
                if done is None and len(cells) >= self.width:
                    done = self.po_cells(cells)
                if any(i < len(cells) and cells[i].strip() for i in self.r_trigger):
                    results.append(self._result(cells))
            except _ERRORS as exc:
                raise _RowError(row.line, exc) from None
        try:
            if results or any(g.startswith("order") for g in present):
                present.add("order")
            return self._record(values, present, results), values.get("patient.source_id")
        except _ERRORS as exc:
            raise _RowError(rows[0].line, exc) from None

    def _need(self, v: dict[str, Any], group: str) -> None:
        for name in self.required.get(group, ()):
            if v.get(name) in (None, ""):
                raise InvalidRecord(name, f"required value missing ({self.labels[name]})")

    def _result(self, cells: list[str]) -> Result:
        v = {k: c for k, c in self.consts.items() if k.startswith("result.")}
        for name, i, convert in self.r_cols:
            text = cells[i].strip() if i < len(cells) else ""
            if text:
                v[name] = convert(text)
        self._need(v, "result")
        return Result(code_system=v["result.code_system"], code=v["result.code"],
                      label=v.get("result.label", ""), value=v["result.value"],
                      unit=v.get("result.unit"), reference_range=v.get("result.reference_range"),
                      abnormal_flag=v.get("result.abnormal_flag"),
                      status=v.get("result.status", ResultStatus.FINAL),
                      observed_at=v.get("result.observed_at"), comments=v.get("result.comment", ()))

    def _record(self, v: dict[str, Any], present: set[str], results: list[Result]) -> PatientRecord:
        for group in sorted(present):
            self._need(v, group)
        p = "patient."
        ins = address = amo = amc = None
        if "patient.ins" in present:
            ins = Ins(v[p + "ins.matricule"], v[p + "ins.oid"],
                      v.get(p + "ins.status", IdentityStatus.PROVISIONAL))
        if "patient.address" in present:
            address = Address(v[p + "address.line1"], v[p + "address.postal_code"],
                              v[p + "address.city"], v.get(p + "address.line2"),
                              v.get(p + "address.country", "FR"))
        if "patient.mandatory_insurance" in present:
            amo = MandatoryInsurance(v[p + "mandatory_insurance.scheme"],
                                     v[p + "mandatory_insurance.fund"],
                                     v.get(p + "mandatory_insurance.centre"),
                                     v.get(p + "mandatory_insurance.beneficiary_rank", 1))
        if "patient.complementary_insurance" in present:
            amc = ComplementaryInsurance(v[p + "complementary_insurance.organisation"],
                                         v.get(p + "complementary_insurance.amc_number"),
                                         v.get(p + "complementary_insurance.member_id"))
        patient = Patient(
            last_name=v[p + "last_name"], first_names=v[p + "first_names"],
            birth_date=v[p + "birth_date"], sex=v[p + "sex"], birth_name=v.get(p + "birth_name"),
            nir=v.get(p + "nir"), ins=ins, birth_place=v.get(p + "birth_place"), address=address,
            phone=v.get(p + "phone"), email=v.get(p + "email"), mandatory_insurance=amo,
            complementary_insurance=amc)
        if "order" not in present:
            return PatientRecord(patient)
        prescriber = None
        if "order.prescriber" in present:
            prescriber = Prescriber(v["order.prescriber.last_name"], v.get("order.prescriber.first_name"),
                                    v.get("order.prescriber.rpps"), v.get("order.prescriber.adeli"))
        order = Order(lab_finess=v["order.lab_finess"], sampled_at=v.get("order.sampled_at"),
                      requested_at=v.get("order.requested_at"), prescriber=prescriber,
                      lab_file_number=v.get("order.lab_file_number"), results=tuple(results),
                      comments=v.get("order.comment", ()))
        return PatientRecord(patient, (order,))

    def finish(self, seq: int, block: _Block, fname: str) -> Unit:
        raw = b"".join(block.raw)
        first = block.rows[0].line

        def rejected(line: int, field: str, reason: str) -> Rejected:
            where = f"exam block from line {first}" if line != first else None
            return Rejected(seq, Position(fname, line, where), field, reason, raw)

        for row in block.rows:
            if row.error:
                return rejected(row.line, *row.error)
        if self.header_error:
            return rejected(first, *self.header_error)
        if block.overflow:
            return rejected(first, "record", f"block too large: more than {MAX_BLOCK_ROWS} rows "
                            "with the same patient and order")
        try:
            record, source_id = self.build(block.rows)
        except _RowError as exc:
            return rejected(exc.line, exc.field, exc.reason)
        return Parsed(seq, Position(fname, first), record, sha256(raw), source_id)


class _RowError(Exception):
    def __init__(self, line: int, exc: Exception) -> None:
        super().__init__(line)
        self.line = line
        if isinstance(exc, InvalidRecord):
            self.field, self.reason = exc.field, exc.reason
        else:  # never the exception's message: it may quote the value
            self.field, self.reason = "record", "unreadable value"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):  # comments: compare their texts
        return [c.text for c in a] == [c.text for c in b]
    return bool(a == b)


def _read(mapping: CsvMapping, stream: BinaryIO, name: str, stats: ReadStats | None) -> Iterator[Unit]:
    stats = stats if stats is not None else ReadStats()
    stats.encoding = mapping.encoding
    stats.notes += [f"mapping {mapping.name}", f"delimiter {mapping.delimiter!r}"]
    fname = source_name(name)
    plan = None if mapping.header else _Plan(mapping, None, stats)
    block: _Block | None = None
    seq = 0
    for row, after in itertools.pairwise(itertools.chain(_rows(stream, mapping, stats), [None])):
        assert row is not None
        if row.error is None and not any(c.strip() for c in row.cells):
            stats.segments["blank"] += 1
            if block is not None:
                block.raw.append(row.raw)
            continue
        if plan is None:
            stats.segments["header"] += 1
            plan = _Plan(mapping, row.cells, stats)
            continue
        stats.segments["row"] += 1
        row.error = row.error or plan.shape_error(row, after is None)
        continued = block is not None and plan.continues(block.rows[0], row)
        if block is not None and continued:
            if len(block.rows) < MAX_BLOCK_ROWS:
                block.rows.append(row)
                block.raw.append(row.raw)
                continue
            block.overflow = True
        if block is not None:
            seq += 1
            yield plan.finish(seq, block, fname)
        block = _Block([row], [row.raw], overflow=block is not None and block.overflow and continued)
    if block is not None and plan is not None:
        yield plan.finish(seq + 1, block, fname)


def reader(mapping: CsvMapping) -> Reader:
    """A `read` function for CSV files laid out as ``mapping`` says."""

    def read_with_mapping(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Unit]:
        return _read(mapping, stream, name, stats)

    return read_with_mapping


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Unit]:
    """Read the labvault flat layout (the default mapping)."""
    return _read(flat_mapping(), stream, name, stats)


def check_header(mapping: CsvMapping, head: bytes) -> None:
    """Raise ConfigurationError when the file's header lacks a column the mapping requires."""
    if not mapping.header:
        return
    stats = ReadStats()
    for row in _rows(io.BytesIO(head), mapping, stats):
        if any(c.strip() for c in row.cells):
            plan = _Plan(mapping, row.cells, stats)
            if plan.header_error:
                err = ConfigurationError(f"mapping {mapping.name}: " + "; ".join(
                    n for n in stats.notes if n.startswith("required")))
                err.hint = "the file does not match this mapping: fix the mapping or choose another"
                raise err
            return


def sniff(head: bytes) -> bool:
    """True when the first line is the header of the flat layout (comma-separated)."""
    head = head[:4096].removeprefix(BOM)
    first = re.split(rb"[\r\n]", head, maxsplit=1)[0].decode("utf-8", "replace")
    cells = [c.strip().strip('"').casefold() for c in first.split(",")]
    expected = [str(s.column).casefold() for s in flat_mapping().fields[:6]]
    return cells[:6] == expected


class _QuoteBreaks:
    """A csv writer that quotes every field of a row holding a CR or LF (Python < 3.12)."""

    def __init__(self, minimal: Any, quote_all: Any) -> None:
        self.minimal, self.quote_all = minimal, quote_all

    def writerow(self, row: list[str]) -> None:
        breaks = any("\n" in c or "\r" in c for c in row)
        (self.quote_all if breaks else self.minimal).writerow(row)

    def writerows(self, rows: Iterable[list[str]]) -> None:
        for row in rows:
            self.writerow(row)


def _getter(path: str) -> Callable[[Any], Any]:
    attrs = [{"source_id": "id", "comment": "comments"}.get(a, a) for a in path.split(".")[1:]]

    def get(obj: Any) -> Any:
        for attr in attrs:
            if obj is None:
                return None
            obj = getattr(obj, attr)
        return obj

    return get


def write(records: Iterable[PatientRecord], out: BinaryIO, *, mapping: CsvMapping | None = None,
          encoding: str | None = None, delimiter: str | None = None, line_ending: str | None = None,
          decimal_comma: bool | None = None, errors: str = "strict") -> None:
    """One row per result (see the module docstring). ``errors``: as `str.encode` ("replace"...)."""
    m = mapping or flat_mapping()
    changes = {k: v for k, v in (("encoding", encoding), ("delimiter", delimiter),
                                 ("line_ending", line_ending), ("decimal_comma", decimal_comma))
               if v is not None}
    m = replace(m, **changes) if changes else m
    columns: dict[str | int, list[FieldSpec]] = {}
    for s in m.fields:
        if s.column is not None:
            columns.setdefault(s.column, []).append(s)
    if m.header:
        order = list(columns)
        width = len(order)
        position = {c: i for i, c in enumerate(order)}
    else:
        width = max([m.column_count or 0, *(int(c) for c in columns)])
        position = {c: int(c) - 1 for c in columns}
    cols = [(position[c], s.field, _getter(s.field), m.formatter(s.field))
            for c, specs in columns.items() for s in specs[:1]]
    levels = [[c[0:1] + c[2:] for c in cols if c[1].startswith(prefix)]
              for prefix in ("patient.", "order.", "result.")]

    def fill(row: list[str], level: list[tuple[Any, ...]], obj: Any) -> list[str]:
        for i, get, fmt in level:
            value = get(obj)
            if value is not None and value != ():
                row[i] = fmt(value)
        return row

    text = io.TextIOWrapper(out, encoding=m.encoding, errors=errors, newline="")
    try:
        w = csv.writer(text, delimiter=m.delimiter, quotechar=m.quote_char,
                       lineterminator=m.line_ending, quoting=csv.QUOTE_MINIMAL)
        if m.line_ending != "\r\n":  # csv quotes line breaks only if they are in the terminator
            w = _QuoteBreaks(w, csv.writer(text, delimiter=m.delimiter, quotechar=m.quote_char,
                                           lineterminator=m.line_ending, quoting=csv.QUOTE_ALL))
        if m.header:
            w.writerow([str(c) for c in order])
        for record in records:
            base = fill([""] * width, levels[0], record.patient)
            for o in record.orders or (None,):
                orow = base if o is None else fill(base.copy(), levels[1], o)
                if o is None or not o.results:
                    w.writerow(orow)
                w.writerows(fill(orow.copy(), levels[2], r) for r in (o.results if o else ()))
        text.flush()
    finally:
        text.detach()


__all__ = ["MAX_BLOCK_ROWS", "NOT_CARRIED", "CsvMapping", "check_header", "load_mapping", "read",
           "reader", "sniff", "write"]
