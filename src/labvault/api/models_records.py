"""Request and response bodies of patient registration, order entry and validation.

Every string is bounded and unknown fields are refused (`Strict`); a validation error names
the field and the kind of error, never the value (see ``app.py``). The French identifiers
(NIR, FINESS, RPPS) are checked by the vault's domain validation, whose errors name the field
too. `to_patient` and `to_order` build the domain records the vault takes.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from labvault.api.models import Strict
from labvault.domain.records import (
    AbnormalFlag,
    Address,
    Comment,
    Order,
    Patient,
    Prescriber,
    Result,
    ResultStatus,
    Sex,
)

NameText = Annotated[str, StringConstraints(min_length=1, max_length=100)]
CommentText = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class AddressIn(Strict):
    line1: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    line2: str | None = Field(default=None, min_length=1, max_length=200)
    country: str = Field(default="FR", pattern=r"^[A-Z]{2}$")


class PatientIn(Strict):
    """A patient's identity and contact details (results are entered as orders)."""

    last_name: NameText
    first_names: str = Field(min_length=1, max_length=200)
    birth_date: date
    sex: Sex
    birth_name: str | None = Field(default=None, min_length=1, max_length=100)
    nir: str | None = Field(default=None, min_length=13, max_length=21)
    birth_place: str | None = Field(default=None, pattern=r"^[0-9][0-9AB][0-9]{3}$")
    address: AddressIn | None = None
    phone: str | None = Field(default=None, min_length=1, max_length=30)
    email: str | None = Field(default=None, min_length=3, max_length=254)


class PatientCreatedOut(BaseModel):
    patient_id: uuid.UUID


class PrescriberIn(Strict):
    last_name: NameText
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    rpps: str | None = Field(default=None, pattern=r"^[0-9]{11}$")


class ResultIn(Strict):
    code_system: str = Field(min_length=1, max_length=40)  # "LN" for LOINC, or a local system
    code: str = Field(min_length=1, max_length=40)
    label: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=2000)
    unit: str | None = Field(default=None, min_length=1, max_length=40)
    reference_range: str | None = Field(default=None, min_length=1, max_length=100)
    abnormal_flag: AbnormalFlag | None = None
    # Entered results wait for a biologist's validation; final or corrected needs that right.
    status: ResultStatus = ResultStatus.PRELIMINARY
    observed_at: datetime | None = None


class OrderIn(Strict):
    lab_finess: str = Field(min_length=9, max_length=9)
    sampled_at: datetime | None = None
    requested_at: datetime | None = None
    prescriber: PrescriberIn | None = None
    lab_file_number: str | None = Field(default=None, min_length=1, max_length=40)
    results: list[ResultIn] = Field(default_factory=list, max_length=500)
    comments: list[CommentText] = Field(default_factory=list, max_length=20)


class OrderCreatedOut(BaseModel):
    order_id: uuid.UUID


class ValidatedOut(BaseModel):
    validated: int


def to_patient(body: PatientIn) -> Patient:
    data = body.model_dump(exclude={"address"})
    address = Address(**body.address.model_dump()) if body.address is not None else None
    return Patient(address=address, **data)


def to_order(body: OrderIn) -> Order:
    prescriber = Prescriber(**body.prescriber.model_dump()) if body.prescriber else None
    return Order(
        lab_finess=body.lab_finess, sampled_at=body.sampled_at, requested_at=body.requested_at,
        prescriber=prescriber, lab_file_number=body.lab_file_number,
        results=tuple(Result(**r.model_dump()) for r in body.results),
        comments=tuple(Comment(text) for text in body.comments))
