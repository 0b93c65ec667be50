"""FHIR R4 (4.0.1) JSON: Bundles and bulk-export NDJSON of laboratory data.

Variants read
    * a JSON Bundle of type collection, transaction, batch, searchset or document, in a file of
      its own (pretty-printed or not). Such a file is **loaded whole** into memory: JSON gives no
      way to stream one object, so keep single-Bundle files to a reasonable size;
    * NDJSON (bulk export), streamed line by line with flat memory: (a) one Bundle per line,
      (b) one resource per line, a Patient then the resources referencing it (Practitioner,
      Organization and PractitionerRole lines may come anywhere: they are shared and kept for
      the groups after them); (a) and (b) lines may be mixed. Blank lines are skipped, a UTF-8
      BOM is accepted, line ends may be LF or CRLF.

Units
    One unit per Patient: the Patient and the resources whose ``subject`` / ``patient`` /
    ``beneficiary`` is that Patient, with the resources they reference. In NDJSON (b) a group
    ends at the next Patient or Bundle line; a line referencing a patient that is not the
    current group's is Rejected on its own (field ``Observation.subject``...), and so is a line
    that is not JSON (reason ``invalid JSON``, or ``truncated JSON`` when it stops short, as a
    cut last line does). In a Bundle, an entry referencing a Patient absent from the Bundle is
    Rejected on its own; a Bundle without any Patient is one Rejected unit. Position: the line
    (NDJSON) and, inside a Bundle, ``entry N`` (1-based index of the Patient's entry). A unit's
    bytes are its line(s), or the whole Bundle when it is the Bundle's only unit; a Bundle
    holding several patients gives each unit a re-serialised collection Bundle of its entries.

Validation
    Every resource a unit uses is validated with the FHIR **R4** models of ``fhirclient``
    (SMART on FHIR, 4.4.0, generated from FHIR 4.0.1): JSON types, primitive formats (date,
    dateTime regexes), required elements and unknown elements. ``fhir.resources`` 8.x was not
    used: it defaults to R5 and only ships R4B (4.3), not R4. fhirclient does not check codes,
    so the codes mapped below are checked here. A failure rejects the unit with the element
    path (``Patient.birthDate``, ``Observation.valueQuantity.value``; list indices dropped) and
    a fixed reason (``wrong JSON type``, ``invalid format``, ``required element missing``,
    ``unknown element (not FHIR R4)``). An **R5-only element** (``Observation.triggeredBy``...)
    is therefore an unknown element: the unit is Rejected rather than imported with data
    silently dropped. A dateTime with a time but no offset (invalid in FHIR, common in legacy
    exports) is read as Europe/Paris time, with an anomaly; a date-only ``effectiveDateTime``
    is midnight Europe/Paris. Validation costs about 50 µs per Observation.

Mapping (domain ← FHIR)
    patient.last_name / birth_name ← Patient.name: family of ``usual`` (else ``official``,
        else ``maiden``, else the first name) / family of ``maiden`` (else ``official``);
    patient.first_names ← ``given`` of the official name (else of the name used), joined by
        spaces; birth_date ← birthDate (a full date); sex ← gender male/female/other/unknown
        (M/F/O/U; absent → U with an anomaly);
    patient.ins ← identifier whose system is urn:oid:1.2.250.1.213.1.4.8 (NIR), .9 (NIA), .10
        / .11 (test NIR / NIA) and whose type is not NH/NSS (FR Core types INS-NIR...), status
        ← the FR Core identity-reliability extension
        (https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability, or the
        older http://interopsante.org/fhir/StructureDefinition/FrPatientIdentReliability),
        sub-extension ``identityStatus``, codes PROV/RECUP/VALI/QUAL (VIDE → PROV with an
        anomaly; other codes rejected); patient.nir ← identifier system ...213.1.4.8 typed
        NH (or NSS); source_patient_id ← identifier typed PI or MR;
    patient.birth_place ← extension patient-birthPlace, valueAddress's fr-core-address-insee-code;
    patient.address ← address (use home, else the first not ``old``): line[0], line[1:],
        postalCode, city, country (default FR); phone / email ← first telecom phone / email;
    mandatory_insurance ← Coverage typed v3-ActCode PUBLICPOL: class regime / caisse / centre
        (urn:labvault:fhir:amo), dependent = beneficiary rank; complementary_insurance ←
        another Coverage: payor display (or the payor Organization's name) = organisation,
        payor identifier = AMC number, subscriberId = member id;
    order ← DiagnosticReport (one order each): lab_finess ← performer Organization's identifier
        urn:oid:1.2.250.1.71.4.2.2 (idNatSt "1" + FINESS) or https://finess.esante.gouv.fr
        (FINEG/FINEJ), else the ServiceRequest's performer; sampled_at ← effectiveDateTime (or
        effectivePeriod.start); basedOn ServiceRequest: requested_at ← authoredOn, prescriber ←
        requester Practitioner (or PractitionerRole.practitioner), lab_file_number ← identifier
        (typed FILL first, else the report's identifier), comments ← note (then the report's
        conclusion). A ServiceRequest without report is an order without results (its
        performer must then give the FINESS); an Observation no report lists rejects the unit;
    prescriber ← Practitioner: family, first given; rpps ← urn:oid:1.2.250.1.71.4.2.1 value
        "8" + RPPS (or 11 digits) or system https://rpps.esante.gouv.fr / type RPPS; adeli ← the
        same OID with "0" + ADELI (or 9 digits) or type ADELI;
    result ← Observation in DiagnosticReport.result order (panels' hasMember expanded):
        code_system ← "LN" for http://loinc.org, the name after urn:labvault:fhir:code-system:,
        else the system URI ("LOCAL" without one); code, label ← code.text or display;
        value ← valueQuantity (exact decimal text, comparator prefixed), valueString,
        valueCodeableConcept (text, display or code), valueInteger/Boolean; unit ← the
        quantity's unit (or code), for a string value the urn:labvault:fhir:unit extension;
        reference_range ← referenceRange text, else "low-high" / ">=low" / "<=high";
        abnormal_flag ← interpretation N/L/H/LL/HH/A (v3-ObservationInterpretation; AA → A,
        POS → A, NEG → N); status ← final F, preliminary/registered P, corrected/amended C,
        cancelled X (entered-in-error: skipped with an anomaly); observed_at ← effective[x];
        comments ← note.

Not carried / limits
    Everything of the domain is carried (NOT_CARRIED is empty). The unit of a non-numeric
    value travels in a labvault extension; other FHIR readers ignore it. Resource types not
    listed above (Encounter, Specimen...) are validated and ignored with an anomaly;
    Observation.component is not read; contained resources are not resolved; an Observation
    listed twice is read once. In NDJSON (b) the shared resources are kept for the whole file
    (memory grows with the number of distinct practitioners and laboratories, not patients).
    ``bundle_for`` returns decimals as floats (see :mod:`labvault.ingest.fhir_write`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

from fhirclient.models import bundle as fhir_bundle
from fhirclient.models import resource as fhir_resource
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory

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
from labvault.ingest import fhir_write as w
from labvault.ingest.base import Anomaly, Parsed, Position, ReadStats, Rejected, Unit, sha256
from labvault.ingest.fhir_write import bundle_for, write

NOT_CARRIED: frozenset[str] = frozenset()
PARIS = ZoneInfo("Europe/Paris")
BUNDLE_TYPES = frozenset({"collection", "transaction", "batch", "searchset", "document"})
SHARED_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})
CLINICAL_TYPES = frozenset({"Observation", "DiagnosticReport", "ServiceRequest", "Coverage"})
PATIENT_FIELDS = ("subject", "patient", "beneficiary")
SEXES = {"male": Sex.MALE, "female": Sex.FEMALE, "other": Sex.OTHER, "unknown": Sex.UNKNOWN}
STATUSES = {"final": ResultStatus.FINAL, "preliminary": ResultStatus.PRELIMINARY,
            "registered": ResultStatus.PRELIMINARY, "corrected": ResultStatus.CORRECTED,
            "amended": ResultStatus.CORRECTED, "cancelled": ResultStatus.CANCELLED}
FLAGS = {**{f.value: f for f in AbnormalFlag}, "AA": AbnormalFlag.ABNORMAL,
         "POS": AbnormalFlag.ABNORMAL, "NEG": AbnormalFlag.NORMAL}
IDENTITY = {"PROV": IdentityStatus.PROVISIONAL, "VIDE": IdentityStatus.PROVISIONAL,
            "RECUP": IdentityStatus.RECOVERED, "VALI": IdentityStatus.VALIDATED,
            "QUAL": IdentityStatus.QUALIFIED}
INS_OIDS = {f"urn:oid:{o.value}": o for o in InsOid}
NIR_SYSTEM = f"urn:oid:{InsOid.NIR.value}"
_NAIVE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")
_REF = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/.*)?")
_MISSING = re.compile(r'property "([A-Za-z]+)"')
_MAX_MEMBERS_DEPTH = 8


class _Num(float):
    """A JSON number that remembers its text, so "0.70" stays "0.70"."""

    text: str

    def __new__(cls, text: str) -> _Num:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def _no_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=_Num, parse_constant=_no_constant)


def sniff(head: bytes) -> bool:
    """A JSON object (after an optional BOM and blanks) naming a resourceType early on."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return text.startswith(b"{") and b'"resourceType"' in text[:4096]


# --- validation --------------------------------------------------------------------------------
_MODELS: dict[str, type] = {}


def _model(rtype: object) -> type:
    if not isinstance(rtype, str):
        raise InvalidRecord("resourceType", "missing or not a string")
    cls = _MODELS.get(rtype)
    if cls is None:
        cls = type(FHIRElementFactory.instantiate(rtype, None))
        if not issubclass(cls, fhir_resource.Resource) or cls.resource_type != rtype:
            raise InvalidRecord("resourceType", "not a FHIR R4 resource type")
        _MODELS[rtype] = cls
    return cls


def _error(rtype: str, err: BaseException) -> InvalidRecord:
    """An InvalidRecord naming the element path of fhirclient's first error (never a value)."""
    parts = [rtype]
    while isinstance(err, FHIRValidationError):
        if err.path:
            parts += [p.removesuffix("_fhir") for p in err.path.split(".") if not p.isdigit()]
        if not err.errors:
            break
        err = err.errors[0]
    if isinstance(err, KeyError):
        m = _MISSING.search(str(err))
        return InvalidRecord(".".join(parts + ([m.group(1)] if m else [])),
                             "required element missing")
    reason = ("unknown element (not FHIR R4)" if isinstance(err, AttributeError)
              else "wrong JSON type" if isinstance(err, TypeError)
              else "invalid format" if isinstance(err, ValueError) else "invalid element")
    return InvalidRecord(".".join(parts), reason)


def _validate(res: dict[str, Any], cls: type | None = None) -> None:
    rtype = res.get("resourceType")
    model = cls or _model(rtype)
    try:
        model(res)
    except FHIRValidationError as e:
        raise _error(model.resource_type, e) from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError):
        raise InvalidRecord(str(model.resource_type), "invalid resource") from None


# --- entries and references --------------------------------------------------------------------
@dataclass(eq=False)
class _Entry:
    where: int  # 1-based entry index in a Bundle, or line number
    res: dict[str, Any]
    raw: bytes = b""
    full_url: str | None = None
    checked: bool = False
    error: InvalidRecord | None = None
    naive: list[str] = field(default_factory=list)

    @property
    def type(self) -> str:
        return str(self.res.get("resourceType"))

    def keys(self) -> list[str]:
        out = [self.full_url] if self.full_url else []
        rid = self.res.get("id")
        if isinstance(rid, str):
            out.append(f"{self.type}/{rid}")
        if self.full_url and (m := _REF.fullmatch(self.full_url)):
            out.append(m.group(1))
        return out

    def check(self) -> None:
        """Validate once (cached); naive local times are first given the Paris offset."""
        if not self.checked:
            self.checked = True
            for key in ("effectiveDateTime", "authoredOn", "issued"):
                value = self.res.get(key)
                if isinstance(value, str) and _NAIVE.fullmatch(value):
                    try:
                        local = datetime.fromisoformat(value).replace(tzinfo=PARIS)
                    except ValueError:
                        continue
                    self.res[key] = local.isoformat()
                    self.naive.append(key)
            try:
                _validate(self.res)
            except InvalidRecord as e:
                self.error = e
        if self.error is not None:
            raise self.error


Lookup = Callable[[Any], "_Entry | None"]


def _index(entries: Iterable[_Entry], fallback: dict[str, _Entry] | None = None) -> Lookup:
    index: dict[str, _Entry] = {}
    for e in entries:
        for k in e.keys():
            index.setdefault(k, e)
    more = fallback or {}

    def lookup(ref: Any) -> _Entry | None:
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        text = ref["reference"]
        m = _REF.fullmatch(text)
        for table in (index, more):
            hit = table.get(text) or (table.get(m.group(1)) if m else None)
            if hit is not None:
                return hit
        return None

    return lookup


def _patient_ref(res: dict[str, Any], lookup: Lookup) -> tuple[str, Any] | None:
    """(field, reference) of the patient a resource belongs to, if it names one."""
    for name in PATIENT_FIELDS:
        ref = res.get(name)
        if not isinstance(ref, dict):
            continue
        hit = lookup(ref)
        if hit is not None:
            if hit.type == "Patient":
                return name, ref
            continue
        text = ref.get("reference")
        if not isinstance(text, str) or text.startswith(("Patient/", "urn:")) or "/Patient/" in text:
            return name, ref
    return None


def _references(obj: Any, out: list[Any], depth: int = 0) -> None:
    if depth > 40:
        return
    if isinstance(obj, dict):
        if isinstance(obj.get("reference"), str):
            out.append(obj)
        for v in obj.values():
            if isinstance(v, (dict, list)):
                _references(v, out, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _references(v, out, depth + 1)


def _closure(start: list[_Entry], lookup: Lookup) -> list[_Entry]:
    """The entries reachable from ``start`` through references (a unit's whole content)."""
    seen = {id(e): e for e in start}
    todo = list(start)
    while todo:
        refs: list[Any] = []
        _references(todo.pop().res, refs)
        for ref in refs:
            hit = lookup(ref)
            if hit is not None and id(hit) not in seen and hit.type != "Patient":
                seen[id(hit)] = hit
                todo.append(hit)
    return sorted(seen.values(), key=lambda e: e.where)


# --- small JSON helpers ------------------------------------------------------------------------
def _str(obj: Any, key: str) -> str | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) and v.strip() else None


def _list(obj: Any, key: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    return [x for x in v if x is not None] if isinstance(v, list) else []


def _codings(cc: Any) -> list[tuple[str | None, str]]:
    return [(_str(c, "system"), c["code"]) for c in _list(cc, "coding") if _str(c, "code")]


def _type_codes(ident: Any) -> set[str]:
    return {code for _, code in _codings(ident.get("type"))}


def _when(value: Any, fld: str, anomalies: list[Anomaly]) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord(fld, "wrong JSON type")
    if len(value) < 10:
        raise InvalidRecord(fld, "partial date (year or month only)")
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            anomalies.append(Anomaly(fld, "date without time read as midnight Europe/Paris"))
            return datetime(d.year, d.month, d.day, tzinfo=PARIS)
        head, dot, tail = value.partition(".")
        if dot:  # fromisoformat takes at most 6 fraction digits
            digits = re.match(r"[0-9]*", tail).group(0)  # type: ignore[union-attr]
            value = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits):]}"
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(fld, "invalid date or time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=PARIS)


def _given(name: Any) -> list[str]:
    return [g.strip() for g in _list(name, "given") if isinstance(g, str) and g.strip()]


def _notes(res: dict[str, Any]) -> list[Comment]:
    return [Comment(text=t) for n in _list(res, "note") if (t := _str(n, "text"))]


# --- domain mapping ----------------------------------------------------------------------------
class _Mapper:
    """Builds one unit's PatientRecord from its entries."""

    def __init__(self, lookup: Lookup, patient: _Entry) -> None:
        self.lookup = lookup
        self.patient_res = patient.res
        self.anomalies: list[Anomaly] = []
        self.source_patient_id: str | None = None
        self.reported: set[int] = set()

    def check(self, entry: _Entry) -> None:
        entry.check()
        if entry.naive and id(entry) not in self.reported:
            self.reported.add(id(entry))
            self.anomalies.extend(Anomaly(f"{entry.type}.{k}", "local time without offset read "
                                          "as Europe/Paris") for k in entry.naive)

    def resolve(self, ref: Any, types: Iterable[str]) -> _Entry | None:
        hit = self.lookup(ref)
        if hit is None or hit.type not in types:
            return None
        self.check(hit)
        return hit

    def record(self, patient: _Entry, members: list[_Entry]) -> PatientRecord:
        self.check(patient)
        for m in members:
            self.check(m)
        p = self.patient(patient.res, [m.res for m in members if m.type == "Coverage"])
        reports = [m for m in members if m.type == "DiagnosticReport"]
        used: set[int] = set()
        orders = [self.order(dr, used) for dr in reports]
        for m in members:
            if m.type == "ServiceRequest" and id(m) not in used:
                orders.append(self.request_only(m))
            elif m.type == "Observation" and id(m) not in used:
                raise InvalidRecord("Observation", "not referenced by any DiagnosticReport")
            elif m.type not in CLINICAL_TYPES and m.type not in SHARED_TYPES:
                self.anomalies.append(Anomaly(m.type, "resource type not imported"))
        return PatientRecord(patient=p, orders=tuple(orders))

    # Patient and Coverage
    def patient(self, res: dict[str, Any], coverages: list[dict[str, Any]]) -> Patient:
        names = {}
        for n in _list(res, "name"):
            names.setdefault(_str(n, "use"), n)
        usual = names.get("usual") or names.get("official") or names.get("maiden")
        usual = usual or next(iter(names.values()), None)
        birth = names.get("maiden") or names.get("official")
        last = _str(usual, "family")
        if last is None:
            raise InvalidRecord("Patient.name.family", "required element missing")
        given = _given(names.get("official")) or _given(usual)
        if not given:
            raise InvalidRecord("Patient.name.given", "required element missing")
        birth_date = _str(res, "birthDate")
        if birth_date is None:
            raise InvalidRecord("Patient.birthDate", "required element missing")
        if len(birth_date) != 10:
            raise InvalidRecord("Patient.birthDate", "partial date (year or month only)")
        try:
            born = date.fromisoformat(birth_date)
        except ValueError:
            raise InvalidRecord("Patient.birthDate", "invalid date") from None
        gender = _str(res, "gender")
        if gender is None:
            self.anomalies.append(Anomaly("Patient.gender", "absent, read as unknown"))
        elif gender not in SEXES:
            raise InvalidRecord("Patient.gender", "unknown code")
        ins, nir = self.identifiers(res)
        telecom = {}
        for t in _list(res, "telecom"):
            if (system := _str(t, "system")) and (value := _str(t, "value")):
                telecom.setdefault(system, value)
        amo, amc = self.coverage(coverages)
        return Patient(
            last_name=last, first_names=" ".join(given), birth_date=born,
            sex=SEXES[gender] if gender else Sex.UNKNOWN, birth_name=_str(birth, "family"),
            nir=nir, ins=ins, birth_place=self.birth_place(res), address=self.address(res),
            phone=telecom.get("phone"), email=telecom.get("email"),
            mandatory_insurance=amo, complementary_insurance=amc)

    def identifiers(self, res: dict[str, Any]) -> tuple[Ins | None, str | None]:
        ins = nir = None
        for ident in _list(res, "identifier"):
            system, value, types = _str(ident, "system"), _str(ident, "value"), _type_codes(ident)
            if value is None:
                continue
            if types & {"PI", "MR"} and self.source_patient_id is None:
                self.source_patient_id = value
            elif system == NIR_SYSTEM and types & {"NH", "NSS"}:
                nir = nir or normalize_nir(value)
            elif system in INS_OIDS and ins is None:
                ins = Ins(matricule=normalize_nir(value), oid=INS_OIDS[system],
                          status=self.identity_status(res))
        return ins, nir

    def identity_status(self, res: dict[str, Any]) -> IdentityStatus:
        for ext in _list(res, "extension"):
            if _str(ext, "url") not in w.RELIABILITY_URLS:
                continue
            subs = [s for s in _list(ext, "extension") if _str(s, "url") == "identityStatus"]
            for holder in [*subs, ext]:
                coding = holder.get("valueCoding")
                codes = ([coding["code"]] if _str(coding, "code") else
                         [c for _, c in _codings(holder.get("valueCodeableConcept"))])
                if codes:
                    status = IDENTITY.get(codes[0])
                    if status is None:
                        raise InvalidRecord("Patient.extension.identityReliability",
                                            "unknown identity status code")
                    if codes[0] == "VIDE":
                        self.anomalies.append(Anomaly("Patient.extension.identityReliability",
                                                      "status VIDE read as PROV"))
                    return status
        return IdentityStatus.PROVISIONAL

    @staticmethod
    def birth_place(res: dict[str, Any]) -> str | None:
        for ext in _list(res, "extension"):
            if _str(ext, "url") == w.BIRTH_PLACE_URL:
                for sub in _list(ext.get("valueAddress"), "extension"):
                    if (_str(sub, "url") or "").endswith("insee-code"):
                        return _str(sub.get("valueCoding"), "code")
        return None

    def address(self, res: dict[str, Any]) -> Address | None:
        addresses = [a for a in _list(res, "address") if isinstance(a, dict)]
        current = [a for a in addresses if a.get("use") != "old"]
        a = next((x for x in current if x.get("use") == "home"), current[0] if current else None)
        if a is None:
            return None
        lines = [x for x in _list(a, "line") if isinstance(x, str) and x.strip()]
        city, postal = _str(a, "city"), _str(a, "postalCode")
        if not (lines and city and postal):
            self.anomalies.append(Anomaly("Patient.address", "incomplete address"))
        return Address(line1=lines[0] if lines else "", postal_code=postal or "", city=city or "",
                       line2=", ".join(lines[1:]) or None, country=_str(a, "country") or "FR")

    def coverage(self, coverages: list[dict[str, Any]]
                 ) -> tuple[MandatoryInsurance | None, ComplementaryInsurance | None]:
        amo = amc = None
        for cov in coverages:
            if any(c == "PUBLICPOL" for _, c in _codings(cov.get("type"))):
                classes = {code: _str(c, "value") for c in _list(cov, "class")
                           for _, code in _codings(c.get("type"))}
                scheme, fund = classes.get("regime"), classes.get("caisse")
                if scheme is None or fund is None:
                    raise InvalidRecord("Coverage.class", "regime and caisse required")
                rank = _str(cov, "dependent") or "1"
                if not (rank.isascii() and rank.isdigit() and len(rank) < 4):
                    raise InvalidRecord("Coverage.dependent", "not a beneficiary rank")
                amo = amo or MandatoryInsurance(scheme=scheme, fund=fund,
                                                centre=classes.get("centre"),
                                                beneficiary_rank=int(rank))
            elif amc is None:
                payor = next(iter(_list(cov, "payor")), None)
                org = self.resolve(payor, ("Organization",))
                organisation = _str(payor, "display") or (_str(org.res, "name") if org else None)
                if organisation is None:
                    raise InvalidRecord("Coverage.payor.display", "required element missing")
                amc = ComplementaryInsurance(
                    organisation=organisation, amc_number=_str(payor.get("identifier"), "value"),
                    member_id=_str(cov, "subscriberId"))
        return amo, amc

    # orders
    def finess(self, refs: list[Any]) -> str | None:
        for ref in refs:
            org = self.resolve(ref, ("Organization", "PractitionerRole"))
            if org is not None and org.type == "PractitionerRole":
                org = self.resolve(org.res.get("organization"), ("Organization",))
            idents = _list(org.res, "identifier") if org else [ref.get("identifier")]
            for ident in idents:
                system, value = _str(ident, "system"), _str(ident, "value")
                if value is None or not isinstance(ident, dict):
                    continue
                if system == w.IDNST_OID and len(value) == 10 and value[0] == "1":
                    return value[1:]
                if (system == w.IDNST_OID and len(value) == 9) or (
                        system and "finess" in system) or _type_codes(ident) & {"FINEG", "FINEJ"}:
                    return value
        return None

    def prescriber(self, ref: Any) -> Prescriber | None:
        hit = self.resolve(ref, ("Practitioner", "PractitionerRole"))
        if hit is not None and hit.type == "PractitionerRole":
            hit = self.resolve(hit.res.get("practitioner"), ("Practitioner",))
        if hit is None:
            self.anomalies.append(Anomaly("ServiceRequest.requester",
                                          "not a Practitioner of this unit, prescriber not read"))
            return None
        res = hit.res
        name = next(iter(_list(res, "name")), None)
        last = _str(name, "family")
        if last is None:
            raise InvalidRecord("Practitioner.name.family", "required element missing")
        first = next((g for g in _list(name, "given") if isinstance(g, str)), None)
        rpps = adeli = None
        for ident in _list(res, "identifier"):
            system, value, types = _str(ident, "system"), _str(ident, "value"), _type_codes(ident)
            if value is None:
                continue
            if system == w.IDNPS_OID and len(value) in (10, 12) and value[0] in "08":
                if value[0] == "8":
                    rpps = rpps or value[1:]
                else:
                    adeli = adeli or value[1:]
            elif (system == w.IDNPS_OID and len(value) == 11) or system == w.RPPS_SYSTEM or (
                    "RPPS" in types):
                rpps = rpps or value
            elif (system == w.IDNPS_OID and len(value) == 9) or "ADELI" in types:
                adeli = adeli or value
        return Prescriber(last_name=last, first_name=first, rpps=rpps, adeli=adeli)

    def request_fields(self, sr: dict[str, Any] | None) -> dict[str, Any]:
        if sr is None:
            return {}
        idents = [i for i in _list(sr, "identifier") if _str(i, "value")]
        fill = [i for i in idents if "FILL" in _type_codes(i)]
        requester = sr.get("requester")
        return {"requested_at": _when(sr.get("authoredOn"), "ServiceRequest.authoredOn",
                                      self.anomalies),
                "prescriber": self.prescriber(requester) if requester is not None else None,
                "lab_file_number": _str((fill or idents or [None])[0], "value"),
                "comments": tuple(_notes(sr))}

    def order(self, dr: _Entry, used: set[int]) -> Order:
        res = dr.res
        sr = next((hit for ref in _list(res, "basedOn")
                   if (hit := self.resolve(ref, ("ServiceRequest",))) is not None), None)
        if sr is not None:
            used.add(id(sr))
        fields = self.request_fields(sr.res if sr else None)
        if fields.get("lab_file_number") is None:
            fields["lab_file_number"] = next(
                (v for i in _list(res, "identifier") if (v := _str(i, "value"))), None)
        if conclusion := _str(res, "conclusion"):
            fields["comments"] = (*fields.get("comments", ()), Comment(text=conclusion))
        finess = self.finess(_list(res, "performer")) or (
            self.finess(_list(sr.res, "performer")) if sr else None)
        if finess is None:
            raise InvalidRecord("DiagnosticReport.performer", "no laboratory FINESS identifier")
        effective = res.get("effectiveDateTime")
        if effective is None:
            effective = (res.get("effectivePeriod") or {}).get("start")
        results: list[Result] = []
        for ref in _list(res, "result"):
            obs = self.resolve(ref, ("Observation",))
            if obs is None:
                raise InvalidRecord("DiagnosticReport.result", "Observation not found")
            if id(obs) not in used:  # an Observation listed twice is read once
                self.results(obs, results, used, 0)
        return Order(lab_finess=finess, sampled_at=_when(effective, "DiagnosticReport.effective",
                                                         self.anomalies),
                     results=tuple(results), **fields)

    def request_only(self, sr: _Entry) -> Order:
        finess = self.finess(_list(sr.res, "performer"))
        if finess is None:
            raise InvalidRecord("ServiceRequest.performer", "no report and no laboratory FINESS")
        return Order(lab_finess=finess, **self.request_fields(sr.res))

    def results(self, obs: _Entry, out: list[Result], used: set[int], depth: int) -> None:
        used.add(id(obs))
        res = obs.res
        members = _list(res, "hasMember")
        if members and not any(k.startswith("value") for k in res):
            if depth >= _MAX_MEMBERS_DEPTH:
                raise InvalidRecord("Observation.hasMember", "panels nested too deeply")
            for ref in members:
                hit = self.resolve(ref, ("Observation",))
                if hit is None:
                    raise InvalidRecord("Observation.hasMember", "Observation not found")
                if id(hit) not in used:
                    self.results(hit, out, used, depth + 1)
            return
        subject = res.get("subject")
        if subject is not None and (hit := self.lookup(subject)) is not None and (
                hit.type == "Patient" and hit.res is not self.patient_res):
            raise InvalidRecord("Observation.subject", "another patient's result")
        if res.get("status") == "entered-in-error":
            self.anomalies.append(Anomaly("Observation.status", "entered-in-error, skipped"))
            return
        out.append(self.result(res))

    def result(self, res: dict[str, Any]) -> Result:
        status = STATUSES.get(res.get("status"))  # type: ignore[arg-type]
        if status is None:
            raise InvalidRecord("Observation.status", "unsupported code")
        codings = _codings(res.get("code"))
        chosen = next((c for c in codings if c[0] == w.LOINC), codings[0] if codings else None)
        if chosen is None:
            raise InvalidRecord("Observation.code.coding", "no code")
        system, code = chosen
        code_system = ("LN" if system == w.LOINC else "LOCAL" if system is None
                       else system.removeprefix(w.LOCAL_CODE_PREFIX))
        display = next((_str(c, "display") for c in _list(res.get("code"), "coding")
                        if c.get("code") == code and c.get("system") == system), None)
        label = _str(res.get("code"), "text") or display or code
        value, unit = self.value(res)
        codes = [c for cc in _list(res, "interpretation") for _, c in _codings(cc)]
        flag = FLAGS.get(codes[0]) if codes else None
        if codes and flag is None:
            raise InvalidRecord("Observation.interpretation", "unsupported code")
        effective = res.get("effectiveDateTime") or res.get("effectiveInstant")
        if effective is None:
            effective = (res.get("effectivePeriod") or {}).get("start")
        return Result(code_system=code_system, code=code, label=label, value=value, unit=unit,
                      reference_range=self.reference_range(res), abnormal_flag=flag,
                      status=status, observed_at=_when(effective, "Observation.effective",
                                                       self.anomalies),
                      comments=tuple(_notes(res)))

    @staticmethod
    def value(res: dict[str, Any]) -> tuple[str, str | None]:
        qty = res.get("valueQuantity")
        if isinstance(qty, dict):
            v = qty.get("value")
            text = "" if v is None else v.text if isinstance(v, _Num) else str(v)
            return (_str(qty, "comparator") or "") + text, _str(qty, "unit") or _str(qty, "code")
        unit = next((_str(e, "valueString") for e in _list(res, "extension")
                     if _str(e, "url") == w.UNIT_URL), None)
        if (s := res.get("valueString")) is not None:
            return str(s), unit
        if (cc := res.get("valueCodeableConcept")) is not None:
            codings = _list(cc, "coding")
            return (_str(cc, "text") or next((d for c in codings if (d := _str(c, "display"))),
                                             None)
                    or next((c for _, c in _codings(cc)), "")), unit
        for key in ("valueInteger", "valueBoolean", "valueDateTime", "valueTime"):
            if (v := res.get(key)) is not None:
                return (str(v).lower() if isinstance(v, bool) else str(v)), unit
        if any(k.startswith("value") for k in res):
            raise InvalidRecord("Observation.value", "unsupported value type")
        return "", unit

    @staticmethod
    def reference_range(res: dict[str, Any]) -> str | None:
        ranges = _list(res, "referenceRange")
        if not ranges:
            return None
        rr = ranges[0]
        if text := _str(rr, "text"):
            return text

        def num(key: str) -> str | None:
            v = (rr.get(key) or {}).get("value") if isinstance(rr.get(key), dict) else None
            return None if v is None else v.text if isinstance(v, _Num) else str(v)

        low, high = num("low"), num("high")
        if low is not None and high is not None:
            return f"{low}-{high}"
        return f">={low}" if low is not None else f"<={high}" if high is not None else None


# --- units -------------------------------------------------------------------------------------
@dataclass
class _Out:
    """A unit before numbering: (sort key, Parsed fields or Rejected fields)."""

    where: int
    position: Position
    raw: bytes
    record: PatientRecord | None = None
    source_patient_id: str | None = None
    anomalies: tuple[Anomaly, ...] = ()
    field: str = ""
    reason: str = ""


def _build(patient: _Entry, members: list[_Entry], lookup: Lookup, position: Position,
           raw: bytes) -> _Out:
    mapper = _Mapper(lookup, patient)
    try:
        record = mapper.record(patient, members)
    except InvalidRecord as e:
        return _Out(patient.where, position, raw, field=e.field, reason=e.reason)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError):
        return _Out(patient.where, position, raw, field=patient.type, reason="unreadable resource")
    return _Out(patient.where, position, raw, record=record,
                source_patient_id=mapper.source_patient_id, anomalies=tuple(mapper.anomalies))


def _reserialised(entries: list[_Entry]) -> bytes:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{**({"fullUrl": e.full_url} if e.full_url else {}), "resource": e.res}
                        for e in entries]}
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _bundle_units(bundle: dict[str, Any], raw: bytes, file: str, line: int | None,
                  stats: ReadStats) -> list[_Out]:
    whole = Position(file, line)
    btype = bundle.get("type")
    if btype is None:
        return [_Out(0, whole, raw, field="Bundle.type", reason="required element missing")]
    if btype not in BUNDLE_TYPES:
        return [_Out(0, whole, raw, field="Bundle.type", reason="unsupported bundle type")]
    items = bundle.get("entry", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return [_Out(0, whole, raw, field="Bundle.entry", reason="wrong JSON type")]
    try:
        _validate({**bundle, "entry": [{k: v for k, v in i.items() if k != "resource"}
                                       for i in items]}, fhir_bundle.Bundle)
    except InvalidRecord as e:
        return [_Out(0, whole, raw, field=e.field, reason=e.reason)]
    entries = []
    for n, item in enumerate(items, 1):
        res = item.get("resource")
        if res is None or (item.get("search") or {}).get("mode") == "outcome":
            continue
        if not isinstance(res, dict):
            return [_Out(0, whole, raw, field="Bundle.entry.resource", reason="wrong JSON type")]
        try:
            _model(res.get("resourceType"))
        except InvalidRecord as e:
            return [_Out(0, whole, raw, field=f"Bundle.entry.resource.{e.field}", reason=e.reason)]
        url = item.get("fullUrl")
        entries.append(_Entry(n, res, full_url=url if isinstance(url, str) else None))
        stats.segments[str(res.get("resourceType"))] += 1
    patients = [e for e in entries if e.type == "Patient"]
    if not patients:
        return [_Out(0, whole, raw, field="Bundle.entry", reason="no Patient resource")]
    lookup = _index(entries)
    members: dict[int, list[_Entry]] = {id(p): [] for p in patients}
    outs: list[_Out] = []
    loose = []
    for e in entries:
        if e.type == "Patient":
            continue
        pref = _patient_ref(e.res, lookup)
        target = lookup(pref[1]) if pref else None
        if pref is None:
            loose.append(e)
        elif target is None:
            outs.append(_Out(e.where, Position(file, line, f"entry {e.where}"), b"",
                             field=f"{e.type}.{pref[0]}",
                             reason="references a patient not in the bundle"))
        else:
            members[id(target)].append(e)
    used: set[int] = set()
    units = []
    for p in patients:
        content = _closure([p, *members[id(p)]], lookup)
        used.update(id(e) for e in content)
        units.append((p, content))
    outs += [_Out(e.where, Position(file, line, f"entry {e.where}"), b"",
                  field=f"{e.type}.subject", reason="no patient reference")
             for e in loose if id(e) not in used and e.type in CLINICAL_TYPES]
    ignored = sum(1 for e in loose if id(e) not in used and e.type not in CLINICAL_TYPES)
    if ignored:
        stats.notes.append(f"{ignored} Bundle entries referenced by no patient were ignored")
    single = len(units) == 1 and not outs
    for p, content in units:
        unit_raw = raw if single else _reserialised([p, *[e for e in content if e is not p]])
        outs.append(_build(p, members[id(p)], lookup, Position(file, line, f"entry {p.where}"),
                           unit_raw))
    for o in outs:
        if not o.raw:
            entry = next(e for e in entries if e.where == o.where)
            o.raw = _reserialised([entry])
    return sorted(outs, key=lambda o: o.where)


class _Reader:
    def __init__(self, stream: BinaryIO, file: str, stats: ReadStats) -> None:
        self.stream = stream
        self.file = file
        self.stats = stats
        self.seq = 0
        self.endings: Counter[str] = Counter()
        self.shared: dict[str, _Entry] = {}  # Practitioner/Organization lines seen so far
        self.group: list[_Entry] = []
        self.pending: list[_Out] = []  # rejected lines inside the current group
        self.early_shared = 0  # shared resources before the first Patient

    def emit(self, out: _Out) -> Unit:
        self.seq += 1
        if out.record is not None:
            return Parsed(self.seq, out.position, out.record, sha256(out.raw),
                          out.source_patient_id, out.anomalies)
        return Rejected(self.seq, out.position, out.field, out.reason, out.raw)

    def lines(self) -> Iterator[tuple[int, bytes]]:
        for n, raw in enumerate(self.stream, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
                self.stats.notes.append("UTF-8 BOM")
            if raw.endswith(b"\r\n"):
                self.endings["CRLF"] += 1
            elif raw.endswith(b"\n"):
                self.endings["LF"] += 1
            yield n, raw

    @staticmethod
    def parse(raw: bytes) -> tuple[Any, InvalidRecord | None]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, InvalidRecord("record", "not valid UTF-8")
        try:
            return _loads(text), None
        except json.JSONDecodeError as e:
            # cut short: the error is at the very end, or in a string running to the end, or
            # an object on a last line without its line end
            stripped = text.rstrip()
            truncated = (e.pos >= len(stripped) or e.msg.startswith("Unterminated string")
                         or (not raw.endswith(b"\n") and stripped.startswith("{")))
            return None, InvalidRecord("record", "truncated JSON" if truncated else "invalid JSON")
        except (ValueError, RecursionError):
            return None, InvalidRecord("record", "invalid JSON")

    def run(self) -> Iterator[Unit]:
        self.stats.encoding = "utf-8"
        self.stats.notes.append("validated with the FHIR R4 (4.0.1) models of fhirclient")
        lines = self.lines()
        head: list[tuple[int, bytes, Any, InvalidRecord | None]] = []
        seen: list[bytes] = []  # every line read so far, for a whole-document file
        blanks = 0
        for n, raw in lines:
            seen.append(raw)
            if not raw.strip():
                blanks += 1
                continue
            head.append((n, raw, *self.parse(raw)))
            if len(head) == 2 or head[0][3] is None:
                break
        # a pretty-printed document: neither of the first two lines is JSON on its own and the
        # second does not open an object (an NDJSON line does)
        if (len(head) == 2 and head[0][3] is not None and head[1][3] is not None
                and not head[1][1].lstrip().startswith(b"{")):
            blanks = 0
            yield from self.whole(b"".join(seen) + b"".join(raw for _, raw in lines))
        else:
            self.stats.notes.append("NDJSON")
            for n, raw, obj, err in head:
                yield from self.line(n, raw, obj, err)
            for n, raw in lines:
                if not raw.strip():
                    blanks += 1
                    continue
                yield from self.line(n, raw, *self.parse(raw))
            yield from self.flush()
        if blanks:
            self.stats.notes.append(f"{blanks} blank lines skipped")
        if self.early_shared:
            self.stats.notes.append(f"{self.early_shared} shared resources before any Patient")
        ends = [k for k, v in self.endings.items() if v]
        self.stats.line_ending = ends[0] if len(ends) == 1 else "mixed" if ends else None

    def whole(self, data: bytes) -> Iterator[Unit]:
        """A pretty-printed JSON document: loaded whole (see the module docstring)."""
        self.stats.notes.append("single JSON document, loaded whole")
        self.endings["CRLF"] += data.count(b"\r\n")
        self.endings["LF"] += data.count(b"\n") - data.count(b"\r\n")
        obj, err = self.parse(data)
        if err is not None:
            yield self.emit(_Out(1, Position(self.file, 1), data, field=err.field,
                                 reason=err.reason))
        elif isinstance(obj, dict) and obj.get("resourceType") == "Bundle":
            self.stats.segments["Bundle"] += 1
            yield from self.bundle(obj, data, None)
        else:
            yield from self.line(1, data, obj, None)
            yield from self.flush()

    def line(self, n: int, raw: bytes, obj: Any, err: InvalidRecord | None) -> Iterator[Unit]:
        pos = Position(self.file, n)
        if err is None and not (isinstance(obj, dict) and isinstance(obj.get("resourceType"), str)):
            err = InvalidRecord("resourceType", "not a FHIR resource")
        if err is not None:
            yield from self.reject(_Out(n, pos, raw, field=err.field, reason=err.reason))
            return
        rtype = obj["resourceType"]
        try:
            _model(rtype)  # an unknown type name is never echoed (it could be anything)
        except InvalidRecord as e:
            yield from self.reject(_Out(n, pos, raw, field=e.field, reason=e.reason))
            return
        self.stats.segments[rtype] += 1
        if rtype == "Bundle":
            yield from self.flush()
            yield from self.bundle(obj, raw, n)
            return
        entry = _Entry(n, obj, raw=raw)
        if rtype == "Patient":
            yield from self.flush()
            self.group = [entry]
            return
        lookup = _index(self.group[:1])
        pref = _patient_ref(obj, lookup)
        if pref is not None:
            if self.group and lookup(pref[1]) is not None:
                self.group.append(entry)
            else:
                yield from self.reject(_Out(n, pos, raw, field=f"{rtype}.{pref[0]}",
                                            reason="references a patient not in the current group"))
            return
        if rtype in SHARED_TYPES:
            for key in entry.keys():
                self.shared[key] = entry
        if self.group:
            self.group.append(entry)
        elif rtype in SHARED_TYPES:
            self.early_shared += 1
        else:
            yield from self.reject(_Out(n, pos, raw, field=f"{rtype}.subject",
                                        reason="no patient reference and no Patient before it"))

    def bundle(self, obj: dict[str, Any], raw: bytes, line: int | None) -> Iterator[Unit]:
        try:
            outs = _bundle_units(obj, raw, self.file, line, self.stats)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError):
            outs = [_Out(0, Position(self.file, line), raw, field="Bundle",
                         reason="unreadable bundle")]
        for out in outs:
            yield self.emit(out)

    def reject(self, out: _Out) -> Iterator[Unit]:
        if self.group:
            self.pending.append(out)
        else:
            yield self.emit(out)

    def flush(self) -> Iterator[Unit]:
        if self.group:
            patient, members = self.group[0], self.group[1:]
            lookup = _index(self.group, self.shared)
            yield self.emit(_build(patient, members, lookup, Position(self.file, patient.where),
                                   b"".join(e.raw for e in self.group)))
        self.group = []
        for out in self.pending:
            yield self.emit(out)
        self.pending = []


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Parsed | Rejected]:
    """Stream the units of a FHIR R4 JSON Bundle file or NDJSON file (see the module docstring)."""
    return _Reader(stream, PurePath(name).name, stats if stats is not None else ReadStats()).run()


__all__ = ["NOT_CARRIED", "bundle_for", "read", "sniff", "write"]
