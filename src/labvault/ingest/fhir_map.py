"""FHIR R4 resources to domain records: one unit's resources to a `PatientRecord`.

`_Mapper` builds the record of one unit (a Patient and the resources it uses) from the entries
:mod:`labvault.ingest.fhir_stream` grouped and validated. fhirclient does not check codes, so
the codes this module maps are checked here: an unknown code rejects the unit. Code systems,
identifier systems and extension URLs come from :mod:`labvault.ingest.fhir_write`; the variants
read and the units are described in :mod:`labvault.ingest.fhir`.

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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

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
from labvault.ingest.base import PARIS, Anomaly

if TYPE_CHECKING:
    from labvault.ingest.fhir_stream import Lookup, _Entry

SHARED_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})
CLINICAL_TYPES = frozenset({"Observation", "DiagnosticReport", "ServiceRequest", "Coverage"})
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
_MAX_MEMBERS_DEPTH = 8


class _Num(float):
    """A JSON number that remembers its text, so "0.70" stays "0.70"."""

    text: str

    def __new__(cls, text: str) -> _Num:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


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
