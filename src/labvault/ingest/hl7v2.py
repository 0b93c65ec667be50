"""HL7 v2 (2.3 to 2.5.1) ORU^R01 messages: laboratory results as French labs send them.

A file holds messages (MSH ... up to the next MSH, BHS, BTS, FHS or FTS). A unit is one message,
or one PID group of a message holding several (``Position.segment`` "message 12, patient 2";
the second and later groups' raw bytes start with a copy of the MSH line so they can be
re-read alone). ``Position.line`` is the 1-based number, among the file's non-empty segments
(lines), of the unit's MSH (first group) or PID (later groups).

Syntax. Delimiters come from MSH-1/MSH-2 (any consistent set, not only ``|^~\\&``; a field
separator or encoding characters that are alphanumeric, blank, repeated or missing reject the
message on MSH-1/MSH-2). Segments end with CR, LF or CRLF (when a CR-terminated message holds a
bare LF that leaves a line without a segment name, the LF is read as a line break inside the field,
with an anomaly: some systems let users type line breaks in comments); MLLP blocks (0x0B ... 0x1C 0x0D),
one per message or around a whole batch, are unwrapped; FHS/BHS/BTS/FTS envelopes are counted
in the stats and are not units (their bytes join the next unit, or the previous one for
BTS/FTS). Character set: MSH-18 when given (``UNICODE UTF-8``, ``8859/1`` read as CP1252, whose
printable characters are a superset, ``8859/n``), else detected per message: valid UTF-8 ->
utf-8, else CP1252 with a latin-1 fallback; a UTF-8 BOM is skipped. Escapes ``\\F\\ \\S\\ \\T\\
\\R\\ \\E\\``, ``\\Xhh..\\`` (bytes in the message's character set), ``\\.br\\`` and ``\\.sp\\``
(line feed), ``\\H\\ \\N\\`` and other formatting (dropped) and the local ``\\ZUhhhh\\`` (a
code point, written by `labvault.ingest.hl7v2_write`) are decoded by this module's own splitter;
an unknown escape is kept as written. python-hl7 (installed) is not used: its splitting alone
reads about 6,000 results/s where this whole reader does about 50,000, its ``unescape`` logs the
field value when an escape is malformed, and it checks with ``assert`` (gone under ``python -O``).

Mapping (domain field <- HL7 field):

  patient.last_name / birth_name  PID-5 XPN.1 of the repetition of type D (nom utilisé) / L (nom
                                  de naissance, ANS/IHE PAM France), B or M also birth name; an
                                  untyped repetition is the last name; L alone is both
  patient.first_names             PID-5 XPN.2, or XPN.3 when it holds the full list of given
                                  names (ANS INS), else XPN.2 + " " + XPN.3
  patient.birth_date              PID-7 (YYYYMMDD, time ignored)           (required)
  patient.sex                     PID-8 M/F/O/U, A -> O, N or empty -> U
  patient.ins                     PID-3 repetition typed INS with authority OID
                                  1.2.250.1.213.1.4.8/.9/.10/.11 (ASIP-SANTE-INS-NIR&OID&ISO)
  patient.ins.status              PID-32 VALI/QUAL/PROV/RECUP (VIDE/DOUTE/FICTI/empty -> PROV)
  patient.nir                     PID-3 repetition typed NH, else PID-19 (spaces removed)
  Parsed.source_patient_id        PID-3 repetition typed PI, else PID-2, else an MR/PT/untyped one
  patient.birth_place             PID-11 repetition typed BDL, XAD.9; else PID-23 if INSEE-shaped
  patient.address                 PID-11 home (H) repetition, else the first postal one: XAD.1
                                  line1, .2 line2, .3 city, .5 postal code, .6 country (FRA -> FR)
  patient.phone / email           PID-13 XTN.12 (2.5) or XTN.1 / XTN.4 of the NET or Internet one
  patient.mandatory_insurance     IN1 with IN1-2 "AMO": IN1-15 scheme, IN1-3 fund, IN1-8 centre,
                                  IN1-22 beneficiary rank (this module's convention; IN1 is not
                                  part of the standard ORU^R01 structure, it is accepted anywhere
                                  in the patient group)
  patient.complementary_insurance IN1 with IN1-2 "AMC": IN1-4 organisation, IN1-3 AMC number,
                                  IN1-36 member id
  order (one per OBR)             lab_file_number OBR-3, ORC-3, OBR-2 or ORC-2; sampled_at OBR-7;
                                  requested_at OBR-6; lab_finess ORC-21 (XON.10, or XON.3 before
                                  2.5) else MSH-4 when FINESS-shaped (required); prescriber
                                  OBR-16, else ORC-12, else PRT-5 of a PRT with role OP. An ORC
                                  applies to the OBRs after it until the next ORC.
  order.prescriber                XCN: id, family, given, ..., id type (XCN.13) RPPS or ADELI;
                                  "8" + RPPS and "0" + ADELI (idNatPs) are recognised; repetitions
                                  of the same field are merged (one per identifier)
  order.comments / result.comments  NTE-3 after OBR (or ORC) / after OBX; repetitions joined by LF
  result                          OBX-3 code^label^system (LOINC -> LN, empty -> LOCAL); OBX-5
                                  by OBX-2: NM/ST/TX/FT... as text, CE/CWE/CNE/CF -> label or code,
                                  SN -> its parts joined ("<5", "1:128"); ED/RP skipped with an
                                  anomaly; OBX-6 unit, OBX-7 reference range, OBX-8 flag
                                  (N/L/H/LL/HH/A, AA -> A, others ignored with an anomaly), OBX-11
                                  F/P/C/X (R, S -> P; D, W -> X; I, N, O, U: no result, skipped;
                                  others rejected), OBX-14 observed_at

Times without an offset are Europe/Paris; an offset (``+0200``) is honoured. PV1, SPM, SFT, TQ1,
Z-segments and other segments are counted in the stats and ignored; an NTE after the PID
(patient comment) is ignored with an anomaly. A message without PID, with ORC/OBR/OBX before its
PID, or whose MSH-9 is not ORU^R01 is rejected whole; an OBX before any OBR rejects its group.
A message without OBR gives a patient without orders. Truncation: at the end of the file, a
message still inside an MLLP block, or whose last segment has no terminator and is not a
complete result-level segment (an OBX reaching OBX-11, an SPM or a Z-segment), is rejected as
truncated (e.g. an MSH and a PID cut mid-segment). Lines before the first MSH or after a BTS/FTS
that are not segments of a message become a unit "text outside any message".

`NOT_CARRIED` is empty: every domain field has a place (IN1 as above); times keep 1/10,000 s.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import BinaryIO

from labvault.domain.normalize import normalize_nir
from labvault.domain.records import (
    AbnormalFlag,
    Address,
    Comment,
    ComplementaryInsurance,
    IdentityStatus,
    Ins,
    InsOid,
    MandatoryInsurance,
    Order,
    Patient,
    PatientRecord,
    Prescriber,
    Result,
    ResultStatus,
    Sex,
)
from labvault.errors import InvalidRecord
from labvault.ingest.base import Anomaly, Parsed, Position, ReadStats, Rejected, Unit, sha256
from labvault.ingest.hl7v2_write import PARIS, write

__all__ = ["NOT_CARRIED", "PARIS", "read", "sniff", "write"]

NOT_CARRIED: frozenset[str] = frozenset()

MAX_UNIT_BYTES = 64 << 20  # a message larger than this is cut and rejected
_CHUNK = 1 << 20
_SEGMENT_NAME = re.compile(rb"[A-Z][A-Z0-9]{2}")
_SNIFF = re.compile(rb"(?:^|[\r\n\x0b])(?:MSH|FHS|BHS)([^A-Za-z0-9\s])"
                    rb"(?:(?!\1)[^A-Za-z0-9\s]){2,5}\1")
_C1 = re.compile(rb"[\x80-\x9f]")
_DTM = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
                  r"(?:\.([0-9]{1,4}))?)?)?)?([+-][0-9]{4})?")
_INSEE = re.compile(r"(?:[0-9]{5}|2[AB][0-9]{3})")
_FINESS = re.compile(r"(?:[0-9]{9}|2[AB][0-9]{7})")
_DIGITS = re.compile(r"[0-9]+")
_BOUNDARY = re.compile(rb"[\r\n\x1c]\x0b*(?:MSH|[BF]HS|[BF]TS)")
_CR_LINE = re.compile(rb"[^\r]*(?:\r\n|\r)|[^\r]+\Z")
_FIRST_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_OWN_COUNTS = frozenset({b"junk", b"truncated", b"oversized"})
_ENVELOPE = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
_FORBIDDEN = "\r\n\x0b\x1c"

_INS_OIDS = {o.value: o for o in InsOid}
_INS_TYPES = frozenset({"INS", "INS-NIR", "INS-NIA"})
_STATUSES_ID = {"VALI": IdentityStatus.VALIDATED, "QUAL": IdentityStatus.QUALIFIED,
                "PROV": IdentityStatus.PROVISIONAL, "RECUP": IdentityStatus.RECOVERED}
_WEAK_STATUSES = frozenset({"", "VIDE", "DOUTE", "FICTI"})
_SEX = {"M": Sex.MALE, "F": Sex.FEMALE, "O": Sex.OTHER, "U": Sex.UNKNOWN, "A": Sex.OTHER,
        "N": Sex.UNKNOWN, "": Sex.UNKNOWN}
_FLAGS = {f.value: f for f in AbnormalFlag} | {"AA": AbnormalFlag.ABNORMAL}
_RESULT_STATUS = {"F": ResultStatus.FINAL, "P": ResultStatus.PRELIMINARY,
                  "C": ResultStatus.CORRECTED, "X": ResultStatus.CANCELLED,
                  "R": ResultStatus.PRELIMINARY, "S": ResultStatus.PRELIMINARY,
                  "D": ResultStatus.CANCELLED, "W": ResultStatus.CANCELLED, "": ResultStatus.FINAL}
_NO_RESULT = frozenset({"I", "N", "O", "U"})
_TEXT_TYPES = frozenset({"ST", "TX", "FT", "NM", "ID", "IS", "DT", "TM", "DTM", "TS", "NA", "SI"})
_PLAIN_TYPES = frozenset({"NM", "ST", "TX", "FT"})
_CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})
_SKIPPED_TYPES = frozenset({"ED", "RP"})
_SYSTEMS = {"LOINC": "LN", "": "LOCAL"}
_NOT_POSTAL = frozenset({"BDL", "BR", "BA", "B", "O", "F", "BI"})
_CHARSET_ALIASES = {"UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UTF8": "utf-8",
                    "UNICODE": "utf-8", "8859/1": "iso-8859-1", "CP1252": "cp1252",
                    "WINDOWS-1252": "cp1252", "ASCII": ""}
_PARSE_ERRORS = (InvalidRecord, ValueError, KeyError, IndexError, UnicodeError, OverflowError,
                 TypeError, AttributeError)


# ---------------------------------------------------------------- delimiters and escapes


class _Delims:
    """One message's delimiters and character set; ``u`` unescapes a leaf value."""

    __slots__ = ("_simple", "_sub", "cs", "encoding", "esc", "fs", "not_segment", "rs", "ss", "u")

    def __init__(self, fs: str, cs: str, rs: str, esc: str, ss: str, encoding: str) -> None:
        self.fs, self.cs, self.rs, self.esc, self.ss = fs, cs, rs, esc, ss
        self.encoding = encoding
        self._simple = {"F": fs, "S": cs, "R": rs, "E": esc, "T": ss, "H": "", "N": "",
                        ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": "",
                        ".in": "", ".ti": "", ".sk": " "}
        e = re.escape(esc)
        self._sub = re.compile(f"{e}([^{e}]*){e}").sub if esc else None
        self.u = self._unescape if esc else _identity
        # a line start not followed by a segment name and the field separator
        self.not_segment = re.compile(rf"\r(?![A-Z][A-Z0-9]{{2}}(?:{re.escape(fs)}|\r|$))")

    def _unescape(self, text: str) -> str:
        if self.esc not in text or self._sub is None:
            return text
        return self._sub(self._sequence, text)

    def _sequence(self, m: re.Match[str]) -> str:
        s = m.group(1)
        simple = self._simple.get(s)
        if simple is not None:
            return simple
        if s[:1] == "X" and len(s) % 2 == 1 and len(s) > 1 and _is_hex(s[1:]):
            data = bytes.fromhex(s[1:])
            try:
                return data.decode(self.encoding)
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if s[:2] == "ZU" and 4 <= len(s) - 2 <= 6 and _is_hex(s[2:]):
            cp = int(s[2:], 16)
            if cp <= 0x10FFFF and not 0xD800 <= cp <= 0xDFFF:
                return chr(cp)
        if s[:3] in (".sp", ".sk", ".in", ".ti") and _DIGITS.fullmatch(s[3:].lstrip("+-")):
            return "\n" if s[:3] == ".sp" else ""
        return m.group(0)


def _identity(text: str) -> str:
    return text


def _is_hex(s: str) -> bool:
    return s.isascii() and all(c in "0123456789abcdefABCDEF" for c in s)


@functools.lru_cache(maxsize=64)
def _delims(fs: str, cs: str, rs: str, esc: str, ss: str, encoding: str) -> _Delims:
    return _Delims(fs, cs, rs, esc, ss, encoding)


def _separators(msh: str) -> tuple[str, str, str, str, str]:
    """MSH-1 and MSH-2: field, component, repetition, escape, subcomponent characters."""
    fs = msh[3:4]
    if not fs or fs.isalnum() or fs.isspace() or fs in _FORBIDDEN:
        raise InvalidRecord("MSH-1", "invalid field separator")
    end = msh.find(fs, 4)
    enc = msh[4:end] if end != -1 else msh[4:]
    chars = fs + enc
    if (not 2 <= len(enc) <= 5 or len(set(chars)) != len(chars)
            or any(c.isalnum() or c.isspace() or c in _FORBIDDEN for c in enc)):
        raise InvalidRecord("MSH-2", "invalid encoding characters")
    cs, rs = enc[0], enc[1]
    esc = enc[2] if len(enc) > 2 else ""
    ss = enc[3] if len(enc) > 3 else ("&" if "&" not in chars else "")
    return fs, cs, rs, esc, ss


def _charset(declared: str) -> tuple[str | None, bool]:
    """Python codec for MSH-18 (None: detect) and whether the value was understood."""
    d = declared.strip().upper()
    if not d:
        return None, True
    if d in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[d] or None, True
    m = re.fullmatch(r"8859/([0-9]{1,2})", d)
    if m and int(m.group(1)) in (*range(2, 12), 13, 14, 15, 16):
        return f"iso-8859-{int(m.group(1))}", True
    return None, False


def _decode(data: bytes, charset: str | None) -> tuple[str, str, str]:
    """Text, codec used and the label reported in the stats."""
    if data.isascii():
        return data.decode("ascii"), "ascii", "ascii"
    if charset in (None, "utf-8"):
        try:
            return data.decode("utf-8"), "utf-8", "utf-8"
        except UnicodeDecodeError:
            charset = None
    if charset in (None, "iso-8859-1", "cp1252"):
        label = "cp1252" if charset == "cp1252" or _C1.search(data) else "iso-8859-1"
        try:
            return data.decode("cp1252"), "cp1252", label
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            return data.decode("latin-1"), "latin-1", "iso-8859-1"
    try:
        return data.decode(charset), charset, charset
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", "iso-8859-1"


# ---------------------------------------------------------------- values


def _c(parts: list[str], i: int) -> str:
    return parts[i] if i < len(parts) else ""


def _pad(parts: list[str], n: int) -> list[str]:
    if len(parts) < n:
        parts += [""] * (n - len(parts))
    return parts


def _err(field: str, reason: str, name: str, line: int) -> InvalidRecord:
    return InvalidRecord(field, reason, f"{name} at line {line}")


_ZONES: dict[str, tzinfo] = {}


def _zone(offset: str) -> tzinfo:
    tz = _ZONES.get(offset)
    if tz is None:
        sign = -1 if offset[0] == "-" else 1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        tz = _ZONES[offset] = timezone(sign * delta)
    return tz


def _dtm(text: str, field: str, source: str) -> datetime | None:
    s = text.strip()
    if not s:
        return None
    m = _DTM.fullmatch(s)
    if m is None:
        raise InvalidRecord(field, f"not an HL7 date/time: expected YYYYMMDD[HHMM[SS]] ({source})")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        return datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
                        int(frac.ljust(4, "0")) * 100 if frac else 0,
                        tzinfo=PARIS if off is None else _zone(off))
    except ValueError:
        raise InvalidRecord(field, f"not a valid date/time ({source})") from None


def _birth_date(text: str) -> date:
    s = text.strip()
    if not s:
        raise InvalidRecord("patient.birth_date", "missing (PID-7)")
    m = _DTM.fullmatch(s)
    if m is None:
        raise InvalidRecord("patient.birth_date", "not an HL7 date: expected YYYYMMDD (PID-7)")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise InvalidRecord("patient.birth_date", "not a valid date (PID-7)") from None


def _given(given: str, further: str) -> str:
    if not given:
        return further
    if further and (further == given or further.startswith(given + " ")):
        return further
    return f"{given} {further}" if further else given


class _Ctx:
    """What a group parser needs: delimiters, anomalies, the MSH's FINESS."""

    __slots__ = ("anomalies", "d", "finess")

    def __init__(self, d: _Delims, finess: str | None) -> None:
        self.d, self.finess = d, finess
        self.anomalies: list[Anomaly] = []

    def note(self, field: str, reason: str, name: str, line: int) -> None:
        self.anomalies.append(Anomaly(field, reason, f"{name} at line {line}"))


# ---------------------------------------------------------------- patient


def _names(field: str, x: _Ctx) -> tuple[str, str, str | None]:
    """Last name, first names and birth name from the PID-5 repetitions (see the docstring)."""
    d = x.d
    usual = untyped = legal = maiden = None
    for rep in field.split(d.rs):
        c = rep.split(d.cs)
        family = d.u(c[0].split(d.ss)[0] if d.ss else c[0]).strip()
        entry = (family, _given(d.u(_c(c, 1)).strip(), d.u(_c(c, 2)).strip()))
        kind = _c(c, 6).strip().upper()
        if kind == "D":
            usual = usual or entry
        elif kind == "L":
            legal = legal or entry
        elif kind in ("B", "M"):
            maiden = maiden or entry
        elif not kind and (family or entry[1]):
            untyped = untyped or entry
    birth = legal or maiden
    last = usual or untyped or birth
    if last is None or not last[0]:
        raise InvalidRecord("patient.last_name", "missing (PID-5)")
    first = (legal[1] if legal else "") or last[1] or (birth[1] if birth else "")
    if not first:
        raise InvalidRecord("patient.first_names", "missing (PID-5)")
    return last[0], first, (birth[0] or None) if birth else None


def _identifiers(f: list[str], x: _Ctx, line: int) -> tuple[tuple[str, InsOid] | None,
                                                           str | None, str | None]:
    d = x.d
    ins = nir = source = fallback = None
    for rep in f[3].split(d.rs):
        c = rep.split(d.cs)
        value = d.u(c[0]).strip()
        if not value:
            continue
        kind = _c(c, 4).strip().upper()
        auth = _c(c, 3).split(d.ss) if d.ss else [_c(c, 3)]
        oid = _c(auth, 1).strip()
        if kind in _INS_TYPES or (not kind and oid in _INS_OIDS):
            if oid not in _INS_OIDS:
                raise _err("patient.ins", "unknown assigning authority oid (PID-3)", "PID", line)
            if ins is None:
                ins = (normalize_nir(value), _INS_OIDS[oid])
            else:
                x.note("patient.ins", "second INS ignored (PID-3)", "PID", line)
        elif kind == "INS-C":
            x.note("patient.ins", "obsolete INS-C ignored (PID-3)", "PID", line)
        elif kind == "NH":
            nir = nir or normalize_nir(value)
        elif kind == "PI":
            source = source or value
        elif kind in ("", "MR", "PT", "PN"):
            fallback = fallback or value
    if nir is None and f[19].strip():
        nir = normalize_nir(d.u(f[19].split(d.cs)[0])) or None
    if source is None:
        source = d.u(f[2].split(d.rs)[0].split(d.cs)[0]).strip() or fallback
    return ins, nir, source


def _identity_status(field: str, x: _Ctx, line: int) -> IdentityStatus:
    codes = [r.split(x.d.cs)[0].strip().upper() for r in field.split(x.d.rs)]
    for code in codes:
        if code in _STATUSES_ID:
            return _STATUSES_ID[code]
    if all(code in _WEAK_STATUSES for code in codes):
        x.note("patient.ins.status", "no INS identity status (PID-32): provisional", "PID", line)
        return IdentityStatus.PROVISIONAL
    raise _err("patient.ins", "unknown identity status (PID-32)", "PID", line)


def _addresses(field: str, x: _Ctx) -> tuple[Address | None, str | None]:
    d = x.d
    home: list[str] | None = None
    other: list[str] | None = None
    birth_place = None
    for rep in field.split(d.rs):
        c = [d.u(v).strip() for v in rep.split(d.cs)]
        if d.ss:
            c[0] = c[0].split(d.ss)[0]
        kind = _c(c, 6).upper()
        if kind == "BDL":
            birth_place = birth_place or _c(c, 8) or None
        elif kind not in _NOT_POSTAL and (c[0] or _c(c, 1) or _c(c, 2) or _c(c, 4)):
            if kind == "H":
                home = home or c
            else:
                other = other or c
    c = home or other
    if c is None:
        return None, birth_place
    country = _c(c, 5)
    address = Address(line1=c[0], postal_code=_c(c, 4), city=_c(c, 2), line2=_c(c, 1) or None,
                      country="FR" if country in ("", "FRA") else country)
    return address, birth_place


def _telecom(field: str, x: _Ctx) -> tuple[str | None, str | None]:
    d = x.d
    phone = email = None
    for rep in field.split(d.rs):
        c = [d.u(v).strip() for v in rep.split(d.cs)]
        use, equipment = _c(c, 1).upper(), _c(c, 2).upper()
        if use == "NET" or equipment in ("INTERNET", "X.400"):
            email = email or _c(c, 3) or ("@" in c[0] and c[0]) or None
        else:
            phone = phone or _c(c, 11) or c[0] or (_c(c, 5) + _c(c, 6)) or None
    return phone, email


def _insurance(f: list[str], x: _Ctx, line: int
               ) -> MandatoryInsurance | ComplementaryInsurance | None:
    d = x.d
    _pad(f, 37)

    def v(i: int) -> str:
        return d.u(f[i].split(d.rs)[0].split(d.cs)[0]).strip()

    kind = v(2).upper()
    if kind == "AMO":
        rank = v(22) or "1"
        if not (rank.isascii() and rank.isdigit()):
            raise _err("patient.mandatory_insurance", "beneficiary rank not a number (IN1-22)",
                       "IN1", line)
        return MandatoryInsurance(scheme=v(15), fund=v(3), centre=v(8) or None,
                                  beneficiary_rank=int(rank))
    if kind == "AMC":
        org = d.u(f[4].split(d.rs)[0].split(d.cs)[0]).strip()
        return ComplementaryInsurance(organisation=org, amc_number=v(3) or None,
                                      member_id=v(36) or None)
    x.note("IN1", "insurance plan other than AMO/AMC ignored (IN1-2)", "IN1", line)
    return None


def _patient(f: list[str], x: _Ctx, line: int) -> tuple[dict[str, object], str | None]:
    """The Patient's fields (insurances come later, from IN1) and the source patient id."""
    d = x.d
    _pad(f, 33)
    ins_id, nir, source = _identifiers(f, x, line)
    last, first, birth_name = _names(f[5], x)
    sex = _SEX.get(f[8].split(d.cs)[0].strip().upper())
    if sex is None:
        raise _err("patient.sex", "unknown sex code (PID-8)", "PID", line)
    birth = _birth_date(f[7].split(d.cs)[0])
    address, birth_place = _addresses(f[11], x)
    pid23 = d.u(f[23].split(d.cs)[0]).strip()
    if birth_place is None and pid23:
        if _INSEE.fullmatch(pid23.upper()):
            birth_place = pid23.upper()
        else:
            x.note("patient.birth_place", "free-text birth place ignored (PID-23)", "PID", line)
    phone, email = _telecom(f[13], x)
    ins = None
    if ins_id is not None:
        ins = Ins(matricule=ins_id[0], oid=ins_id[1], status=_identity_status(f[32], x, line))
    fields = {"last_name": last, "first_names": first, "birth_date": birth, "sex": sex,
              "birth_name": birth_name, "nir": nir, "ins": ins, "birth_place": birth_place,
              "address": address, "phone": phone, "email": email}
    return fields, source


# ---------------------------------------------------------------- orders and results


def _ps_ids(code: str, kind: str) -> tuple[str | None, str | None]:
    code = "".join(code.split())
    if kind == "RPPS":
        return (code[1:] if len(code) == 12 and code[0] == "8" else code), None
    if kind == "ADELI":
        return None, (code[1:] if len(code) == 10 and code[0] == "0" else code)
    if not (code.isascii() and code.isdigit()):
        return None, None
    if len(code) == 11 or (len(code) == 12 and code[0] == "8"):
        return code[-11:], None
    if len(code) == 9 or (len(code) == 10 and code[0] == "0"):
        return None, code[-9:]
    return None, None


def _prescriber(field: str, x: _Ctx) -> Prescriber | None:
    if not field:
        return None
    d = x.d
    last = first = rpps = adeli = None
    for rep in field.split(d.rs):
        c = rep.split(d.cs)
        family = d.u(_c(c, 1).split(d.ss)[0] if d.ss else _c(c, 1)).strip()
        if family and last is None:
            last, first = family, d.u(_c(c, 2)).strip() or None
        code = d.u(c[0]).strip()
        if code:
            r, a = _ps_ids(code, _c(c, 12).strip().upper())
            rpps, adeli = rpps or r, adeli or a
    if last is None and rpps is None and adeli is None:
        return None
    return Prescriber(last_name=last or "", first_name=first, rpps=rpps, adeli=adeli)


def _facility(field: str, x: _Ctx) -> str | None:
    d = x.d
    c = field.split(d.rs)[0].split(d.cs)
    for value in (_c(c, 9), _c(c, 2)):
        if value.strip():
            return d.u(value).strip()
    name = d.u(c[0]).strip()
    return name if _FINESS.fullmatch(name) else None


def _value(raw: str, kind: str, x: _Ctx, line: int) -> str | None:
    d = x.d
    if kind in _TEXT_TYPES:
        return "\n".join(d.u(r) for r in raw.split(d.rs)) if d.rs in raw else d.u(raw)
    if kind in _CODED_TYPES:
        out = []
        for rep in raw.split(d.rs):
            c = rep.split(d.cs)
            out.append(d.u(_c(c, 1)) or d.u(c[0]))
        return "\n".join(out)
    if kind == "SN":
        return "".join(d.u(v) for v in raw.split(d.cs)[:4])
    if kind in _SKIPPED_TYPES:
        x.note("result", "encapsulated data or reference not imported (OBX-2)", "OBX", line)
        return None
    if not kind:
        if raw:
            x.note("result.value", "no value type (OBX-2): read as text", "OBX", line)
        return d.u(raw)
    raise _err("result.value", "unsupported value type (OBX-2)", "OBX", line)


def _result(f: list[str], x: _Ctx, line: int) -> Result | None:
    d = x.d
    u, cs = d.u, d.cs
    if len(f) < 15:
        f += [""] * (15 - len(f))
    ident = f[3].split(cs)
    n = len(ident)
    code = u(ident[0]).strip()
    if not code:
        raise _err("result.code", "missing (OBX-3)", "OBX", line)
    status = _RESULT_STATUS.get(f[11])
    if status is None:
        status_code = f[11].strip().upper()
        status = _RESULT_STATUS.get(status_code)
        if status is None and status_code in _NO_RESULT:
            x.note("result.status", "no result yet (OBX-11): skipped", "OBX", line)
            return None
        if status is None:
            raise _err("result.status", "unknown result status (OBX-11)", "OBX", line)
    raw = f[5]
    if f[2] in _PLAIN_TYPES and d.rs not in raw:
        value: str | None = u(raw)
    else:
        value = _value(raw, f[2].split(cs)[0].strip().upper(), x, line)
        if value is None:
            return None
    system = u(ident[2]).strip() if n > 2 else ""
    if system != "LN":
        system = _SYSTEMS.get(system.upper(), system)
    unit = f[6]
    if cs in unit:
        parts = unit.split(cs)
        unit = u(parts[0]).strip() or u(parts[1]).strip()
    else:
        unit = u(unit).strip()
    flag_code = f[8]
    flag = _FLAGS.get(flag_code) if flag_code else None
    if flag is None and flag_code:
        flag_code = flag_code.split(d.rs)[0].split(cs)[0].strip().upper()
        flag = _FLAGS.get(flag_code)
        if flag is None and flag_code:
            x.note("result.abnormal_flag", "unknown abnormal flag ignored (OBX-8)", "OBX", line)
    observed = f[14]
    if observed:
        observed = _dtm(observed.split(cs)[0] if cs in observed else observed,
                        "result.observed_at", "OBX-14")
    return Result(system, code, u(ident[1]) if n > 1 else "", value, unit or None,
                  u(f[7]) or None, flag, status, observed or None)


class _OrderParts:
    __slots__ = ("comments", "line", "obr", "orc", "prt", "results")

    def __init__(self, obr: list[str], orc: list[str] | None, line: int,
                 comments: list[Comment], prt: Prescriber | None) -> None:
        self.obr, self.orc, self.line, self.comments, self.prt = obr, orc, line, comments, prt
        self.results: list[Result] = []

    def build(self, x: _Ctx) -> Order:
        d, obr, orc = x.d, _pad(self.obr, 26), self.orc
        if orc is not None:
            _pad(orc, 22)
        numbers = (obr[3], orc[3] if orc else "", obr[2], orc[2] if orc else "")
        lab_file = next((v for v in (d.u(n.split(d.cs)[0]).strip() for n in numbers) if v), None)
        finess = (_facility(orc[21], x) if orc else None) or x.finess
        if not finess:
            raise _err("order.lab_finess", "missing (ORC-21, MSH-4)", "OBR", self.line)
        try:
            sampled = _dtm(obr[7].split(d.cs)[0], "order.sampled_at", "OBR-7")
            requested = _dtm(obr[6].split(d.cs)[0], "order.requested_at", "OBR-6")
        except InvalidRecord as e:
            raise _err(e.field, e.reason, "OBR", self.line) from None
        prescriber = (_prescriber(obr[16], x) or (_prescriber(orc[12], x) if orc else None)
                      or self.prt)
        return Order(lab_finess=finess, sampled_at=sampled, requested_at=requested,
                     prescriber=prescriber, lab_file_number=lab_file,
                     results=tuple(self.results), comments=tuple(self.comments))


def _group(segs: list[str], line0: int, x: _Ctx) -> tuple[PatientRecord, str | None]:
    """One PID group (PID first, on line ``line0``) into a record; raises InvalidRecord."""
    d = x.d
    fs = d.fs
    try:
        fields, source = _patient(segs[0].split(fs), x, line0)
    except InvalidRecord as e:
        if e.position is None:
            raise _err(e.field, e.reason, "PID", line0) from None
        raise
    mandatory = complementary = None
    orders: list[_OrderParts] = []
    cur: _OrderParts | None = None
    orc: list[str] | None = None
    pending: list[Comment] = []
    pending_prt: Prescriber | None = None
    ctx = "PID"
    for i in range(1, len(segs)):
        s = segs[i]
        name = s[:3]
        if name == "OBX":
            if cur is None:
                raise _err("result", "OBX outside any order: no OBR before it", name, line0 + i)
            try:
                r = _result(s.split(fs), x, line0 + i)
            except InvalidRecord as e:
                if e.position is None:
                    raise _err(e.field, e.reason, name, line0 + i) from None
                raise
            if r is not None:
                cur.results.append(r)
            ctx = "OBX" if r is not None else "SKIP"
        elif name == "NTE":
            text = "\n".join(d.u(r) for r in _c(s.split(fs), 3).split(d.rs))
            if not text:
                continue
            if ctx == "OBX" and cur is not None:
                last = cur.results[-1]
                cur.results[-1] = replace(last, comments=(*last.comments, Comment(text=text)))
            elif ctx == "OBR" and cur is not None:
                cur.comments.append(Comment(text=text))
            elif ctx == "ORC":
                pending.append(Comment(text=text))
            else:
                x.note("comment", "comment outside any order or result ignored", name, line0 + i)
        elif name == "OBR":
            cur = _OrderParts(s.split(fs), orc, line0 + i, pending, pending_prt)
            orders.append(cur)
            pending, pending_prt, ctx = [], None, "OBR"
        elif name == "ORC":
            orc, ctx = s.split(fs), "ORC"
        elif name == "PRT":
            f = s.split(fs)
            if _c(f, 4).split(d.cs)[0].strip().upper() == "OP":
                p = _prescriber(_c(f, 5), x)
                if ctx == "ORC":
                    pending_prt = pending_prt or p
                elif cur is not None and cur.prt is None:
                    cur.prt = p
        elif name == "IN1":
            ins = _insurance(s.split(fs), x, line0 + i)
            if isinstance(ins, MandatoryInsurance):
                mandatory = mandatory or ins
            elif ins is not None:
                complementary = complementary or ins
        elif name == "SPM":
            ctx = "SKIP"
    patient = Patient(**fields, mandatory_insurance=mandatory,  # type: ignore[arg-type]
                      complementary_insurance=complementary)
    if not orders:
        x.note("OBR", "message without OBR: patient without results", "PID", line0)
    return PatientRecord(patient=patient, orders=tuple(o.build(x) for o in orders)), source


# ---------------------------------------------------------------- streaming


def _contents(lines: list[bytes]) -> list[bytes]:
    """Lines without MLLP framing bytes."""
    return [line.lstrip(b"\x0b").rstrip(b"\x1c") for line in lines]


def _complete_tail(content: bytes, fs: bytes) -> bool:
    """Whether an unterminated last segment can stand as complete (see the docstring)."""
    name = content[:3]
    if name == b"OBX":
        return bool(fs) and content.count(fs) >= 11
    return name == b"SPM" or (name[:1] == b"Z" and _SEGMENT_NAME.fullmatch(name) is not None)


class _Message:
    """A message's bytes waiting for what follows it (BTS/FTS lines join its raw bytes)."""

    __slots__ = ("eof", "first_line", "lead", "mllp_open", "region", "segments", "tail")

    def __init__(self, region: bytes, lead: bytes, segments: list[bytes], first_line: int,
                 mllp_open: bool) -> None:
        self.region, self.lead, self.segments = region, lead, segments
        self.first_line, self.mllp_open = first_line, mllp_open
        self.tail, self.eof = b"", True


class _Reader:
    def __init__(self, stream: BinaryIO, name: str, stats: ReadStats) -> None:
        self.stream, self.stats = stream, stats
        self.fname = name.replace("\\", "/").rsplit("/", 1)[-1]
        self.seqs = itertools.count(1)
        self.messages = 0
        self.number = 0  # non-empty lines seen so far
        self.names: Counter[bytes] = Counter()
        self.ends: Counter[str] = Counter()
        self.encodings: dict[str, None] = {}
        self.versions: dict[str, None] = {}
        self.notes: dict[str, None] = {}
        self.mllp_open = False
        self.first_region = True

    # -- regions: the file cut before every line that starts a message or an envelope

    def regions(self) -> Iterator[tuple[bytes, bool]]:
        """(bytes, cut): ``cut`` when a region reached the size limit without a boundary."""
        buf = b""
        scan = 0
        eof = False
        while not eof:
            chunk = self.stream.read(_CHUNK)
            eof = not chunk
            buf = buf + chunk if buf else chunk
            start = 0
            while True:
                m = _BOUNDARY.search(buf, scan)
                if m is None:
                    scan = max(start, len(buf) - 16)  # a boundary may straddle two chunks
                    break
                after = buf[m.end():m.end() + 1]
                if not after and not eof:
                    scan = m.start()  # an envelope name at the buffer's end: wait for more
                    break
                scan = m.end()
                if buf[m.end() - 3:m.end()] != b"MSH" and after.isalnum():
                    continue  # "BTSX...": not an envelope segment
                yield buf[start:m.start() + 1], False
                start = m.start() + 1
            buf, scan = buf[start:], scan - start
            if len(buf) > MAX_UNIT_BYTES:
                end = max(buf.rfind(b"\r"), buf.rfind(b"\n")) + 1 or len(buf)
                yield buf[:end], True
                buf, scan = buf[end:], 0
        if buf:
            yield buf, False

    def _lines(self, region: bytes) -> list[bytes]:
        """The region's non-empty lines (framing removed), counting line ends and MLLP bytes."""
        if self.first_region:
            self.first_region = False
            if region.startswith(b"\xef\xbb\xbf"):
                region = region[3:]
                self.notes["byte order mark"] = None
                self.encodings["utf-8"] = None
        lines = region.splitlines()
        crlf = region.count(b"\r\n")
        if crlf:
            self.ends["CRLF"] += crlf
        framed = b"\x0b" in region or b"\x1c" in region
        cr = region.count(b"\r") - crlf - (region.count(b"\x1c\r") if framed else 0)
        if cr:
            self.ends["CR"] += cr
        if (lf := region.count(b"\n") - crlf) > 0:
            self.ends["LF"] += lf
        if framed:
            self.notes["MLLP framing"] = None
            opened, closed = region.rfind(b"\x0b"), region.rfind(b"\x1c")
            self.mllp_open = opened > closed
            lines = _contents(lines)
        return [line for line in lines if line and not line.isspace()]

    # -- units

    def units(self) -> Iterator[Unit]:
        lead = b""
        pending: _Message | None = None
        for region, cut in self.regions():
            first_line = self.number + 1
            lines = self._lines(region)
            self.number += len(lines)
            if pending is not None:
                pending.eof = False
            name = lines[0][:3] if lines else b""
            if cut:
                if pending is not None:
                    yield from self._message(pending)
                    pending = None
                self.names[b"oversized"] += 1
                yield Rejected(next(self.seqs), Position(self.fname, first_line), "record",
                               "unit too large: no end within the size limit", lead + region)
                lead = b""
            elif name == b"MSH":
                self.names.update([line[:3] for line in lines])
                if pending is not None:
                    yield from self._message(pending)
                pending, lead = _Message(region, lead, lines, first_line, self.mllp_open), b""
            elif (name in _ENVELOPE and not lines[0][3:4].isalnum()
                  and region.lstrip(b"\xef\xbb\xbf\x0b")[:3] == name):
                self.notes["batch envelope"] = None
                self.names[name] += 1
                head, rest = _split_first_line(region)
                if name in (b"BTS", b"FTS") and pending is not None:
                    pending.tail += head
                    if len(lines) == 1:
                        pending.tail += rest
                        continue
                    yield from self._message(pending)
                    pending, region, first_line = None, rest, first_line + 1
                else:
                    if pending is not None:
                        yield from self._message(pending)
                        pending = None
                    lead += head
                    if len(lines) == 1:
                        lead += rest
                        continue
                    region, first_line = rest, first_line + 1
                yield from self._junk(lead + region, first_line)
                lead = b""
            elif lines:
                if pending is not None:
                    yield from self._message(pending)
                    pending = None
                yield from self._junk(lead + region, first_line)
                lead = b""
            else:
                lead += region
        if pending is not None:
            yield from self._message(pending)

    def _junk(self, raw: bytes, line: int) -> Iterator[Unit]:
        self.names[b"junk"] += 1
        yield Rejected(next(self.seqs), Position(self.fname, line), "record",
                       "text outside any message", raw)

    def _message(self, msg: _Message) -> Iterator[Unit]:
        self.messages += 1
        label = f"message {self.messages}"
        segments, line0 = msg.segments, msg.first_line
        everything = msg.lead + msg.region + msg.tail
        if msg.eof and (msg.mllp_open or (
                msg.region.rstrip(b" \t\x0b")[-1:] not in (b"\r", b"\n", b"\x1c")
                and not _complete_tail(segments[-1], segments[0][3:4]))):
            self.names[b"truncated"] += 1
            yield Rejected(next(self.seqs), Position(self.fname, line0, label), "record",
                           "truncated: the file ends inside this message", everything)
            return
        cr_only = False
        try:
            d, finess, anomalies, texts, text = self._header(segments)
            bad = _malformed(d, text)
            if bad and b"\r" in msg.region and msg.region.count(b"\n") > msg.region.count(b"\r\n"):
                try:  # a line feed typed inside a field of a CR-terminated message?
                    alternative = self._header(_nonblank(_raw_lines(msg.region, True)))
                except _PARSE_ERRORS:
                    alternative = None
                if alternative is not None and not _malformed(alternative[0], alternative[4]):
                    d, finess, anomalies, texts, text = alternative
                    anomalies.append(Anomaly("segment", "line feed inside a segment kept as a "
                                             "line break (line numbers approximate)"))
                    bad, cr_only = set(), True
            pids = [i for i, t in enumerate(texts) if t[:3] == "PID" and i not in bad]
            if not pids:
                raise InvalidRecord("PID", "message without PID segment")
            for i in range(1, pids[0]):
                if i in bad:
                    raise _err("segment", "malformed segment", "segment", line0 + i)
                if texts[i][:3] in ("ORC", "OBR", "OBX"):
                    raise _err("PID", "order or result before the PID segment", texts[i][:3],
                               line0 + i)
        except _PARSE_ERRORS as e:
            field, reason, where = _explain(e)
            segment = f"{label}, {where}" if where else label
            yield Rejected(next(self.seqs), Position(self.fname, line0, segment), field, reason,
                           everything)
            return
        raws = [everything] if len(pids) == 1 else _group_raws(msg, pids, cr_only)
        bounds = [*pids, len(texts)]
        for k, p in enumerate(pids):
            group_label = label if len(pids) == 1 else f"{label}, patient {k + 1}"
            line = line0 if k == 0 else line0 + p
            x = _Ctx(d, finess)
            x.anomalies += anomalies
            try:
                wrong = min((i for i in bad if p <= i < bounds[k + 1]), default=None)
                if wrong is not None:
                    raise _err("segment", "malformed segment", "segment", line0 + wrong)
                record, source = _group(texts[p:bounds[k + 1]], line0 + p, x)
            except _PARSE_ERRORS as e:
                field, reason, where = _explain(e)
                segment = f"{group_label}, {where}" if where else group_label
                yield Rejected(next(self.seqs), Position(self.fname, line, segment), field,
                               reason, raws[k])
                continue
            yield Parsed(next(self.seqs), Position(self.fname, line, group_label), record,
                         sha256(raws[k]), source, tuple(x.anomalies))

    def _header(self, segments: list[bytes]
                ) -> tuple[_Delims, str | None, list[Anomaly], list[str], str]:
        """Delimiters, MSH-4 FINESS, header anomalies, the decoded segments and text."""
        head = segments[0].decode("latin-1")
        fs, cs, rs, esc, ss = _separators(head)
        if fs + cs + rs + esc + ss != "|^~\\&":
            self.notes["non-standard delimiters"] = None
        parts = _pad(head.split(fs), 18)
        kind = parts[8].split(cs)
        if kind[0].strip().upper() != "ORU" or _c(kind, 1).strip().upper() not in ("R01", ""):
            raise InvalidRecord("MSH-9", "not an ORU^R01 message")
        anomalies = []
        version = parts[11].split(cs)[0].strip()
        self.versions[version or "unknown"] = None
        if version not in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1"):
            anomalies.append(Anomaly("MSH-12", "version outside 2.3 to 2.5.1"))
        charset, known = _charset(parts[17].split(rs)[0].split(cs)[0])
        if not known:
            anomalies.append(Anomaly("MSH-18", "unknown character set: detected instead"))
        text, codec, label = _decode(b"\r".join(segments), charset)
        if charset == "utf-8" and codec != "utf-8" and label != "ascii":
            anomalies.append(Anomaly("MSH-18", "not valid UTF-8 as declared: read as CP1252"))
        self.encodings[label] = None
        escapes = bool(esc) and text.find(esc, head.find(fs, 4) + 1) > 0  # past MSH-2 itself
        d = _delims(fs, cs, rs, esc if escapes else "", ss, codec)
        texts = text.split("\r")
        hd = _pad(texts[0].split(fs), 4)[3].split(cs)
        finess = next((v for v in (d.u(_c(hd, 1)).strip(), d.u(hd[0]).strip())
                       if _FINESS.fullmatch(v)), None)
        return d, finess, anomalies, texts, text

    def update_stats(self) -> None:
        st = self.stats
        labels = [e for e in self.encodings if e != "ascii"]
        if len(labels) > 1:
            st.notes.append("character sets: " + ", ".join(labels))
        st.encoding = (labels[0] if len(labels) == 1 else "mixed" if labels
                       else "ascii" if self.encodings else None)
        ends = list(self.ends)
        st.line_ending = ends[0] if len(ends) == 1 else "mixed" if ends else None
        st.version = ", ".join(self.versions) or None
        st.segments.update({k.decode("ascii"): v for k, v in self.names.items()
                            if _SEGMENT_NAME.fullmatch(k) or k in _OWN_COUNTS})
        st.notes.extend(self.notes)


def _split_first_line(region: bytes) -> tuple[bytes, bytes]:
    """The region's first line with its terminator, and the rest."""
    m = _FIRST_LINE.match(region)
    end = m.end() if m else len(region)
    return region[:end], region[end:]


def _raw_lines(region: bytes, cr_only: bool) -> list[bytes]:
    """The region's lines with their ends (CR, LF, CRLF; only CR and CRLF if ``cr_only``)."""
    return _CR_LINE.findall(region) if cr_only else region.splitlines(keepends=True)


def _nonblank(raw_lines: list[bytes]) -> list[bytes]:
    """Segments: lines without their ends and MLLP framing bytes, empty ones left out."""
    out = []
    for i, line in enumerate(_contents([r.rstrip(b"\r\n") for r in raw_lines])):
        if i == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if line and not line.isspace():
            out.append(line)
    return out


def _malformed(d: _Delims, text: str) -> set[int]:
    """Indexes of the segments that do not start with a segment name."""
    if d.not_segment.search(text) is None:
        return set()
    return {text.count("\r", 0, m.end()) for m in d.not_segment.finditer(text)}


def _group_raws(msg: _Message, pids: list[int], cr_only: bool) -> list[bytes]:
    """Raw bytes of each PID group: the first with everything before it, the others
    with a copy of the MSH line so that they can be re-read alone."""
    lines = _raw_lines(msg.region, cr_only)
    starts: list[int] = []
    index, wanted = -1, set(pids)
    for i, line in enumerate(_contents([r.rstrip(b"\r\n") for r in lines])):
        if line and not line.isspace():
            index += 1
            if index in wanted:
                starts.append(i)
    starts.append(len(lines))
    msh = lines[0]
    out = [msg.lead + b"".join(lines[:starts[1]])]
    out += [msh + b"".join(lines[starts[k]:starts[k + 1]]) for k in range(1, len(pids))]
    out[-1] += msg.tail
    return out


def _explain(e: Exception) -> tuple[str, str, str | None]:
    if isinstance(e, InvalidRecord):
        return e.field, e.reason, e.position
    return "record", f"malformed message ({type(e).__name__})", None


def sniff(head: bytes) -> bool:
    """True when the first bytes hold an MSH (or FHS/BHS) segment with its delimiters."""
    head = head[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return _SNIFF.search(head) is not None


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Unit]:
    """Stream the messages (PID groups) of an HL7 v2 file as `Parsed` / `Rejected` units."""
    reader = _Reader(stream, name, stats if stats is not None else ReadStats())
    try:
        yield from reader.units()
    finally:
        reader.update_stats()
