"""How each personal field of a record becomes bytes before sealing, and back after opening.

Scalars are UTF-8 text (dates and datetimes in ISO 8601, enums by value); composite fields
(address, INS, insurances, prescriber) are compact JSON. Used only by the vault.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from labvault.domain.records import (
    AbnormalFlag,
    Address,
    ComplementaryInsurance,
    IdentityStatus,
    Ins,
    InsOid,
    MandatoryInsurance,
    Prescriber,
    ResultStatus,
    Sex,
)


def enc_text(value: str) -> bytes:
    return value.encode("utf-8")


def dec_text(raw: bytes) -> str:
    return raw.decode("utf-8")


def enc_iso(value: date | datetime) -> bytes:
    return value.isoformat().encode("ascii")


def dec_date(raw: bytes) -> date:
    return date.fromisoformat(raw.decode("ascii"))


def dec_datetime(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode("ascii"))


def enc_json(value: Any) -> bytes:
    doc = {k: v for k, v in asdict(value).items() if v is not None}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _dec_json(cls: type) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        return cls(**json.loads(raw))
    return decode


def dec_ins(raw: bytes) -> Ins:
    doc = json.loads(raw)
    return Ins(doc["matricule"], InsOid(doc["oid"]), IdentityStatus(doc["status"]))


def _dec_enum(cls: type) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        return cls(raw.decode("ascii"))
    return decode


Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
TEXT: Codec = (enc_text, dec_text)
DATE: Codec = (enc_iso, dec_date)
DATETIME: Codec = (enc_iso, dec_datetime)

PATIENT: dict[str, Codec] = {
    "last_name": TEXT, "birth_name": TEXT, "first_names": TEXT, "birth_date": DATE,
    "sex": (enc_text, _dec_enum(Sex)), "nir": TEXT, "ins": (enc_json, dec_ins),
    "birth_place": TEXT, "address": (enc_json, _dec_json(Address)), "phone": TEXT, "email": TEXT,
    "mandatory_insurance": (enc_json, _dec_json(MandatoryInsurance)),
    "complementary_insurance": (enc_json, _dec_json(ComplementaryInsurance)),
}
ORDER: dict[str, Codec] = {
    "lab_finess": TEXT, "requested_at": DATETIME, "sampled_at": DATETIME,
    "prescriber": (enc_json, _dec_json(Prescriber)), "lab_file_number": TEXT,
}
RESULT: dict[str, Codec] = {
    "code_system": TEXT, "code": TEXT, "label": TEXT, "value": TEXT, "unit": TEXT,
    "reference_range": TEXT, "abnormal_flag": (enc_text, _dec_enum(AbnormalFlag)),
    "status": (enc_text, _dec_enum(ResultStatus)), "observed_at": DATETIME,
}
COMMENT: dict[str, Codec] = {"text": TEXT}
ATTACHMENT: dict[str, Codec] = {"name": TEXT, "media_type": TEXT,
                                "content": (bytes, bytes)}
