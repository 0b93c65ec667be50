"""Writer of HL7 v2 ORU^R01 messages (see `labvault.ingest.hl7v2_fields` for the field mapping).

One message per `Order` (a patient without orders gets one message with no OBR), each with its
own MSH (unique MSH-10: the order's id), PID, PV1 and IN1 segments, then ORC, OBR, NTE (order
comments), OBX and NTE (result comments). Delimiters are always ``|^~\\&``. Text is escaped
(``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, line feed ``\\.br\\``, other control characters ``\\Xhh\\``);
a character the output encoding cannot represent (``β`` in ISO-8859-1) and C1 controls are
written as the locally defined escape ``\\ZUhhhh\\`` (HL7 2.10.7), which the reader decodes.

Options: ``version`` "2.3", "2.3.1", "2.4", "2.5" or "2.5.1" (before 2.5 the phone goes in
XTN.1 and the lab FINESS in XON.3); ``framing`` "none" or "mllp" (each message in a block,
or the whole batch in one block); ``batch`` wraps the messages in FHS/BHS ... BTS/FTS;
``encoding`` "utf-8" (MSH-18 ``UNICODE UTF-8``), "iso-8859-1" (``8859/1``) or "cp1252"
(MSH-18 left empty: HL7 has no code for it); ``terminator`` CR, LF or CRLF;
``sending_facility_finess`` sets MSH-4 (default: the order's lab); ``bom`` writes a UTF-8
byte order mark; ``prescriber_segment`` "obr" (OBR-16 and ORC-12) or "prt" (a PRT segment
with role OP, as French 2.5.1 messages do); ``national_ps_ids`` writes RPPS as "8" + RPPS and
ADELI as "0" + ADELI (idNatPs); ``insurance`` writes IN1 segments; ``timestamp`` fixes MSH-7.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import BinaryIO

from labvault.domain.records import (
    InsOid,
    Order,
    Patient,
    PatientRecord,
    Prescriber,
    Result,
    ResultStatus,
)
from labvault.ingest.base import BOM, PARIS

__all__ = ["write"]

VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
INS_AUTHORITIES = {InsOid.NIR: "ASIP-SANTE-INS-NIR", InsOid.NIA: "ASIP-SANTE-INS-NIA",
                   InsOid.TEST_NIR: "ASIP-SANTE-INS-NIR-TEST",
                   InsOid.TEST_NIA: "ASIP-SANTE-INS-NIA-TEST"}
PS_AUTHORITY = "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO"
FINESS_AUTHORITY = "ASIP-SANTE-ET&1.2.250.1.71.4.2.2&ISO"
LOCAL_AUTHORITY = "LABVAULT"
STATUS_CODES = {ResultStatus.FINAL: "F", ResultStatus.PRELIMINARY: "P",
                ResultStatus.CORRECTED: "C", ResultStatus.CANCELLED: "X"}
_CHARSETS = {"utf-8": "UNICODE UTF-8", "iso-8859-1": "8859/1", "cp1252": ""}
_FRAMINGS = ("none", "mllp")
_TERMINATORS = (b"\r", b"\n", b"\r\n")
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_SPECIAL = re.compile(r"[\\|^&~\x00-\x1f\x7f-\x9f]")
_ESCAPES = {ord("\\"): "\\E\\", ord("|"): "\\F\\", ord("^"): "\\S\\", ord("&"): "\\T\\",
            ord("~"): "\\R\\", ord("\n"): "\\.br\\"}
_ESCAPES |= {c: f"\\X{c:02X}\\" for c in (*range(0x20), 0x7F) if c not in _ESCAPES}
_ESCAPES |= {c: f"\\ZU{c:04X}\\" for c in range(0x80, 0xA0)}
_ERROR_HANDLER = "labvault-hl7-escape"


def _unencodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(f"\\ZU{ord(c):04X}\\" for c in bad), error.end


codecs.register_error(_ERROR_HANDLER, _unencodable)


def esc(text: str | None) -> str:
    """Text escaped for an HL7 field with the standard delimiters ``|^~\\&``."""
    if not text:
        return ""
    if _SPECIAL.search(text) is None:
        return text
    return text.translate(_ESCAPES)


_OFFSETS: dict[int, str] = {}


def ts(value: datetime | None) -> str:
    """``YYYYMMDDHHMMSS[.SSSS]+ZZZZ`` in Europe/Paris local time (an aware datetime)."""
    if value is None:
        return ""
    local = value.astimezone(PARIS)
    off = local.utcoffset()
    seconds = int(off.total_seconds()) if off is not None else 0
    zone = _OFFSETS.get(seconds)
    if zone is None:
        sign, rest = ("-", -seconds) if seconds < 0 else ("+", seconds)
        zone = _OFFSETS[seconds] = f"{sign}{rest // 3600:02d}{rest % 3600 // 60:02d}"
    frac = f".{local.microsecond // 100:04d}" if local.microsecond else ""
    return (f"{local.year:04d}{local.month:02d}{local.day:02d}{local.hour:02d}"
            f"{local.minute:02d}{local.second:02d}{frac}{zone}")


def _day(value: date) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _given(first_names: str) -> str:
    """XPN.2^XPN.3: first given name, then the full list when there are several (ANS INS)."""
    if " " in first_names:
        return f"{esc(first_names.split(' ', 1)[0])}^{esc(first_names)}"
    return esc(first_names)


def _pid(p: Patient, v25: bool) -> str:
    f = [""] * 33
    f[0], f[1] = "PID", "1"
    ids = []
    if p.ins is not None:
        ids.append(f"{esc(p.ins.matricule)}^^^{INS_AUTHORITIES[p.ins.oid]}&{p.ins.oid.value}"
                   f"&ISO^INS")
    if p.nir:
        ids.append(f"{esc(p.nir)}^^^^NH")
    ids.append(f"{p.id.int % 10**15:015d}^^^{LOCAL_AUTHORITY}^PI")
    f[3] = "~".join(ids)
    given = _given(p.first_names)
    names = [f"{esc(p.last_name)}^{given}{'^' * (6 - given.count('^') - 1)}D"]
    if p.birth_name is not None:
        names.append(f"{esc(p.birth_name)}^{given}{'^' * (6 - given.count('^') - 1)}L")
    f[5] = "~".join(names)
    f[7] = _day(p.birth_date)
    f[8] = p.sex.value
    addresses = []
    if (a := p.address) is not None:
        country = "FRA" if a.country == "FR" else esc(a.country)
        addresses.append(f"{esc(a.line1)}^{esc(a.line2)}^{esc(a.city)}^^{esc(a.postal_code)}"
                         f"^{country}^H")
    if p.birth_place:
        addresses.append(f"^^^^^^BDL^^{esc(p.birth_place)}")
    f[11] = "~".join(addresses)
    phones = []
    if p.phone:
        phones.append(f"^PRN^PH^^^^^^^^^{esc(p.phone)}" if v25 else f"{esc(p.phone)}^PRN^PH")
    if p.email:
        phones.append(f"^NET^Internet^{esc(p.email)}")
    f[13] = "~".join(phones)
    f[32] = p.ins.status.value if p.ins is not None else ""
    return "|".join(f)


def _in1(p: Patient) -> list[str]:
    out = []
    if (m := p.mandatory_insurance) is not None:
        f = [""] * 23
        f[0], f[1], f[2] = "IN1", "1", "AMO^Assurance maladie obligatoire"
        f[3], f[8], f[15] = esc(m.fund), esc(m.centre), esc(m.scheme)
        f[22] = str(m.beneficiary_rank)
        out.append("|".join(f))
    if (c := p.complementary_insurance) is not None:
        f = [""] * 37
        f[0], f[1], f[2] = "IN1", str(len(out) + 1), "AMC^Assurance maladie complementaire"
        f[3], f[4], f[36] = esc(c.amc_number), esc(c.organisation), esc(c.member_id)
        out.append("|".join(f))
    return out


def _xcn(p: Prescriber | None, national: bool) -> str:
    if p is None:
        return ""
    name = f"{esc(p.last_name)}^{esc(p.first_name)}"
    reps = []
    if p.rpps:
        code = f"8{p.rpps}" if national else p.rpps
        reps.append(f"{esc(code)}^{name}^^^^^^{PS_AUTHORITY}^L^^^RPPS")
    if p.adeli:
        code = f"0{p.adeli}" if national else p.adeli
        reps.append(f"{esc(code)}^{name}^^^^^^{PS_AUTHORITY}^L^^^ADELI")
    return "~".join(reps) or f"^{name}"


def _obx(i: int, r: Result) -> str:
    value = r.value
    kind = ("NM" if _NUMBER.fullmatch(value) else
            "TX" if len(value) > 199 or "\n" in value else "ST")
    code = f"{esc(r.code)}^{esc(r.label)}^{esc(r.code_system)}"
    flag = r.abnormal_flag.value if r.abnormal_flag is not None else ""
    return (f"OBX|{i}|{kind}|{code}||{esc(value)}|{esc(r.unit)}|{esc(r.reference_range)}|{flag}"
            f"|||{STATUS_CODES[r.status]}|||{ts(r.observed_at)}")


class _Options:
    __slots__ = ("charset", "national", "prt", "sender", "stamp", "type", "v25", "version",
                 "with_insurance")

    def __init__(self, version: str, encoding: str, sending_facility_finess: str | None,
                 prescriber_segment: str, national_ps_ids: bool, insurance: bool,
                 timestamp: datetime | None) -> None:
        self.version, self.v25 = version, version.startswith("2.5")
        self.type = "ORU^R01" if version == "2.3" else "ORU^R01^ORU_R01"
        self.charset = _CHARSETS[encoding]
        self.sender = sending_facility_finess
        self.prt = prescriber_segment == "prt"
        self.national = national_ps_ids
        self.with_insurance = insurance
        self.stamp = ts(timestamp or datetime.now(PARIS))


def _order(o: Order, opt: _Options) -> list[str]:
    finess = esc(o.lab_finess)
    xon = (f"^^^^^{FINESS_AUTHORITY}^FINEG^^^{finess}" if opt.v25
           else f"^^{finess}^^^{FINESS_AUTHORITY}^FINEG")
    xcn = _xcn(o.prescriber, opt.national)
    lab_file = esc(o.lab_file_number)
    orc = [""] * 22
    orc[0], orc[1], orc[3], orc[21] = "ORC", "RE", lab_file, xon
    obr = [""] * 26
    obr[0], obr[1], obr[3], obr[4] = "OBR", "1", lab_file, "BIO^Examens de biologie medicale^L"
    obr[6], obr[7] = ts(o.requested_at), ts(o.sampled_at)
    final = all(r.status is not ResultStatus.PRELIMINARY for r in o.results)
    obr[25] = "F" if final else "P"
    if not opt.prt:
        orc[12] = obr[16] = xcn
    lines = ["|".join(orc), "|".join(obr)]
    if opt.prt and xcn:
        lines.append(f"PRT||AD||OP^Ordering Provider^HL70912|{xcn}")
    lines += [f"NTE|{i}|L|{esc(c.text)}" for i, c in enumerate(o.comments, 1)]
    for i, r in enumerate(o.results, 1):
        lines.append(_obx(i, r))
        lines += [f"NTE|{j}|L|{esc(c.text)}" for j, c in enumerate(r.comments, 1)]
    return lines


def _msh(control_id: str, finess: str, opt: _Options, name: str = "MSH") -> str:
    return (f"{name}|^~\\&|LABVAULT|{esc(opt.sender or finess)}|||{opt.stamp}||{opt.type}|"
            f"{control_id}|P|{opt.version}|||||FRA|{opt.charset}")


def write(records: Iterable[PatientRecord], out: BinaryIO, *, version: str = "2.5.1",
          framing: str = "none", batch: bool = False, encoding: str = "utf-8",
          terminator: bytes = b"\r", sending_facility_finess: str | None = None,
          bom: bool = False, prescriber_segment: str = "obr", national_ps_ids: bool = False,
          insurance: bool = True, timestamp: datetime | None = None) -> None:
    """Write one ORU^R01 message per order of every record (see the module docstring)."""
    encoding = encoding.lower().replace("latin-1", "iso-8859-1")
    if version not in VERSIONS:
        raise ValueError("version must be one of 2.3, 2.3.1, 2.4, 2.5, 2.5.1")
    if framing not in _FRAMINGS:
        raise ValueError("framing must be 'none' or 'mllp'")
    if encoding not in _CHARSETS:
        raise ValueError("encoding must be utf-8, iso-8859-1 or cp1252")
    if terminator not in _TERMINATORS:
        raise ValueError("terminator must be CR, LF or CRLF")
    if prescriber_segment not in ("obr", "prt"):
        raise ValueError("prescriber_segment must be 'obr' or 'prt'")
    if bom and encoding != "utf-8":
        raise ValueError("a byte order mark needs utf-8")
    opt = _Options(version, encoding, sending_facility_finess, prescriber_segment,
                   national_ps_ids, insurance, timestamp)
    eol = terminator.decode("ascii")
    mllp = framing == "mllp"
    start, end = ("\x0b", "\x1c\r") if mllp and not batch else ("", "")
    head = BOM if bom else b""
    if batch:
        env = opt.sender or ""
        text = (("\x0b" if mllp else "") + _msh("F1", env, opt, "FHS") + eol
                + _msh("B1", env, opt, "BHS") + eol)
        head += text.encode(encoding, _ERROR_HANDLER)
    out.write(head)
    count = 0
    for record in records:
        p = record.patient
        patient = [_pid(p, opt.v25), "PV1|1|O"]
        if insurance:
            patient += _in1(p)
        messages = []
        for o in record.orders or (None,):
            lines = [_msh((o or p).id.hex[:20], o.lab_finess if o else "", opt), *patient]
            if o is not None:
                lines += _order(o, opt)
            messages.append(start + eol.join(lines) + eol + end)
        count += len(messages)
        out.write("".join(messages).encode(encoding, _ERROR_HANDLER))
    if batch:
        out.write((f"BTS|{count}{eol}FTS|1{eol}" + ("\x1c\r" if mllp else "")).encode("ascii"))
