"""HL7 v2 ORU^R01 segments to domain records: the field mapping of `labvault.ingest.hl7v2`.

`_group` reads one PID group (the PID segment and the segments after it, already decoded and
cut by `labvault.ingest.hl7v2`) into a `PatientRecord`; it raises `InvalidRecord` (field,
reason, "SEG at line N") and notes anomalies in its `_Ctx`.

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

Times without an offset are Europe/Paris; an offset (``+0200``) is honoured; times keep
1/10,000 s. PV1, SPM, SFT, TQ1, Z-segments and other segments of the group are ignored; an NTE
after the PID (patient comment) is ignored with an anomaly. An OBX before any OBR rejects its
group; a group without OBR gives a patient without orders. Every domain field has a place (IN1
as above), hence an empty `labvault.ingest.hl7v2.NOT_CARRIED`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone, tzinfo

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
from labvault.ingest.base import Anomaly
from labvault.ingest.hl7v2_syntax import _c, _Delims, _pad
from labvault.ingest.hl7v2_write import PARIS

_DTM = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
                  r"(?:\.([0-9]{1,4}))?)?)?)?([+-][0-9]{4})?")
_INSEE = re.compile(r"(?:[0-9]{5}|2[AB][0-9]{3})")
_FINESS = re.compile(r"(?:[0-9]{9}|2[AB][0-9]{7})")

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


# ---------------------------------------------------------------- values


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
