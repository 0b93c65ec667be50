"""FHIR R4 writer: domain records to Bundles (export, test fixtures, benchmarks).

The mapping is described in :mod:`labvault.ingest.fhir_map` (the reader's side);
:mod:`labvault.ingest.fhir` re-exports ``bundle_for`` and ``write``. This module also holds the
code systems and URLs both sides use.

Decimal values keep their exact text ("0.70" stays ``0.70`` in the JSON, as FHIR requires for
decimals): ``json.dumps`` cannot print a number from a string, so each numeric value is written
as a per-call random token and the token is then replaced by the numeral.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, BinaryIO

from labvault.domain.records import (
    InsOid,
    Order,
    Patient,
    PatientRecord,
    Prescriber,
    Result,
    ResultStatus,
)
from labvault.ingest.base import BOM

# --- code systems, identifier systems and extension URLs --------------------------------------
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FR_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
RELIABILITY_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
RELIABILITY_URLS = frozenset({
    RELIABILITY_URL,
    "http://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
    "http://interopsante.org/fhir/StructureDefinition/FrPatientIdentReliability",  # FR Core < 2
})
RELIABILITY_CS = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
BIRTH_PLACE_URL = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
INSEE_CODE_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
INSEE_COMMUNE = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
IDNPS_OID = "urn:oid:1.2.250.1.71.4.2.1"  # idNatPs: "8" + RPPS, "0" + ADELI
IDNST_OID = "urn:oid:1.2.250.1.71.4.2.2"  # idNatSt: "1" + FINESS
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LAB_REPORT = {"coding": [{"system": LOINC, "code": "11502-2", "display": "Laboratory report"}]}
# labvault's own systems, for what neither FHIR nor FR Core name
LOCAL_CODE_PREFIX = "urn:labvault:fhir:code-system:"  # + a local code_system name
FILE_NUMBER_SYSTEM = "urn:labvault:fhir:lab-file-number"
PATIENT_ID_SYSTEM = "urn:labvault:fhir:patient-id"
AMO_CLASS = "urn:labvault:fhir:amo"  # Coverage.class types: regime, caisse, centre
AMC_SYSTEM = "urn:labvault:fhir:amc-number"
UNIT_URL = "urn:labvault:fhir:unit"  # unit of a value that is not a number
AMO_LABEL = "Assurance maladie obligatoire"

INS_TYPES = {InsOid.NIR: "INS-NIR", InsOid.NIA: "INS-NIA", InsOid.TEST_NIR: "INS-NIR-TEST",
             InsOid.TEST_NIA: "INS-NIA-TEST"}
STATUS_CODES = {ResultStatus.PRELIMINARY: "preliminary", ResultStatus.FINAL: "final",
                ResultStatus.CORRECTED: "corrected", ResultStatus.CANCELLED: "cancelled"}
GENDERS = {"M": "male", "F": "female", "O": "other", "U": "unknown"}
DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
COMPARED = re.compile(r"(<=|>=|<|>)(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)")
_NS = uuid.UUID("6f0c1a8e-3d7b-4f43-9a55-2b1c0d9e7f10")  # derived ids of practitioners, labs


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class _Builder:
    """Builds one patient's resources. ``ref`` makes references: urn:uuid (Bundle) or Type/id."""

    def __init__(self, numbers: list[str], token: str, bundle_refs: bool,
                 shared: set[str] | None = None) -> None:
        self.numbers = numbers  # numerals; token + index stands for numbers[index]
        self.token = token
        self.bundle_refs = bundle_refs
        self.shared = shared  # ids of practitioners and labs already written (one Bundle)

    def ref(self, rtype: str, rid: str) -> dict[str, str]:
        return {"reference": f"urn:uuid:{rid}" if self.bundle_refs else f"{rtype}/{rid}"}

    def number(self, text: str) -> str:
        self.numbers.append(text)
        return f"{self.token}{len(self.numbers) - 1}"

    def patient(self, p: Patient) -> dict[str, Any]:
        res: dict[str, Any] = {"resourceType": "Patient", "id": str(p.id)}
        ext = []
        if p.ins is not None:
            ext.append({"url": RELIABILITY_URL, "extension": [{
                "url": "identityStatus",
                "valueCoding": {"system": RELIABILITY_CS, "code": p.ins.status.value}}]})
        if p.birth_place:
            ext.append({"url": BIRTH_PLACE_URL, "valueAddress": {"extension": [{
                "url": INSEE_CODE_URL,
                "valueCoding": {"system": INSEE_COMMUNE, "code": p.birth_place}}]}})
        if ext:
            res["extension"] = ext
        ids: list[dict[str, Any]] = [{"use": "usual", "type": _coding(V2_0203, "PI"),
                                      "system": PATIENT_ID_SYSTEM, "value": str(p.id)}]
        if p.ins is not None:
            ids.append({"use": "official", "type": _coding(FR_V2_0203, INS_TYPES[p.ins.oid]),
                        "system": f"urn:oid:{p.ins.oid.value}", "value": p.ins.matricule})
        if p.nir:
            ids.append({"type": _coding(V2_0203, "NH"), "system": f"urn:oid:{InsOid.NIR.value}",
                        "value": p.nir})
        res["identifier"] = ids
        given = p.first_names.split()
        if p.birth_name and p.birth_name != p.last_name:
            names = [{"use": "official", "family": p.birth_name},
                     {"use": "usual", "family": p.last_name}]
        else:
            names = [{"use": "official" if p.birth_name else "usual", "family": p.last_name}]
        for n in names:
            if given:
                n["given"] = given
        res["name"] = names
        telecom = []
        if p.phone:
            telecom.append({"system": "phone", "value": p.phone})
        if p.email:
            telecom.append({"system": "email", "value": p.email})
        if telecom:
            res["telecom"] = telecom
        res["gender"] = GENDERS[p.sex.value]
        res["birthDate"] = p.birth_date.isoformat()
        if p.address is not None:
            a = p.address
            lines = [x for x in (a.line1, a.line2) if x]
            addr: dict[str, Any] = {"use": "home"}
            if lines:
                addr["line"] = lines
            if a.city:
                addr["city"] = a.city
            if a.postal_code:
                addr["postalCode"] = a.postal_code
            addr["country"] = a.country
            res["address"] = [addr]
        return res

    def coverages(self, p: Patient) -> list[dict[str, Any]]:
        out = []
        subject = self.ref("Patient", str(p.id))
        m = p.mandatory_insurance
        if m is not None:
            classes = [{"type": _coding(AMO_CLASS, name), "value": value}
                       for name, value in (("regime", m.scheme), ("caisse", m.fund),
                                           ("centre", m.centre)) if value]
            out.append({"resourceType": "Coverage", "id": str(uuid.uuid5(p.id, "amo")),
                        "status": "active", "type": _coding(ACT_CODE, "PUBLICPOL"),
                        "beneficiary": subject, "dependent": str(m.beneficiary_rank),
                        "payor": [{"display": AMO_LABEL}], "class": classes})
        c = p.complementary_insurance
        if c is not None:
            payor: dict[str, Any] = {"display": c.organisation}
            if c.amc_number:
                payor["identifier"] = {"system": AMC_SYSTEM, "value": c.amc_number}
            cov: dict[str, Any] = {"resourceType": "Coverage", "id": str(uuid.uuid5(p.id, "amc")),
                                   "status": "active", "type": _coding(ACT_CODE, "EHCPOL"),
                                   "beneficiary": subject, "payor": [payor]}
            if c.member_id:
                cov["subscriberId"] = c.member_id
            out.append(cov)
        return out

    @staticmethod
    def practitioner_id(pr: Prescriber) -> str:
        return str(uuid.uuid5(_NS, f"{pr.rpps}|{pr.adeli}|{pr.last_name}|{pr.first_name}"))

    def practitioner(self, pr: Prescriber) -> dict[str, Any]:
        ids = []
        if pr.rpps:
            ids.append({"type": _coding(FR_V2_0203, "IDNPS"), "system": IDNPS_OID,
                        "value": "8" + pr.rpps})
            ids.append({"type": _coding(FR_V2_0203, "RPPS"), "system": RPPS_SYSTEM,
                        "value": pr.rpps})
        if pr.adeli:
            ids.append({"type": _coding(FR_V2_0203, "ADELI"), "system": IDNPS_OID,
                        "value": "0" + pr.adeli})
        name: dict[str, Any] = {"family": pr.last_name}
        if pr.first_name:
            name["given"] = [pr.first_name]
        res: dict[str, Any] = {"resourceType": "Practitioner", "id": self.practitioner_id(pr)}
        if ids:
            res["identifier"] = ids
        res["name"] = [name]
        return res

    @staticmethod
    def organization(finess: str) -> dict[str, Any]:
        return {"resourceType": "Organization", "id": str(uuid.uuid5(_NS, finess)),
                "identifier": [
                    {"type": _coding(FR_V2_0203, "IDNST"), "system": IDNST_OID, "value": "1" + finess},
                    {"type": _coding(FR_V2_0203, "FINEG"), "system": FINESS_SYSTEM, "value": finess}]}

    def observation(self, r: Result, subject: dict[str, str]) -> dict[str, Any]:
        system = LOINC if r.code_system == "LN" else LOCAL_CODE_PREFIX + r.code_system
        res: dict[str, Any] = {
            "resourceType": "Observation", "id": str(r.id), "status": STATUS_CODES[r.status],
            "category": [_coding(OBS_CATEGORY, "laboratory")],
            "code": {"coding": [{"system": system, "code": r.code, "display": r.label}],
                     "text": r.label},
            "subject": subject}
        if r.observed_at is not None:
            res["effectiveDateTime"] = _when(r.observed_at)
        value = r.value
        if DECIMAL.fullmatch(value):
            qty: dict[str, Any] = {"value": self.number(value)}
            if r.unit is not None:
                qty["unit"] = r.unit
            res["valueQuantity"] = qty
        elif (m := COMPARED.fullmatch(value)) is not None:
            qty = {"value": self.number(m.group(2)), "comparator": m.group(1)}
            if r.unit is not None:
                qty["unit"] = r.unit
            res["valueQuantity"] = qty
        elif value:
            res["valueString"] = value
            if r.unit is not None:
                res["extension"] = [{"url": UNIT_URL, "valueString": r.unit}]
        if r.abnormal_flag is not None:
            res["interpretation"] = [_coding(INTERPRETATION, r.abnormal_flag.value)]
        if r.comments:
            res["note"] = [{"text": c.text} for c in r.comments]
        if r.reference_range:
            res["referenceRange"] = [{"text": r.reference_range}]
        return res

    def order(self, o: Order, subject: dict[str, str], seen: set[str]
              ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        sr_id, dr_id = str(o.id), str(uuid.uuid5(o.id, "report"))
        sr: dict[str, Any] = {"resourceType": "ServiceRequest", "id": sr_id}
        if o.lab_file_number:
            sr["identifier"] = [{"type": _coding(V2_0203, "FILL"), "system": FILE_NUMBER_SYSTEM,
                                 "value": o.lab_file_number}]
        sr |= {"status": "completed", "intent": "order",
               "category": [_coding("http://snomed.info/sct", "108252007")], "subject": subject}
        if o.requested_at is not None:
            sr["authoredOn"] = _when(o.requested_at)
        if o.prescriber is not None:
            pid = self.practitioner_id(o.prescriber)
            sr["requester"] = self.ref("Practitioner", pid)
            if pid not in seen:
                seen.add(pid)
                out.append(self.practitioner(o.prescriber))
        if o.comments:
            sr["note"] = [{"text": c.text} for c in o.comments]
        out.append(sr)
        org = self.organization(o.lab_finess)
        if org["id"] not in seen:
            seen.add(org["id"])
            out.append(org)
        statuses = {r.status for r in o.results}
        dr: dict[str, Any] = {
            "resourceType": "DiagnosticReport", "id": dr_id,
            "basedOn": [self.ref("ServiceRequest", sr_id)],
            "status": "partial" if ResultStatus.PRELIMINARY in statuses else "final",
            "category": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
            "code": LAB_REPORT, "subject": subject}
        if o.sampled_at is not None:
            dr["effectiveDateTime"] = _when(o.sampled_at)
        dr["performer"] = [self.ref("Organization", org["id"])]
        if o.results:
            dr["result"] = [self.ref("Observation", str(r.id)) for r in o.results]
        out.append(dr)
        out.extend(self.observation(r, subject) for r in o.results)
        return out

    def resources(self, record: PatientRecord) -> list[dict[str, Any]]:
        p = record.patient
        subject = self.ref("Patient", str(p.id))
        out = [self.patient(p), *self.coverages(p)]
        seen: set[str] = self.shared if self.shared is not None else set()
        for o in record.orders:
            out.extend(self.order(o, subject, seen))
        return out


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}


class _Numbers:
    """Exact decimals: values are written as random tokens, then replaced by their numerals."""

    def __init__(self) -> None:
        self.token = "\x00" + secrets.token_hex(8) + ":"
        self.values: list[str] = []
        quoted = json.dumps(self.token)[:-1]  # the control character is escaped by json.dumps
        self._pattern = re.compile(re.escape(quoted) + r'([0-9]+)"')

    def builder(self, bundle_refs: bool, shared: set[str] | None = None) -> _Builder:
        return _Builder(self.values, self.token, bundle_refs, shared)

    def dumps(self, obj: Any, indent: int | None = None) -> str:
        text = json.dumps(obj, ensure_ascii=False, separators=None if indent else (",", ":"),
                          indent=indent)
        return self._pattern.sub(lambda m: self.values[int(m.group(1))], text)


def bundle_for(record: PatientRecord) -> dict[str, Any]:
    """One patient's FHIR R4 collection Bundle, as plain JSON data.

    Quantity values are ``int`` or ``float`` here, so trailing zeros of a decimal ("0.70") are
    lost if the dict is serialised with ``json.dumps``; ``write`` keeps them.
    """
    numbers = _Numbers()
    bundle = _bundle(numbers.builder(bundle_refs=True).resources(record))
    for entry in bundle["entry"]:
        qty = entry["resource"].get("valueQuantity")
        if qty is not None:
            text = numbers.values[int(qty["value"][len(numbers.token):])]
            qty["value"] = int(text) if text.lstrip("-").isdigit() else float(text)
    return bundle


def write(records: Iterable[PatientRecord], out: BinaryIO, *, ndjson: bool = True,
          per_resource: bool = False, bom: bool = False, indent: int | None = None,
          crlf: bool = False) -> None:
    """Write FHIR R4 JSON.

    ``ndjson`` (default): one collection Bundle per line, a patient each. ``per_resource``:
    NDJSON of one resource per line, each patient's resources after its Patient, references
    ``Type/id`` (the bulk-export layout). ``ndjson=False``: one JSON Bundle holding every
    patient (built in memory), pretty-printed with ``indent``. ``bom`` and ``crlf`` give the
    ugly variants (a UTF-8 BOM, CRLF line ends).
    """
    nl = b"\r\n" if crlf else b"\n"
    if bom:
        out.write(BOM)
    numbers = _Numbers()
    if not ndjson:
        builder = numbers.builder(bundle_refs=True, shared=set())
        resources = [r for rec in records for r in builder.resources(rec)]
        out.write(numbers.dumps(_bundle(resources), indent).encode("utf-8").replace(b"\n", nl) + nl)
        return
    builder = numbers.builder(bundle_refs=not per_resource)
    for rec in records:
        resources = builder.resources(rec)
        if per_resource:
            out.write(b"".join(numbers.dumps(r).encode("utf-8") + nl for r in resources))
        else:
            out.write(numbers.dumps(_bundle(resources)).encode("utf-8") + nl)
        numbers.values.clear()


__all__ = ["bundle_for", "write"]
