"""Request and response bodies of the API, and how records become JSON.

Request models bound every string, so that no field can carry an unbounded value; validation
errors name the field and the kind of error, never the value (see ``app.py``).
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import date, datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from labvault.access.principal import Role


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class ChallengeOut(BaseModel):
    challenge: str


class MfaIn(Strict):
    challenge: str = Field(min_length=1, max_length=200)
    code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    recovery_code: str | None = Field(default=None, min_length=1, max_length=40)
    role: Role | None = None


class SessionOut(BaseModel):
    token: str
    role: str
    expires_at: datetime
    idle_expires_at: datetime


class CodeIn(Strict):
    code: str = Field(pattern=r"^[0-9]{6}$")


class EnrolIn(Strict):
    enrolment_token: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=256)


class EnrolOut(BaseModel):
    otpauth_uri: str
    secret: str


class EnrolConfirmIn(Strict):
    enrolment_token: str = Field(min_length=1, max_length=200)
    code: str = Field(pattern=r"^[0-9]{6}$")


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class SearchIn(Strict):
    """By NIR, or by last name and birth date (exact match through blind indexes)."""

    nir: str | None = Field(default=None, min_length=13, max_length=21)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    birth_date: date | None = None


class SearchOut(BaseModel):
    patient_ids: list[uuid.UUID]


class AccountIn(Strict):
    email: str = Field(min_length=3, max_length=254)
    display_name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1, max_length=6)
    rpps: str | None = Field(default=None, pattern=r"^[0-9]{11}$")
    patient_id: uuid.UUID | None = None
    site: str | None = Field(default=None, pattern=r"^[0-9][0-9AB][0-9]{7}$",
                             description="FINESS of the lab site the person works at")


class AwaitingApprovalOut(BaseModel):
    """An account, re-enrolment or token asked for: no secret exists until a second person
    approves it."""

    id: uuid.UUID
    status: Literal["awaiting_approval"]


class EnrolmentTokenOut(BaseModel):
    """An approved account's one-time enrolment token (null for a service account: active at
    once, it signs in with API tokens only)."""

    enrolment_token: str | None


class AccountOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    roles: list[str]
    status: str
    enrolled_at: datetime | None
    created_at: datetime
    requested_by: str | None
    approved_by: str | None


class TokenIn(Strict):
    scopes: list[str] = Field(min_length=1, max_length=20)
    days: int = Field(ge=1, le=365)
    label: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9 ._:-]+$")


class TokenCreatedOut(BaseModel):
    id: uuid.UUID
    token: str


# Event positions fit PostgreSQL's bigint.
MAX_SEQ = 2**62


class VerifyIn(Strict):
    start: int = Field(default=1, ge=1, le=MAX_SEQ)
    end: int | None = Field(default=None, ge=1, le=MAX_SEQ)


def to_json(obj: Any) -> Any:
    """A domain record (dataclasses, enums, dates, ids) as JSON-ready data.

    Attachment contents are sent base64-encoded.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, tuple | list):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj
