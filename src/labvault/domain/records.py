"""A laboratory's records: patient, prescriber, order (exam request), result, comment.

Pure data, no I/O. Every record masks its representation: a record printed into a log shows
its kind and id, never a personal value. Validation of French identifiers lives in
`labvault.domain.identifiers`; `validate_patient` and friends apply it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from enum import StrEnum

from labvault.secret import MASK


class Masked:
    """Mixin: ``repr`` shows the record kind and id only."""

    __slots__ = ()

    def __repr__(self) -> str:
        rid = getattr(self, "id", None)
        names = ", ".join(f.name for f in fields(self) if f.name != "id")  # type: ignore[arg-type]
        shown = f"id={rid}, " if rid is not None else ""
        return f"{type(self).__name__}({shown}{names}={MASK})"

    __str__ = __repr__


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"
    OTHER = "O"
    UNKNOWN = "U"


class IdentityStatus(StrEnum):
    """INS identity status (référentiel national d'identitovigilance)."""

    PROVISIONAL = "PROV"
    RECOVERED = "RECUP"
    VALIDATED = "VALI"
    QUALIFIED = "QUAL"


class InsOid(StrEnum):
    """OIDs of the INS matricule's assigning authority."""

    NIR = "1.2.250.1.213.1.4.8"
    NIA = "1.2.250.1.213.1.4.9"
    TEST_NIR = "1.2.250.1.213.1.4.10"
    TEST_NIA = "1.2.250.1.213.1.4.11"

    @property
    def is_test(self) -> bool:
        return self in (InsOid.TEST_NIR, InsOid.TEST_NIA)

    @property
    def is_nir_based(self) -> bool:
        return self in (InsOid.NIR, InsOid.TEST_NIR)


class AbnormalFlag(StrEnum):
    """HL7 table 0078 subset used by French labs."""

    NORMAL = "N"
    LOW = "L"
    HIGH = "H"
    CRITICALLY_LOW = "LL"
    CRITICALLY_HIGH = "HH"
    ABNORMAL = "A"


class ResultStatus(StrEnum):
    """HL7 table 0085 subset."""

    PRELIMINARY = "P"
    FINAL = "F"
    CORRECTED = "C"
    CANCELLED = "X"


def new_id() -> uuid.UUID:
    return uuid.uuid4()


@dataclass(frozen=True, slots=True, repr=False)
class Ins(Masked):
    """Identité Nationale de Santé: matricule (NIR or NIA) + OID + identity status."""

    matricule: str
    oid: InsOid
    status: IdentityStatus = IdentityStatus.PROVISIONAL


@dataclass(frozen=True, slots=True, repr=False)
class Address(Masked):
    line1: str
    postal_code: str
    city: str
    line2: str | None = None
    country: str = "FR"


@dataclass(frozen=True, slots=True, repr=False)
class MandatoryInsurance(Masked):
    """Assurance maladie obligatoire: scheme (régime), fund (caisse) and centre codes."""

    scheme: str
    fund: str
    centre: str | None = None
    beneficiary_rank: int = 1


@dataclass(frozen=True, slots=True, repr=False)
class ComplementaryInsurance(Masked):
    """Assurance complémentaire (mutuelle): organisation, AMC number and member id."""

    organisation: str
    amc_number: str | None = None
    member_id: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Patient(Masked):
    last_name: str
    first_names: str
    birth_date: date
    sex: Sex
    birth_name: str | None = None
    nir: str | None = None
    ins: Ins | None = None
    birth_place: str | None = None  # INSEE commune code, or 99xxx for a foreign country
    address: Address | None = None
    phone: str | None = None
    email: str | None = None
    mandatory_insurance: MandatoryInsurance | None = None
    complementary_insurance: ComplementaryInsurance | None = None
    id: uuid.UUID = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, repr=False)
class Prescriber(Masked):
    last_name: str
    first_name: str | None = None
    rpps: str | None = None
    adeli: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Comment(Masked):
    """Free text at order or result level. Often the most sensitive field of all."""

    text: str
    id: uuid.UUID = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, repr=False)
class Attachment(Masked):
    """A report file attached to a result (HPRIM Santé ``FIC``): a PDF or a text, sealed too."""

    name: str
    media_type: str
    content: bytes
    id: uuid.UUID = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, repr=False)
class Result(Masked):
    code_system: str  # "LN" for LOINC, or a local system name
    code: str
    label: str
    value: str
    unit: str | None = None
    reference_range: str | None = None
    abnormal_flag: AbnormalFlag | None = None
    status: ResultStatus = ResultStatus.FINAL
    observed_at: datetime | None = None
    comments: tuple[Comment, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    id: uuid.UUID = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, repr=False)
class Order(Masked):
    """An exam request (demande d'examen)."""

    lab_finess: str
    sampled_at: datetime | None = None
    requested_at: datetime | None = None
    prescriber: Prescriber | None = None
    lab_file_number: str | None = None
    results: tuple[Result, ...] = ()
    comments: tuple[Comment, ...] = ()
    id: uuid.UUID = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, repr=False)
class PatientRecord(Masked):
    """A patient with everything the lab holds about them."""

    patient: Patient
    orders: tuple[Order, ...] = ()

    @property
    def id(self) -> uuid.UUID:
        return self.patient.id

    def result_count(self) -> int:
        return sum(len(o.results) for o in self.orders)
