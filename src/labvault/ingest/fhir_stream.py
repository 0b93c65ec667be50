"""FHIR R4 streaming: NDJSON lines and Bundles to units, one per Patient.

JSON parsing (numbers keep their text), validation, entries and references, and the split of a
file into units, each mapped by :mod:`labvault.ingest.fhir_map`. The variants read and the units
are described in :mod:`labvault.ingest.fhir`.

Validation
    Every resource a unit uses is validated with the FHIR **R4** models of ``fhirclient``
    (SMART on FHIR, 4.4.0, generated from FHIR 4.0.1): JSON types, primitive formats (date,
    dateTime regexes), required elements and unknown elements. ``fhir.resources`` 8.x was not
    used: it defaults to R5 and only ships R4B (4.3), not R4. fhirclient does not check codes,
    so the mapped codes are checked by :mod:`labvault.ingest.fhir_map`. A failure rejects the
    unit with the element path (``Patient.birthDate``, ``Observation.valueQuantity.value``;
    list indices dropped) and a fixed reason (``wrong JSON type``, ``invalid format``,
    ``required element missing``, ``unknown element (not FHIR R4)``). An **R5-only element**
    (``Observation.triggeredBy``...) is therefore an unknown element: the unit is Rejected
    rather than imported with data silently dropped. A dateTime with a time but no offset
    (invalid in FHIR, common in legacy exports) is read as Europe/Paris time, with an anomaly;
    a date-only ``effectiveDateTime`` is midnight Europe/Paris. Validation costs about 50 µs
    per Observation.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from fhirclient.models import bundle as fhir_bundle
from fhirclient.models import resource as fhir_resource
from fhirclient.models.fhirabstractbase import FHIRValidationError
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from labvault.domain.records import PatientRecord
from labvault.errors import InvalidRecord
from labvault.ingest.base import (
    BOM,
    Anomaly,
    Parsed,
    Position,
    ReadStats,
    Rejected,
    Unit,
    line_ending_label,
    sha256,
)
from labvault.ingest.fhir_map import CLINICAL_TYPES, PARIS, SHARED_TYPES, _Mapper, _Num

BUNDLE_TYPES = frozenset({"collection", "transaction", "batch", "searchset", "document"})
PATIENT_FIELDS = ("subject", "patient", "beneficiary")
_NAIVE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")
_REF = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/.*)?")
_MISSING = re.compile(r'property "([A-Za-z]+)"')


def _no_constant(_: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=_Num, parse_constant=_no_constant)


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
            if n == 1 and raw.startswith(BOM):
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
        self.stats.line_ending = line_ending_label(k for k, v in self.endings.items() if v)

    def whole(self, data: bytes) -> Iterator[Unit]:
        """A pretty-printed JSON document: loaded whole (see :mod:`labvault.ingest.fhir`)."""
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
