"""The normalised content of a record, independent of ids and of the format it came from.

Used to compare a source unit with what the vault returns (migration verification), to detect
duplicate units, and by the format tests' round trips. Dates and times are compared in UTC,
text with Unicode NFC; ids are left out (the vault assigns its own). ``omit`` drops fields a
format does not carry, by dotted path: ``"patient.email"``, ``"order.prescriber"``,
``"result.status"``, ``"comment"`` (every comment), ``"order.comments"``...
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import unicodedata
import uuid
from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

from labvault.domain.records import Order, Patient, PatientRecord, Result


def _value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime in a record")
        return v.astimezone(UTC).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, str):
        return unicodedata.normalize("NFC", v)
    if dataclasses.is_dataclass(v):
        return {name: _value(getattr(v, name)) for name in _names(type(v))}
    if isinstance(v, (int, float, bool)):
        return v
    if isinstance(v, uuid.UUID):
        raise TypeError("ids are not content")
    raise TypeError(f"unexpected {type(v).__name__}")


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "id")


def _fields(obj: Any, prefix: str, omit: Collection[str],
            skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for name in _names(type(obj)):
        if name in skip or (omit and f"{prefix}.{name}" in omit):
            continue
        out[name] = _value(getattr(obj, name))
    return out


def patient_content(p: Patient, omit: Collection[str] = ()) -> dict[str, Any]:
    return _fields(p, "patient", omit)


def result_content(r: Result, omit: Collection[str] = ()) -> dict[str, Any]:
    out = _fields(r, "result", omit, skip=("comments", "attachments"))
    if "comment" not in omit and "result.comments" not in omit:
        out["comments"] = [_value(c.text) for c in r.comments]
    if r.attachments and "result.attachments" not in omit:
        out["attachments"] = [{"name": a.name, "media_type": a.media_type,
                               "sha256": hashlib.sha256(a.content).hexdigest()}
                              for a in r.attachments]
    return out


def order_content(o: Order, omit: Collection[str] = ()) -> dict[str, Any]:
    out = _fields(o, "order", omit, skip=("results", "comments"))
    if "comment" not in omit and "order.comments" not in omit:
        out["comments"] = [_value(c.text) for c in o.comments]
    out["results"] = [result_content(r, omit) for r in o.results]
    return out


def record_content(record: PatientRecord, omit: Collection[str] = ()) -> dict[str, Any]:
    return {"patient": patient_content(record.patient, omit),
            "orders": [order_content(o, omit) for o in record.orders]}


def canonical_bytes(content: Any) -> bytes:
    """A stable byte form of a content structure, for digests."""
    return json.dumps(content, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


__all__ = ["canonical_bytes", "order_content", "patient_content", "record_content",
           "result_content"]
