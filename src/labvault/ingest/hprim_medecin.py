"""HPRIM Médecin / HPRIM Net: the plain-text reports French laboratories send to doctors.

A file holds one or more *reports*; one report is one unit and becomes one `Order`::

    line 1   patient code (the lab's own)          -> Parsed.source_patient_id
    line 2   last name                             -> patient.last_name        (required)
    line 3   first name(s)                         -> patient.first_names      (required)
    line 4   address line 1                        -> patient.address.line1
    line 5   address line 2                        -> patient.address.line2
    line 6   postal code + city ("75011 PARIS")    -> patient.address.postal_code / city
    line 7   birth date DD/MM/YYYY                 -> patient.birth_date       (required)
    line 8   NIR: 15 characters, or 13 + " " + key -> patient.nir (compacted); may be empty
    line 9   lab file number (n° de dossier)       -> order.lab_file_number
    line 10  report / sampling date DD/MM/YYYY     -> order.sampled_at (midnight Europe/Paris)
    line 11  sender code: the lab's FINESS         -> order.lab_finess         (first word)
    line 12  recipient: the prescriber             -> order.prescriber
    (line 13, optional, and the free text up to ****LAB****: the human-readable report)
    ****LAB****
    RES|label|code|type|value|unit|normal low|normal high|flag|status|value 2|unit 2|low 2|high 2
    TEX|text
    ****FIN****                                     (ends the report)
    ****FINFICHIER****                              (ends the file)

RES fields (H.PR.I.M. Médecins 3.0 / HPRIM Net): ``type`` is N (numeric), A (alphanumeric) or
C (code) and is not checked; flag L/H/LL/HH/N (A accepted: abnormal qualitative result);
status F (validated) -> FINAL, R (not validated, P accepted) -> PRELIMINARY, C -> CORRECTED,
X -> CANCELLED (extension), empty -> FINAL. The reference range is ``"low-high"``, ``">low"``
or ``"<high"`` when one bound is numeric, else the low field verbatim (qualitative norm).
The code system is ``"LN"`` when the code is LOINC-shaped with a valid check digit, else
``"LOCAL"`` (the lab's or HPRIM commission's code). A TEX line is a comment of the preceding
RES, or of the order before the first RES; empty TEX lines are layout and are skipped. A RES
line without a value (a title) is skipped with an anomaly; the second-unit fields (11-14) are
ignored with an anomaly. The free text before ****LAB**** duplicates the RES lines and is
ignored; a report without ****LAB**** (a letter, a free-text-only report) is rejected.

Variants accepted: CP1252, ISO-8859-1 or UTF-8 (with or without BOM: lines are read as UTF-8
until one is not valid UTF-8, as CP1252 from then on) and CRLF, LF or CR line ends; HTML
entities (``&eacute;``, ``&#233;``, ``&amp;``) anywhere, decoded with `html.unescape`; header
lines padded with spaces;
the postal code alone on line 6 and the city on an extra line 7 (13-line header); the NIR with
spaces; a report ended by ****FINFICHIER**** alone; a missing ****FINFICHIER****; times after
the dates ("DD/MM/YYYY HH:MM"). Recipient line: ``"<RPPS>/<ADELI> <last name>, <first name>"``
as this writer writes it; an 11-digit code is the RPPS, a 9-digit one the ADELI, codes optional,
no comma -> the whole name is the last name.

Units: a report runs from its header to ****FIN**** plus the end markers that follow it; blank
lines after the last marker open the next report (its patient code may be empty: lines 7 and 10,
the dates, place the header). Non-blank lines that are not part of a report (junk before the
first header, mail footers) become a unit of their own, rejected as "text outside any report";
a report cut by the end of the file is rejected as truncated; a file of blank lines and end
markers only has no unit. Limits: a bare number as reference range reads back as a lower bound
(``"5"`` -> ``">5"``); C1 control characters are not carried; 8-bit text that is also valid
UTF-8 (``"Ã©"``) is read as UTF-8 until a line proves the file 8-bit.

`write` (in `labvault.ingest.hprim_medecin_write`, re-exported here) writes one report per order,
its patient code derived from the patient id, and a plain readable rendering as free text.

Sex is not in the header: it is derived from the NIR's first digit (1, 3, 7 -> M; 2, 4, 8 -> F),
else `Sex.UNKNOWN`. The format cannot carry (`NOT_CARRIED`): birth name, INS (OID, status),
birth place, phone, email, insurances, sex without a NIR, times (the date line has no time;
requested_at and observed_at do not exist), the address country (always FR on reading).
"""

from __future__ import annotations

import functools
import html
import itertools
import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import BinaryIO, NamedTuple

from stdnum import luhn

from labvault.domain.normalize import normalize_nir
from labvault.domain.records import (
    AbnormalFlag,
    Address,
    Comment,
    Order,
    Patient,
    PatientRecord,
    Prescriber,
    Result,
    ResultStatus,
    Sex,
)
from labvault.errors import InvalidRecord
from labvault.ingest.base import (
    BOM,
    PARIS,
    Anomaly,
    Parsed,
    Position,
    ReadStats,
    Rejected,
    Unit,
    line_ending_label,
    sha256,
    source_name,
)
from labvault.ingest.hprim_medecin_write import write

__all__ = ["NOT_CARRIED", "PARIS", "read", "sniff", "write"]

NOT_CARRIED: frozenset[str] = frozenset({
    "patient.birth_name", "patient.ins", "patient.birth_place", "patient.phone", "patient.email",
    "patient.mandatory_insurance", "patient.complementary_insurance",
    "patient.sex",  # derived from the NIR: lost when there is none
    "order.sampled_at",  # date only: compare at date precision
    "order.requested_at", "result.observed_at",
})

HEADER_LINES = 12
MAX_UNIT_BYTES = 8 << 20  # a report larger than this is cut and rejected
MAX_LINE_BYTES = 1 << 20
MAX_JUNK_LINES = 40  # how far a header is looked for after non-report lines
_CHUNK = 1 << 16
FIN, FINFICHIER, LAB = "****FIN****", "****FINFICHIER****", "****LAB****"
_BLANK, _OTHER, _END = 0, 1, 2  # line kinds; FIN and FINFICHIER are _END
_TAGS = frozenset({"RES|", "TEX|", "res|", "tex|"})

_C1 = re.compile(rb"[\x80-\x9f]")
_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2})[:hH](\d{2})(?::(\d{2}))?)?")
_DATE_LIKE = re.compile(r"\s*\d{1,2}/\d{1,2}/\d{4}\b")
_DATE_LOOSE = re.compile(r"\s*\d{1,4}\s*[/.-]\s*\d{1,2}\s*[/.-]\s*\d{1,4}")
_POSTAL = re.compile(r"(?:\d{5}|2[AB]\d{3})", re.IGNORECASE)
_NIR = re.compile(r"[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{8}")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
_LOINC = re.compile(r"\d{1,7}-\d")
_PRESCRIBER_CODES = re.compile(r"\d{9}(?:\d{2})?(?:/\d{9}(?:\d{2})?)?")
_FLAGS = {f.value: f for f in AbnormalFlag}
_STATUSES = {"F": ResultStatus.FINAL, "": ResultStatus.FINAL, "R": ResultStatus.PRELIMINARY,
             "P": ResultStatus.PRELIMINARY, "C": ResultStatus.CORRECTED,
             "X": ResultStatus.CANCELLED}
_SEX = {"1": Sex.MALE, "3": Sex.MALE, "7": Sex.MALE, "2": Sex.FEMALE, "4": Sex.FEMALE,
        "8": Sex.FEMALE}
_HEADER_INDEX = {"patient.last_name": 1, "patient.first_names": 2, "patient.birth_date": 6,
                 "patient.nir": 7, "order.sampled_at": 9, "order.lab_finess": 10}
_PARSE_ERRORS = (InvalidRecord, ValueError, KeyError, IndexError, UnicodeError, OverflowError,
                 TypeError)


class _Line(NamedTuple):
    number: int  # 1-based
    raw: bytes  # with its line end
    text: str  # decoded, without its line end


def _kind(text: str) -> int:
    if not text or text.isspace():
        return _BLANK
    if "****" in text and text.strip().upper() in (FIN, FINFICHIER):
        return _END
    return _OTHER


def _marker(text: str) -> str | None:
    if "****" not in text:
        return None
    key = text.strip().upper()
    return key if key in (FIN, FINFICHIER, LAB) else None


class _Source:
    """Splits a byte stream into lines (CRLF, LF or CR), decodes them, fills the stats."""

    def __init__(self, stream: BinaryIO, stats: ReadStats) -> None:
        self.stream, self.stats = stream, stats
        self.ends: dict[bytes, int] = {}
        self.utf8 = self.eight_bit = self.c1 = self.bom = False

    def _raw(self) -> Iterator[bytes]:
        """Lines with their line ends (the last one may have none)."""
        buf = b""
        while chunk := self.stream.read(_CHUNK):
            parts = (buf + chunk).splitlines(keepends=True)  # bytes: splits on CR, LF, CRLF
            buf = parts.pop()
            if buf.endswith(b"\n"):  # complete (a CR alone may be the first half of a CRLF)
                parts.append(buf)
                buf = b""
            yield from parts
            while len(buf) > MAX_LINE_BYTES:
                yield buf[:MAX_LINE_BYTES]
                buf = buf[MAX_LINE_BYTES:]
        if buf:
            yield buf

    def _decode(self, raw: bytes) -> str:
        if raw.isascii():
            return raw.decode("ascii")
        if not self.eight_bit:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.eight_bit = True
            else:
                self.utf8 = True
                return text
        if _C1.search(raw):
            self.c1 = True
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            return raw.decode("latin-1")

    def lines(self) -> Iterator[_Line]:
        ends = self.ends
        for number, raw in enumerate(self._raw(), 1):
            content = raw.rstrip(b"\r\n")
            if len(content) != len(raw):
                end = raw[len(content):]
                ends[end] = ends.get(end, 0) + 1
            if number == 1 and content.startswith(BOM):
                self.bom = True
                content = content[3:]
            text = content.decode("ascii") if content.isascii() else self._decode(content)
            yield _Line(number, raw, text)

    def update_stats(self) -> None:
        st = self.stats
        if self.eight_bit:
            st.encoding = "cp1252" if self.c1 else "iso-8859-1"
        elif self.utf8 or self.bom:
            st.encoding = "utf-8"
        else:
            st.encoding = "ascii"
        st.line_ending = line_ending_label(self.ends)


def sniff(head: bytes) -> bool:
    """True when the first bytes look like HPRIM Médecin: its markers, or its header shape."""
    text = head[:4096].decode("latin-1")
    if text.lstrip().startswith(("H|", "MSH|", "{", "<")):
        return False
    if any(m in text for m in (LAB, FIN, FINFICHIER)):
        return True
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        del lines[0]
    return (len(lines) > HEADER_LINES and bool(lines[1].strip())
            and _DATE.fullmatch(lines[6].strip()) is not None
            and (not lines[9].strip() or _DATE.fullmatch(lines[9].strip()) is not None)
            and not any("|" in line for line in lines[:HEADER_LINES]))


def _date(text: str, field: str) -> tuple[int, ...]:
    m = _DATE.fullmatch(text)
    if m is None:
        raise InvalidRecord(field, "not a date: expected DD/MM/YYYY")
    parts = tuple(int(g) if g else 0 for g in m.groups())
    try:
        datetime(parts[2], parts[1], parts[0], parts[3], parts[4], parts[5])
    except ValueError:
        raise InvalidRecord(field, "not a valid date") from None
    return parts


def _unescape(text: str) -> str:
    return html.unescape(text) if "&" in text else text


def _header_start(texts: list[str], b: int) -> int:
    """Index of header line 1: ``b`` (after the blank lines) unless its line 7 is neither
    blank nor date-like, then the first later position whose lines 7 and 10 are exact dates
    (non-report lines before the first header); if there is none, ``b`` again."""
    def loose(i: int) -> bool:
        return i < len(texts) and _DATE_LOOSE.match(texts[i]) is not None

    def exact(i: int) -> bool:
        return i < len(texts) and _DATE.fullmatch(texts[i].strip()) is not None

    for s in range(b, -1, -1):  # blank lines before line 2 may hold an empty patient code
        if loose(s + 6):
            return s
    if b + 6 >= len(texts) or not texts[b + 6].strip() or loose(b + 7):
        return b
    for s in range(b + 1, min(len(texts) - 9, b + MAX_JUNK_LINES)):
        if _marker(texts[s]) or texts[s].lstrip()[:4].upper() in ("RES|", "TEX|"):
            break
        if texts[s + 1].strip() and exact(s + 6) and exact(s + 9):
            return s
    return b


def _looks_like_report(texts: list[str], start: int) -> bool:
    return (any("****" in t and _marker(t) == LAB for t in texts)
            or (start + 6 < len(texts) and _DATE_LOOSE.match(texts[start + 6]) is not None))


@functools.lru_cache(maxsize=4096)
def _code_system(code: str) -> str:
    """"LN" for a LOINC-shaped code with a valid check digit, else "LOCAL"."""
    loinc = _LOINC.fullmatch(code) is not None and luhn.is_valid(code.replace("-", ""))
    return "LN" if loinc else "LOCAL"


def _reference_range(low: str, high: str) -> str | None:
    if low and high:
        return f"{low}-{high}"
    if high:
        return f"<{high}"
    if low and _NUMBER.fullmatch(low):
        return f">{low}"
    return low or None


def _prescriber(text: str) -> Prescriber | None:
    rpps = adeli = None
    first, _, rest = text.partition(" ")
    if _PRESCRIBER_CODES.fullmatch(first):
        for code in first.split("/"):
            if len(code) == 11:
                rpps = code
            else:
                adeli = code
        text = rest.strip()
    last, _, first_name = text.partition(",")
    if not (last.strip() or rpps or adeli):
        return None
    return Prescriber(last_name=last.strip(), first_name=first_name.strip() or None,
                      rpps=rpps, adeli=adeli)


def _patient(h: list[str]) -> Patient:
    if not h[1]:
        raise InvalidRecord("patient.last_name", "missing")
    if not h[2]:
        raise InvalidRecord("patient.first_names", "missing")
    day, month, year = _date(h[6], "patient.birth_date")[:3]
    nir = normalize_nir(h[7]) or None
    if nir is not None and _NIR.fullmatch(nir) is None:
        raise InvalidRecord("patient.nir", "not a nir: expected fifteen characters")
    address = None
    if h[3] or h[4] or h[5]:
        postal, _, city = h[5].partition(" ")
        if _POSTAL.fullmatch(postal) is None:
            postal, city = "", h[5]
        address = Address(line1=h[3], postal_code=postal.upper(), city=city.strip(),
                          line2=h[4] or None)
    return Patient(last_name=h[1], first_names=h[2], birth_date=date(year, month, day),
                   sex=_SEX.get(nir[0], Sex.UNKNOWN) if nir else Sex.UNKNOWN, nir=nir,
                   address=address)


def _results(lines: list[_Line], first: int, end: int, anomalies: list[Anomaly]
             ) -> tuple[list[Result], list[Comment]]:
    order_comments: list[Comment] = []
    specs: list[tuple[dict, list[Comment]]] = []
    current: list[Comment] | None = None
    second_unit = 0
    for line in lines[first:end]:
        s = line.text.strip()
        tag = s[:4].upper()
        if not s or ("****" in s and _marker(s) == LAB):
            continue
        where = f"line {line.number}"
        if tag == "TEX|" or s.upper() == "TEX":
            text = _unescape(s[4:]).strip()
            if text:
                (order_comments if current is None else current).append(Comment(text=text))
            continue
        if tag != "RES|":
            raise InvalidRecord("LAB", "unknown line type in the structured section", where)
        f = [_unescape(x).strip() for x in s.split("|")]
        if len(f) < 4:
            raise InvalidRecord("RES", "too few fields", where)
        f += [""] * (14 - len(f))
        label, code, _type, value, unit, low, high, flag, status = f[1:10]
        if any(f[10:14]):
            second_unit += 1
        if not value:
            anomalies.append(Anomaly("result.value", "line without a value skipped", where))
            current = None
            continue
        if not code:
            raise InvalidRecord("result.code", "missing", where)
        if flag.upper() not in _FLAGS and flag:
            raise InvalidRecord("result.abnormal_flag", "unknown abnormal flag", where)
        if status.upper() not in _STATUSES:
            raise InvalidRecord("result.status", "unknown result status", where)
        current = []
        specs.append((dict(code_system=_code_system(code), code=code, label=label,
                           value=value, unit=unit or None,
                           reference_range=_reference_range(low, high),
                           abnormal_flag=_FLAGS[flag.upper()] if flag else None,
                           status=_STATUSES[status.upper()]), current))
    if second_unit:
        anomalies.append(Anomaly("RES", "second-unit value fields ignored"))
    return [Result(**kw, comments=tuple(c)) for kw, c in specs], order_comments


def _report(lines: list[_Line], start: int, end: int
            ) -> tuple[PatientRecord, str | None, list[Anomaly]]:
    texts = [line.text for line in lines]
    lab = next((i for i in range(start, end) if "****" in texts[i] and _marker(texts[i]) == LAB),
               None)
    if end - start < HEADER_LINES or (lab is not None and lab - start < HEADER_LINES):
        raise InvalidRecord("header", "fewer than twelve header lines")
    if lab is None:
        raise InvalidRecord("LAB", "no ****LAB**** section: free-text report")
    h = [_unescape(t).strip() for t in texts[start:start + HEADER_LINES + 1]]
    anomalies: list[Anomaly] = []
    split = bool(_POSTAL.fullmatch(h[5]) and _DATE_LIKE.match(h[6]) is None
                 and lab - start > HEADER_LINES and _DATE_LIKE.match(h[7]))
    if split:  # postal code and city on lines 6 and 7
        h[5:7] = [f"{h[5]} {h[6]}"]
        anomalies.append(Anomaly("header", "postal code and city on separate lines"))
    try:
        patient = _patient(h)
        sampled_at = None
        if h[9]:
            d, mo, y, hh, mi, ss = _date(h[9], "order.sampled_at")
            sampled_at = datetime(y, mo, d, hh, mi, ss, tzinfo=PARIS)
        finess = h[10].split()
        if not finess:
            raise InvalidRecord("order.lab_finess", "missing sender code")
    except InvalidRecord as e:
        i = _HEADER_INDEX[e.field]
        i += split and i > 5
        raise InvalidRecord(e.field, e.reason, f"line {lines[start + i].number}") from None
    results, comments = _results(lines, lab + 1, end, anomalies)
    order = Order(lab_finess=finess[0], sampled_at=sampled_at, prescriber=_prescriber(h[11]),
                  lab_file_number=h[8] or None, results=tuple(results), comments=tuple(comments))
    return PatientRecord(patient=patient, orders=(order,)), h[0] or None, anomalies


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Unit]:
    """Stream the reports of an HPRIM Médecin file as `Parsed` / `Rejected` units."""
    st = stats if stats is not None else ReadStats()
    src = _Source(stream, st)
    fname = source_name(name)
    seqs = itertools.count(1)
    counts = st.segments

    def units(block: list[_Line], end: int | None) -> Iterator[Unit]:
        texts = [line.text for line in block]
        b = next(i for i, t in enumerate(texts) if _kind(t) == _OTHER)
        start = _header_start(texts, b)
        raw = b"".join(line.raw for line in block)
        if start > b:
            junk = b"".join(line.raw for line in block[:start])
            counts["junk"] += 1
            yield Rejected(next(seqs), Position(fname, block[b].number), "record",
                           "text outside any report", junk)
            raw = raw[len(junk):]
        pos = Position(fname, block[start].number)
        if not _looks_like_report(texts, start):
            counts["junk"] += 1
            yield Rejected(next(seqs), pos, "record", "text outside any report", raw)
            return
        counts["report"] += 1
        if end is None:
            yield Rejected(next(seqs), pos, "record", "truncated: no ****FIN**** end marker", raw)
            return
        try:
            record, patient_code, anomalies = _report(block, start, end)
        except _PARSE_ERRORS as e:
            field = e.field if isinstance(e, InvalidRecord) else "record"
            reason = e.reason if isinstance(e, InvalidRecord) else "malformed report"
            where = e.position if isinstance(e, InvalidRecord) else None
            yield Rejected(next(seqs), Position(fname, pos.line, where), field, reason, raw)
            return
        if _kind(texts[end]) == _END and texts[end].strip().upper() == FINFICHIER:
            anomalies.append(Anomaly("record", "report ended by ****FINFICHIER**** alone"))
        yield Parsed(next(seqs), pos, record, sha256(raw), patient_code, tuple(anomalies))

    block: list[_Line] = []
    content = False  # the block holds a non-blank line that is not an end marker
    size = 0
    pending: tuple[list[_Line], int] | None = None  # a finished report taking its separators
    for line in src.lines():
        text = line.text
        if not text or text.isspace():
            kind = _BLANK
        elif "****" in text:
            marker = _marker(text)
            if marker is not None:
                counts[marker.strip("*")] += 1
            kind = _END if marker in (FIN, FINFICHIER) else _OTHER
        else:
            kind = _OTHER
            if text[:4] in _TAGS:
                counts[text[:3].upper()] += 1
        if pending is not None:
            if kind != _OTHER:
                pending[0].append(line)
                continue
            done, end = pending
            k = len(done)  # blank lines after the last marker open the next report: one
            while k > end + 1 and _kind(done[k - 1].text) == _BLANK:  # may be its patient code
                k -= 1
            block = done[k:]
            del done[k:]
            yield from units(done, end)
            src.update_stats()
            pending = None
        block.append(line)
        if kind == _END and content:
            pending, block, content, size = (block, len(block) - 1), [], False, 0
            continue
        content = content or kind == _OTHER
        size += len(line.raw)
        if size > MAX_UNIT_BYTES:
            counts["oversized"] += 1
            yield Rejected(next(seqs), Position(fname, block[0].number), "record",
                           "unit too large: no ****FIN**** end marker within the size limit",
                           b"".join(x.raw for x in block))
            block, content, size = [], False, 0
    if pending is not None:
        yield from units(*pending)
    if content:
        yield from units(block, None)
    if not counts["FINFICHIER"] and counts["report"]:
        st.notes.append("no ****FINFICHIER**** end-of-file marker")
    src.update_stats()
