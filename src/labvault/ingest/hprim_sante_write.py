"""HPRIM Santé writer, and the syntax shared with the reader (delimiters, escapes, timestamps).

See :mod:`labvault.ingest.hprim_sante` for the format, the field mapping and what it cannot
carry. The writer emits ORU (results) messages::

    H|~^\\&|LABVAULT.HPR||<finess>||ORU|||||P|H2.2~C|<now>
    P|1|<patient uuid>|<INS: matricule~oid~status>|<NIR>|LAST~First names|<birth name>|YYYYMMDD|F||...
    OBR|1||<file number>|<code~label~system, repeated>|R|<requested>|<sampled>|...|<prescriber>|...|<finess>
    OBX|1|NM|<code~label~system>||<value>|<unit>|<reference range>|<flag>|||<status>|||<observed>
    C|1|L|<comment text>|G
    L|1||<number of P records>|<number of records>

Text is escaped with the declared escape character (``\\F\\ \\S\\ \\R\\ \\E\\ \\T\\`` for the five
delimiters, ``\\.br\\`` for a line feed, ``\\X0D\\`` for a carriage return). A character the chosen
encoding cannot represent (``β`` in ISO-8859-1) is written as ``\\X<hex of its UTF-8 bytes>\\``,
which the reader turns back into the character: lossless for labvault, readable (if ugly) for
other software. Records longer than ``max_line`` characters continue in ``A|`` records.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import BinaryIO

from labvault.domain.records import Comment, Order, Patient, PatientRecord, Result
from labvault.ingest.base import PARIS

DEFAULT_DELIMITERS = "|~^\\&"
VERSIONS = ("H2.0", "H2.1", "H2.2", "H2.3", "H2.4", "H2.5")
ENCODINGS = ("iso-8859-1", "cp1252", "utf-8")
LINE_ENDINGS = (b"\r\n", b"\r", b"\n")
MIN_LINE = 16
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")
_PUNCTUATION = frozenset(string.punctuation)


class Delimiters:
    """The five HPRIM delimiters, in the order of the H record: field, sub-field (component),
    repetition, escape, sub-sub-field (sources: libHprim ``HPRIMSDelimiters``, Mediboard
    ``CHPrim21Reader::segmentH``)."""

    __slots__ = ("_table", "comp", "esc", "field", "rep", "sub")

    def __init__(self, chars: str) -> None:
        if not valid_delimiters(chars):
            raise ValueError("delimiters: five distinct ASCII punctuation characters expected")
        self.field, self.comp, self.rep, self.esc, self.sub = chars
        e = self.esc
        self._table = str.maketrans({
            e: f"{e}E{e}", self.field: f"{e}F{e}", self.comp: f"{e}S{e}",
            self.rep: f"{e}R{e}", self.sub: f"{e}T{e}", "\n": f"{e}.br{e}", "\r": f"{e}X0D{e}",
        })

    def __str__(self) -> str:
        return self.field + self.comp + self.rep + self.esc + self.sub

    def escape(self, text: str | None) -> str:
        return text.translate(self._table) if text else ""


def valid_delimiters(chars: str) -> bool:
    """Five distinct ASCII punctuation characters."""
    return len(chars) == 5 and len(set(chars)) == 5 and all(c in _PUNCTUATION for c in chars)


def format_date(d: date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def format_ts(dt: datetime | None) -> str:
    """Local Paris time ``YYYYMMDDHHMM[SS[.ffffff]]``. In the repeated hour of the autumn change
    the UTC offset is appended (``+0100``), the only case where local time is ambiguous."""
    if dt is None:
        return ""
    if dt.tzinfo is None:
        raise ValueError("naive datetime in a record")
    local = dt.astimezone(PARIS)
    out = f"{local.year:04d}{local.month:02d}{local.day:02d}{local.hour:02d}{local.minute:02d}"
    if local.second or local.microsecond:
        out += f"{local.second:02d}"
        if local.microsecond:
            out += f".{local.microsecond:06d}"
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        offset = local.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        sign = "+" if minutes >= 0 else "-"
        out += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return out


def value_type(value: str) -> str:
    """OBX-2 for a result value: FIC for ``FIC:<file>``, NM for a number, TX for long or
    multi-line text, ST otherwise."""
    if value.startswith("FIC:"):
        return "FIC"
    if _NUMERIC.fullmatch(value):
        return "NM"
    return "TX" if "\n" in value or len(value) > 200 else "ST"


class _Writer:
    def __init__(self, out: BinaryIO, d: Delimiters, encoding: str, eol: bytes,
                 max_line: int) -> None:
        self.out, self.d, self.encoding, self.eol, self.max_line = out, d, encoding, eol, max_line
        self.count = 0  # records of the current message
        self.buf: list[bytes] = []

    def record(self, fields: list[str], trim: bool = True) -> None:
        while trim and fields and not fields[-1]:
            fields.pop()
        line = self.d.field.join(fields)
        try:
            data = line.encode(self.encoding)
        except UnicodeEncodeError:
            line = self._hexify(line)
            data = line.encode(self.encoding)
        self.count += 1
        if len(line) <= self.max_line:
            self.buf.append(data + self.eol)
        else:
            self._split(line)
        if len(self.buf) >= 512:
            self.flush()

    def _split(self, line: str) -> None:
        step, prefix = self.max_line - 2, "A" + self.d.field
        parts = [line[:self.max_line]]
        parts += [prefix + line[i:i + step] for i in range(self.max_line, len(line), step)]
        self.buf.extend(p.encode(self.encoding) + self.eol for p in parts)

    def _hexify(self, line: str) -> str:
        e, out = self.d.esc, []
        for c in line:
            try:
                c.encode(self.encoding)
                out.append(c)
            except UnicodeEncodeError:
                out.append(f"{e}X{c.encode('utf-8').hex().upper()}{e}")
        return "".join(out)

    def flush(self) -> None:
        self.out.write(b"".join(self.buf))
        self.buf.clear()


def _code(d: Delimiters, r: Result) -> str:
    return d.comp.join((d.escape(r.code), d.escape(r.label), d.escape(r.code_system)))


def _patient(d: Delimiters, seq: int, p: Patient) -> list[str]:
    e, c = d.escape, d.comp
    ins = c.join((e(p.ins.matricule), p.ins.oid.value, p.ins.status.value)) if p.ins else ""
    a = p.address
    address = c.join((e(a.line1), e(a.line2), e(a.city), "", e(a.postal_code), e(a.country))) if a else ""
    fields = ["P", str(seq), p.id.hex, ins, e(p.nir), c.join((e(p.last_name), e(p.first_names))),
              e(p.birth_name), format_date(p.birth_date), p.sex.value, "", address, "", e(p.phone)]
    return fields + [""] * 21  # P.13 .. P.33: strict readers expect every field


def _order(d: Delimiters, seq: int, o: Order) -> list[str]:
    e, c = d.escape, d.comp
    codes: dict[str, str] = {}
    for r in o.results:
        codes.setdefault(r.code_system + "\x00" + r.code, _code(d, r))
    prescriber = ""
    if (pr := o.prescriber) is not None:
        name = c + e(pr.last_name) + c + e(pr.first_name)
        ids = [i for i in (pr.rpps, pr.adeli) if i]
        prescriber = d.rep.join(e(i) + name for i in ids) if ids else name
    fields = ["OBR", str(seq), "", e(o.lab_file_number), d.rep.join(codes.values()), "R",
              format_ts(o.requested_at), format_ts(o.sampled_at)]
    fields += [""] * 8 + [prescriber] + [""] * 7 + [e(o.lab_finess)]
    return fields


def _result(d: Delimiters, seq: int, r: Result) -> list[str]:
    e, kind = d.escape, value_type(r.value)
    value = r.value[4:] if kind == "FIC" else r.value
    if kind == "TX":
        value = d.rep.join(e(line) for line in value.split("\n"))
    else:
        value = e(value)
    flag = r.abnormal_flag.value if r.abnormal_flag else ""
    return ["OBX", str(seq), kind, _code(d, r), "", value, e(r.unit), e(r.reference_range), flag,
            "", "", r.status.value, "", "", format_ts(r.observed_at)]


def _comments(w: _Writer, comments: Iterable[Comment]) -> None:
    for i, comment in enumerate(comments, 1):
        w.record(["C", str(i), "L", w.d.escape(comment.text), "G"])


def _messages(records: Iterable[PatientRecord], size: int | None) -> Iterator[list[PatientRecord]]:
    batch: list[PatientRecord] = []
    for record in records:
        batch.append(record)
        if size is not None and len(batch) >= size:
            yield batch
            batch = []
    if batch or size is None:
        yield batch


def write(records: Iterable[PatientRecord], out: BinaryIO, *, version: str = "H2.2",
          delimiters: str = DEFAULT_DELIMITERS, encoding: str = "iso-8859-1",
          line_ending: bytes = b"\r\n", max_line: int | None = 220, sender_finess: str | None = None,
          patients_per_message: int | None = None, created_at: datetime | None = None) -> None:
    """Write HPRIM Santé ORU messages.

    ``delimiters``: the field separator then the four encoding characters in H-record order
    (``"|~^\\\\&"``, ``"|\\\\^&~"``, ``"|^~\\\\&"``...). ``max_line``: records longer than this many
    characters continue in ``A`` records (None: never split). ``sender_finess``: the laboratory
    FINESS put in the H sender field (default: the first order's). Every OBR also carries its own
    laboratory's FINESS in OBR-24. ``patients_per_message``: start a new H...L message after so
    many patients (default: one message). ``created_at``: H-13 (default: now).
    """
    if version not in VERSIONS:
        raise ValueError("version: one of " + ", ".join(VERSIONS))
    if encoding not in ENCODINGS:
        raise ValueError("encoding: one of " + ", ".join(ENCODINGS))
    if line_ending not in LINE_ENDINGS:
        raise ValueError("line_ending: CRLF, CR or LF")
    if max_line is not None and max_line < MIN_LINE:
        raise ValueError(f"max_line: at least {MIN_LINE}")
    if patients_per_message is not None and patients_per_message < 1:
        raise ValueError("patients_per_message: at least 1")
    d = Delimiters(delimiters)
    w = _Writer(out, d, encoding, line_ending, max_line or 1 << 62)
    stamp = format_ts((created_at or datetime.now(UTC)).replace(microsecond=0))
    for batch in _messages(records, patients_per_message):
        finess = sender_finess
        if finess is None:
            finess = next((o.lab_finess for r in batch for o in r.orders), "")
        w.count = 0
        w.record(["H" + d.field + str(d)[1:], "LABVAULT.HPR", "", d.escape(finess), "", "ORU", "",
                  "", "", "", "P", version + d.comp + "C", stamp])
        for seq, rec in enumerate(batch, 1):
            w.record(_patient(d, seq, rec.patient), trim=False)
            for o_seq, order in enumerate(rec.orders, 1):
                w.record(_order(d, o_seq, order))
                _comments(w, order.comments)
                for r_seq, result in enumerate(order.results, 1):
                    w.record(_result(d, r_seq, result))
                    _comments(w, result.comments)
        w.record(["L", "1", "", str(len(batch)), str(w.count + 1)])
    w.flush()


__all__ = ["DEFAULT_DELIMITERS", "PARIS", "Delimiters", "format_date", "format_ts",
           "valid_delimiters", "value_type", "write"]
