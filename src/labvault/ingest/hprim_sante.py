"""HPRIM Santé 2.0 to 2.5: the French laboratory results exchange format (ORU messages).

HPRIM Santé (H.PR.I.M. / Interop'Santé) is a line format derived from ASTM E1238 / E1394: one
record per line, ``H`` header, ``P`` patient, ``OBR`` request, ``OBX`` result, ``C`` comment,
``A`` continuation, ``L`` end. Sources used for field positions (no specification text is
public): libHprim's grammar and ``HPRIMSDelimiters`` (github aiderpmsi/libHprim), Mediboard's
``hprim21`` module (``CHPrim21Reader``, ``CHprim21Patient``, segment tables ``segmentH/P/L.xml``,
composites AD, PN, CNA), MedinTux's ``C_BaseBioGest`` HPRIM importer (real-file samples: ``A``
rejoining, ``\\^&~`` headers, OBR-16 prescribers, OBR-3 file numbers).

Syntax
    The H record declares the delimiters: ``H`` + field separator + four characters in HPRIM
    order: sub-field (component), repetition, escape, sub-sub-field. ``H|~^\\&`` (the standard),
    ``H|\\^&~`` and ``H|^~\\&`` are all read positionally; any five distinct ASCII punctuation
    characters are accepted, anything else rejects the whole message (H to L) as one unit
    (field ``H.delimiters``). Escapes use the declared escape character: ``\\F\\ \\S\\ \\R\\ \\E\\
    \\T\\`` (the delimiters), ``\\.br\\`` (line feed), ``\\Xhh..\\`` (bytes: UTF-8, else CP1252),
    ``\\H\\ \\N\\`` dropped, unknown sequences kept as they are. ``A`` records (lines over 220
    characters) are appended to the previous record, without the ``A|``, before fields are split.
    Lines end in CR, CRLF or LF. Encoding: a file whose first non-ASCII line is valid UTF-8 is
    UTF-8, otherwise CP1252 (reported as ISO-8859-1 when no byte 0x80-0x9F occurs), with the five
    bytes CP1252 leaves undefined read as ISO-8859-1.
Units
    One P record and what follows it up to the next P or L. H and L (and blank lines) are the
    envelope, part of no unit; a file may hold several H...L messages. A C or AP/AC/ERR/REG/FAC/
    ACT record between H and the first P is envelope too (counted in ``stats.segments``). Other
    text outside H...L, or records between H and the first P, become Rejected units (field
    ``record``). A patient unit not closed by P or L (file or message cut short) is Rejected
    (field ``message``, truncated). AP/AC/ERR/REG/FAC/ACT records inside a unit are counted and
    ignored; any other record type rejects the unit.
Mapping (field numbers count fields after the record type, H-1 being the delimiters)
    H-4 sender ``FINESS~name`` -> default ``order.lab_finess``; H-12 ``version~type``.
    P-2 lab patient code -> ``source_patient_id``; P-3 ``matricule~OID~status`` -> ``patient.ins``
    (read only when the OID is an INS OID); P-4 -> ``patient.nir`` (spaces removed);
    P-5 ``last~first~second first`` -> names; P-6 -> ``birth_name``; P-7 YYYYMMDD; P-8 M/F/U/O
    (empty: U, with an anomaly); P-10 ``line1~line2~city~state~postcode~country``; P-12 phone.
    OBR-3 (else OBR-2) first non-empty component -> ``lab_file_number``; OBR-6 requested,
    OBR-7 sampled (YYYYMMDD[HHMM[SS]] in Europe/Paris time, or with a ``+hhmm`` offset; returned
    in UTC, which keeps the repeated autumn hour unambiguous); OBR-16
    prescriber ``id~last~first`` repeated, an 11-digit id is the RPPS, a 9-digit id the ADELI;
    OBR-24 ``FINESS~name`` of the laboratory (labvault puts it there; else H-4).
    OBX-2 value type NM/ST/TX/CE/FIC; OBX-3 ``code~label~system`` (empty system: ``L``);
    OBX-5 value (TX: repetitions are lines; CE: the text, else the code; FIC: ``"FIC:<file>"``
    with an anomaly; the reader sees one stream, so `labvault.migrate.attachments` finds the
    file beside the export and attaches its content); OBX-6 unit; OBX-7
    reference range (free text); OBX-8 flag N/L/H/LL/HH/A; OBX-11 status F/U/empty -> final,
    P/R/S/I -> preliminary, C corrected, X cancelled; OBX-14 observed at.
    C-3 text: after OBR an order comment, after OBX a result comment, after another C the same
    target; after P (the domain has no patient comment) or an ignored record it is dropped with
    an anomaly. A result code repeated in one request is kept, with an anomaly.
Not carried
    Birth place, e-mail, mandatory and complementary insurance (``NOT_CARRIED``): an ORU message
    has no field for them (insurance lives in AP/AC records of ADM messages).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import BinaryIO

from labvault.domain.normalize import normalize_nir
from labvault.domain.records import (
    AbnormalFlag,
    Address,
    Comment,
    IdentityStatus,
    Ins,
    InsOid,
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
from labvault.ingest.hprim_sante_write import PARIS, VERSIONS, Delimiters, valid_delimiters, write

NOT_CARRIED: frozenset[str] = frozenset({
    "patient.birth_place", "patient.email", "patient.mandatory_insurance",
    "patient.complementary_insurance"})
IGNORED_RECORDS = frozenset({"AP", "AC", "ERR", "REG", "FAC", "ACT"})
VALUE_TYPES = frozenset({"NM", "ST", "TX", "CE", "FIC"})
MESSAGE_TYPES = frozenset({"ORU", "ADM", "ORM", "REG", "FAC", "ERR"})
_KNOWN = frozenset({"H", "P", "OBR", "OBX", "C", "A", "L"}) | IGNORED_RECORDS
_SEXES = {s.value: s for s in Sex}
_FLAGS = {f.value: f for f in AbnormalFlag}
_F, _P = ResultStatus.FINAL, ResultStatus.PRELIMINARY
_STATUSES = {"": _F, "F": _F, "U": _F, "P": _P, "R": _P, "S": _P, "I": _P,
             "C": ResultStatus.CORRECTED, "X": ResultStatus.CANCELLED}
_INS_OIDS = {o.value: o for o in InsOid}
_TS = re.compile(r"(\d{4})(\d\d)(\d\d)(?:(\d\d)(?:(\d\d)(?:(\d\d)(?:[.,](\d{1,6}))?)?)?)?([+-]\d{4})?")
_NUMBER = re.compile(r"[<>]?=?\s*[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")
_EOL = re.compile(rb"\r\n|\r|\n")
_C1 = re.compile(rb"[\x80-\x9f]")
_BLANK = b" \t\x1a"
_CHUNK = 1 << 16
_MAX_LINE = 1 << 20  # a longer "line" is cut: it can only be junk
_CP1252 = {}
for _i in range(0x80, 0xA0):
    try:
        _CP1252[_i] = bytes([_i]).decode("cp1252")
    except UnicodeDecodeError:
        pass  # undefined in CP1252: stays the ISO-8859-1 control character
_TRUNCATED = "truncated: message has no L record"
_Get = Callable[[int], str]
_PARSE_ERRORS = (InvalidRecord, ValueError, LookupError, UnicodeError, TypeError, ArithmeticError)


def sniff(head: bytes) -> bool:
    """An H record with five valid delimiters opens the file (after a BOM or blank lines)."""
    head = head[:4096].removeprefix(BOM).lstrip(b" \t\r\n")
    line = _EOL.split(head, maxsplit=1)[0][:7]
    if len(line) < 6 or not line.isascii() or line[:1] != b"H":
        return False
    text = line.decode("ascii")
    return valid_delimiters(text[1:6]) and (len(text) == 6 or text[6] == text[1])


def _decode_cp1252(data: bytes) -> str:
    return data.decode("latin-1").translate(_CP1252)


class _Decoder:
    """Sticky detection: the first non-ASCII line decides UTF-8 or CP1252 for the file."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.c1 = self.mixed = False

    def __call__(self, data: bytes) -> str:
        if data.isascii():
            return data.decode("ascii")
        if self.mode != "cp1252":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self.mixed = self.mode == "utf-8"
                self.mode = self.mode or "cp1252"
            else:
                self.mode = "utf-8"
                return text
        if _C1.search(data) is None:
            return data.decode("latin-1")
        self.c1 = True
        return _decode_cp1252(data)

    @property
    def name(self) -> str:
        if self.mode is None:
            return "ascii"
        return self.mode if self.mode == "utf-8" or self.c1 else "iso-8859-1"


def _physical(stream: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """(content, line ending) pairs; CR, LF and CRLF all end a line."""
    rest = b""
    while data := stream.read(_CHUNK):
        buf = rest + data if rest else data
        start = 0
        for m in _EOL.finditer(buf):
            if m.end() == len(buf) and m.group() == b"\r":
                break  # perhaps the first half of a CRLF split across reads
            yield buf[start:m.start()], m.group()
            start = m.end()
        rest = buf[start:]
        while len(rest) > _MAX_LINE:
            yield rest[:_MAX_LINE], b""
            rest = rest[_MAX_LINE:]
    if rest:
        yield (rest[:-1], b"\r") if rest.endswith(b"\r") else (rest, b"")


@dataclass(slots=True)
class _Rec:
    """A logical record (A continuations joined). ``type``: a known type, "?" or "" (blank)."""

    type: str
    text: str
    line: int
    raw: list[bytes]
    header: bool = False


def _records(stream: BinaryIO, st: ReadStats, decode: _Decoder) -> Iterator[_Rec]:
    endings: set[bytes] = set()
    pending: _Rec | None = None
    sep: str | None = None
    for n, (content, eol) in enumerate(_physical(stream), 1):
        if eol:
            endings.add(eol)
        raw = content + eol
        if n == 1 and content.startswith(BOM):
            content = content[3:]
        if not content.strip(_BLANK):
            if pending is not None:
                pending.raw.append(raw)
            else:
                yield _Rec("", "", n, [raw])
            continue
        text = decode(content).lstrip(" \t")
        if (pending is not None and pending.type != "L" and sep is not None
                and (text == "A" or text.startswith("A" + sep))):
            pending.text += text[2:]
            pending.raw.append(raw)
            st.segments["A"] += 1
            continue
        if pending is not None:
            yield pending
        header = len(text) > 1 and text[0] == "H" and not (text[1].isalnum() or text[1].isspace())
        if header:
            sep = text[1]
            kind = "H"
        else:
            kind = text.split(sep, 1)[0] if sep is not None else "?"
            kind = kind if kind in _KNOWN and kind != "H" else "?"
        st.segments[kind if kind != "?" else "unknown"] += 1
        pending = _Rec(kind, text, n, [raw], header)
    if pending is not None:
        yield pending
    st.encoding = decode.name
    if decode.mixed:
        _note(st, "some lines are not valid UTF-8: read as CP1252")
    st.line_ending = line_ending_label(endings)


def _note(st: ReadStats, text: str) -> None:
    if text not in st.notes:
        st.notes.append(text)


# ---------------------------------------------------------------- field syntax

def _hex(body: str) -> str | None:
    try:
        data = bytes.fromhex(body)
    except ValueError:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_cp1252(data)


def _unescape(s: str, d: Delimiters) -> str:
    e = d.esc
    if e not in s:
        return s
    out, i = [], 0
    while (j := s.find(e, i)) >= 0:
        k = s.find(e, j + 1)
        if k < 0:
            break
        out.append(s[i:j])
        body = s[j + 1:k]
        simple = {"F": d.field, "S": d.comp, "R": d.rep, "E": e, "T": d.sub, ".br": "\n",
                  "H": "", "N": ""}
        value = simple.get(body)
        if value is None and len(body) > 1 and body[0] == "X":
            value = _hex(body[1:])
        out.append(s[j:k + 1] if value is None else value)
        i = k + 1
    out.append(s[i:])
    return "".join(out)


def _comps(raw: str, d: Delimiters, n: int) -> list[str]:
    """The first ``n`` components of the first repetition, padded with ""."""
    parts = raw.split(d.rep, 1)[0].split(d.comp)
    return parts[:n] + [""] * (n - len(parts))


def _ts(raw: str, name: str, date_only: bool = False) -> datetime | None:
    """An aware UTC datetime (``date_only``: the naive local date and time as written)."""
    s = raw.strip()
    if not s:
        return None
    m = _TS.fullmatch(s)
    if m is None or (date_only and m.group(8)):
        raise InvalidRecord(name, "not a valid date-time")
    y, mo, d, h, mi, sec, frac, off = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0),
                      int((frac or "0").ljust(6, "0")))
        if date_only:
            return dt
        if off:
            minutes = int(off[1:3]) * 60 + int(off[3:])
            tz = timezone(timedelta(minutes=-minutes if off[0] == "-" else minutes))
            return dt.replace(tzinfo=tz).astimezone(UTC)
        return dt.replace(tzinfo=PARIS).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRecord(name, "not a valid date-time") from None


def _date(raw: str, name: str) -> date:
    dt = _ts(raw, name, date_only=True)
    if dt is None:
        raise InvalidRecord(name, "missing")
    return dt.date()


# ---------------------------------------------------------------- messages and units

@dataclass(slots=True)
class _Message:
    d: Delimiters | None  # None: the H record's delimiters are unusable
    finess: str = ""


@dataclass(slots=True)
class _Unit:
    kind: str  # "patient", "junk" or "message" (a message whose H is unusable)
    first: _Rec
    recs: list[_Rec] = field(default_factory=list)
    bad_field: str = "record"
    reason: str = ""

    def __post_init__(self) -> None:
        self.recs.append(self.first)


def _open_message(rec: _Rec, st: ReadStats) -> _Message:
    text = rec.text
    chars = text[1:6]
    if len(text) < 6 or (len(text) > 6 and text[6] != text[1]) or not valid_delimiters(chars):
        _note(st, "message with unusable delimiters")
        return _Message(None)
    d = Delimiters(chars)
    _note(st, f"delimiters {d}")
    f = text.split(d.field)
    get = lambda i: f[i] if i < len(f) else ""  # noqa: E731
    finess = "".join(_unescape(_comps(get(4), d, 1)[0], d).split())
    kind = get(6).strip()
    if kind != "ORU":
        _note(st, f"message type {kind}" if kind in MESSAGE_TYPES else "unknown message type")
    version = _comps(get(12), d, 1)[0].strip()
    if version in VERSIONS:
        if st.version is None:
            st.version = version
        elif st.version != version:
            _note(st, "several versions in one file")
    else:
        _note(st, "missing or unknown version")
    return _Message(d, finess)


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Unit]:
    """Stream the units of an HPRIM Santé file (see the module docstring)."""
    st = stats if stats is not None else ReadStats()
    file = source_name(name)
    seq = 0
    msg: _Message | None = None
    unit: _Unit | None = None

    def finish(u: _Unit, truncated: bool = False) -> Unit:
        nonlocal seq
        seq += 1
        seg = u.first.type if u.first.type in _KNOWN else None
        pos = Position(file, u.first.line, seg)
        raw = b"".join(b for r in u.recs for b in r.raw)
        if truncated:
            return Rejected(seq, pos, "message", _TRUNCATED, raw)
        if u.kind != "patient" or msg is None or msg.d is None:
            return Rejected(seq, pos, u.bad_field, u.reason, raw)
        try:
            record, source_id, anomalies = _patient_unit(u.recs, msg)
        except InvalidRecord as exc:
            return Rejected.from_error(seq, pos, exc, raw)
        except _PARSE_ERRORS:
            return Rejected(seq, pos, "record", "malformed record", raw)
        return Parsed(seq, pos, record, sha256(raw), source_id, tuple(anomalies))

    for rec in _records(stream, st, _Decoder()):
        t = rec.type
        if t == "":  # blank lines at the very start
            if unit is not None:
                unit.recs.append(rec)
            continue
        if rec.header:
            if unit is not None:
                yield finish(unit, truncated=unit.kind == "patient")
                unit = None
            msg = _open_message(rec, st)
            if msg.d is None:
                unit = _Unit("message", rec, bad_field="H.delimiters",
                             reason="invalid delimiters: the whole message is unreadable")
            continue
        if msg is None:
            if unit is None:
                unit = _Unit("junk", rec, reason="text outside any message")
            else:
                unit.recs.append(rec)
        elif msg.d is None:
            assert unit is not None
            unit.recs.append(rec)
            if t == "L":
                yield finish(unit)
                unit, msg = None, None
        elif t in ("L", "P"):
            if unit is not None:
                yield finish(unit)
            unit = _Unit("patient", rec) if t == "P" else None
            msg = msg if t == "P" else None
        elif unit is not None:
            unit.recs.append(rec)
        elif t != "C" and t not in IGNORED_RECORDS:
            unit = _Unit("junk", rec, reason="record before any patient record")
    if unit is not None:
        yield finish(unit, truncated=unit.kind == "patient")


# ---------------------------------------------------------------- patient units

@dataclass(slots=True)
class _OrderB:
    kw: dict[str, object]
    results: list[tuple[dict[str, object], list[Comment]]] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    codes: set[tuple[str, str]] = field(default_factory=set)


def _patient_unit(recs: list[_Rec], msg: _Message) -> tuple[PatientRecord, str | None, list[Anomaly]]:
    d = msg.d
    assert d is not None
    anomalies: list[Anomaly] = []
    patient: Patient | None = None
    source_id: str | None = None
    orders: list[_OrderB] = []
    target: list[Comment] | None = None  # where a C record goes; None: dropped
    for rec in recs:
        where = f"line {rec.line}"
        f = rec.text.split(d.field)
        get = lambda i, f=f: f[i] if i < len(f) else ""  # noqa: E731
        t = rec.type
        if t == "P":
            patient, source_id = _patient(get, d, anomalies, where)
            target = None
        elif t == "OBR":
            orders.append(_OrderB(_order(get, d, msg.finess, anomalies, where)))
            target = orders[-1].comments
        elif t == "OBX":
            if not orders:
                raise InvalidRecord("record", "result record before any request record")
            kw = _result(get, d, anomalies, where)
            o = orders[-1]
            key = (str(kw["code_system"]), str(kw["code"]))
            if key in o.codes:
                anomalies.append(Anomaly("result.code", "result code repeated in one request", where))
            o.codes.add(key)
            o.results.append((kw, []))
            target = o.results[-1][1]
        elif t == "C":
            text = "\n".join(_unescape(x, d) for x in get(3).split(d.rep))
            if not text:
                continue
            if target is None:
                anomalies.append(Anomaly("comment", "comment on a patient or unsupported record "
                                                    "not imported", where))
            else:
                target.append(Comment(text=text))
        elif t in IGNORED_RECORDS:
            target = None
        elif t != "":
            raise InvalidRecord("record", "unknown record type")
    assert patient is not None
    built = tuple(
        Order(**o.kw, results=tuple(Result(**kw, comments=tuple(cs)) for kw, cs in o.results),
              comments=tuple(o.comments))  # type: ignore[arg-type]
        for o in orders)
    return PatientRecord(patient=patient, orders=built), source_id, anomalies


def _patient(get: _Get, d: Delimiters, anomalies: list[Anomaly], where: str
             ) -> tuple[Patient, str | None]:
    u = lambda s: _unescape(s, d)  # noqa: E731
    source_id = u(_comps(get(2), d, 1)[0]).strip() or None
    ins = None
    matricule, oid, status = _comps(get(3), d, 3)
    if oid.strip() in _INS_OIDS:
        try:
            identity = IdentityStatus(status.strip() or IdentityStatus.PROVISIONAL.value)
        except ValueError:
            raise InvalidRecord("patient.ins", "unknown identity status") from None
        compact = normalize_nir(u(matricule))
        if not compact:
            raise InvalidRecord("patient.ins", "missing matricule")
        ins = Ins(matricule=compact, oid=_INS_OIDS[oid.strip()], status=identity)
    nir = normalize_nir(u(_comps(get(4), d, 1)[0])) or None
    last, first, second = (u(x) for x in _comps(get(5), d, 3))
    if not last.strip():
        raise InvalidRecord("patient.last_name", "missing")
    birth = _date(get(7), "patient.birth_date")
    code = get(8).strip().upper()
    if not code:
        anomalies.append(Anomaly("patient.sex", "missing: read as unknown", where))
    sex = _SEXES.get(code or "U")
    if sex is None:
        raise InvalidRecord("patient.sex", "unknown sex code")
    a = [u(x) for x in _comps(get(10), d, 6)]
    address = (Address(line1=a[0], postal_code=a[4], city=a[2], line2=a[1] or None,
                       country=a[5] or "FR") if any(a) else None)
    phone = u(_comps(get(12), d, 1)[0]) or None
    patient = Patient(last_name=last, first_names=f"{first} {second}" if second else first,
                      birth_date=birth, sex=sex, birth_name=u(_comps(get(6), d, 1)[0]) or None,
                      nir=nir, ins=ins, address=address, phone=phone)
    return patient, source_id


def _order(get: _Get, d: Delimiters, sender: str, anomalies: list[Anomaly],
           where: str) -> dict[str, object]:
    number = next((c for c in (*get(3).split(d.comp), *get(2).split(d.comp)) if c.strip()), "")
    finess = "".join(_unescape(_comps(get(24), d, 1)[0], d).split()) or sender
    if not finess:
        raise InvalidRecord("H.sender", "no laboratory FINESS")
    return {"lab_finess": finess, "lab_file_number": _unescape(number, d) or None,
            "requested_at": _ts(get(6), "order.requested_at"),
            "sampled_at": _ts(get(7), "order.sampled_at"),
            "prescriber": _prescriber(get(16), d, anomalies, where)}


def _prescriber(raw: str, d: Delimiters, anomalies: list[Anomaly], where: str) -> Prescriber | None:
    last: str | None = None
    first: str | None = None
    ids: dict[int, str] = {}
    for rep in raw.split(d.rep):
        ident, lname, fname = _comps(rep, d, 3)
        if not fname and d.sub in lname:
            lname, fname = [*lname.split(d.sub), ""][:2]
        ident = "".join(_unescape(ident, d).split())
        if ident and ident.isascii() and ident.isdigit() and len(ident) in (9, 11):
            ids.setdefault(len(ident), ident)
        elif ident:
            anomalies.append(Anomaly("order.prescriber", "identifier of unknown kind ignored", where))
        if last is None and lname:
            last, first = _unescape(lname, d), _unescape(fname, d) or None
    if last is None and not ids:
        return None
    return Prescriber(last_name=last or "", first_name=first, rpps=ids.get(11), adeli=ids.get(9))


def _result(get: _Get, d: Delimiters, anomalies: list[Anomaly], where: str) -> dict[str, object]:
    u = lambda s: _unescape(s, d)  # noqa: E731
    kind = get(2).strip().upper()
    if not kind:
        raise InvalidRecord("result.value_type", "missing")
    if kind not in VALUE_TYPES:
        raise InvalidRecord("result.value_type", "unknown value type")
    code, label, system = (u(x) for x in _comps(get(3), d, 3))
    if not code.strip():
        raise InvalidRecord("result.code", "missing")
    raw = get(5)
    if kind == "CE":
        c = _comps(raw, d, 2)
        value = u(c[1]) or u(c[0])
    elif kind == "TX":
        value = "\n".join(u(x) for x in raw.split(d.rep))
    else:
        value = u(raw)
    if kind == "FIC":
        value = "FIC:" + value
        anomalies.append(Anomaly("result.value", "points to an attached report file", where))
    elif kind == "NM" and value.strip() and not _NUMBER.fullmatch(value.strip()):
        anomalies.append(Anomaly("result.value", "value of type NM is not a number", where))
    flag_code = get(8).strip().upper()
    flag = _FLAGS.get(flag_code) if flag_code else None
    if flag_code and flag is None:
        raise InvalidRecord("result.abnormal_flag", "unknown abnormal flag")
    status = _STATUSES.get(get(11).strip().upper())
    if status is None:
        raise InvalidRecord("result.status", "unknown result status")
    return {"code_system": system.strip() or "L", "code": code, "label": label, "value": value,
            "unit": u(get(6)) or None, "reference_range": u(get(7)) or None,
            "abnormal_flag": flag, "status": status,
            "observed_at": _ts(get(14), "result.observed_at")}


__all__ = ["IGNORED_RECORDS", "NOT_CARRIED", "VALUE_TYPES", "read", "sniff", "write"]
