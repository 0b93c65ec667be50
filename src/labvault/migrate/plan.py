"""`labvault migrate plan`: inventory of source exports, without storing anything.

The plan names each source file with its size and SHA-256, the format detected, the encoding
and line endings, counts per record type and per domain record, the date range of the exams,
the anomalies found (rejected units, invalid identifier keys, duplicates, local codes) with
their positions but never a value, and an estimate of the import's duration. Later steps refer
to the plan; `run` refuses a source whose SHA-256 no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labvault import ingest
from labvault.domain.normalize import patient_nir
from labvault.domain.validation import validate_record
from labvault.errors import ConfigurationError, InvalidRecord
from labvault.ingest.base import Reader, ReadStats, Rejected, Unit
from labvault.migrate import attachments
from labvault.private_file import write_private

PLAN_VERSION = 1
EXAMPLES = 20
# Measured by bench/migrate.py (HL7 v2, SQLite, 2 cores): results stored per second.
ESTIMATED_RESULTS_PER_SECOND = 5_000
DEFAULT_STAGING_DAYS = 30
MAX_STAGING_DAYS = 365


def file_sha256(path: Path) -> tuple[bytes, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.digest(), size


@dataclass
class SourcePlan:
    index: int
    path: str
    name: str
    format: str
    mapping: str | None = None
    mapping_sha256: str | None = None
    size: int = 0
    sha256: str = ""
    encoding: str | None = None
    line_ending: str | None = None
    version: str | None = None
    segments: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    units: int = 0
    parsed: int = 0
    rejected: int = 0
    patients: int = 0
    orders: int = 0
    results: int = 0
    comments: int = 0
    first_date: str | None = None
    last_date: str | None = None
    anomalies: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    # report files named by FIC results, found beside the source: name, path, size, sha256,
    # and the staging index they will be sealed under
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def attachment_index(self) -> dict[str, int]:
        return {a["name"]: a["index"] for a in self.attachments}


@dataclass
class Plan:
    migration_id: uuid.UUID
    created_at: datetime
    created_by: str
    sources: list[SourcePlan]
    staging_days: int = DEFAULT_STAGING_DAYS
    raw: bytes = b""  # the plan file's bytes, once written or loaded

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def totals(self) -> dict[str, int]:
        keys = ("units", "parsed", "rejected", "orders", "results", "comments")
        return {k: sum(getattr(s, k) for s in self.sources) for k in keys} | {
            "anomalies": sum(sum(s.anomalies.values()) for s in self.sources)}

    def to_json(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "labvault_plan": PLAN_VERSION,
            "migration_id": str(self.migration_id),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "staging_days": self.staging_days,
            "sources": [vars(s) for s in self.sources],
            "totals": totals,
            "estimate": {"results_per_second": ESTIMATED_RESULTS_PER_SECOND,
                         "seconds": round(totals["results"] / ESTIMATED_RESULTS_PER_SECOND)},
        }

    def write(self, path: Path) -> None:
        data = json.dumps(self.to_json(), indent=2, ensure_ascii=False).encode() + b"\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, data)
        self.raw = data


def load_plan(path: Path) -> Plan:
    try:
        data = path.read_bytes()
        doc = json.loads(data)
        if doc.get("labvault_plan") != PLAN_VERSION:
            raise ValueError("not a labvault plan")
        sources = [SourcePlan(**s) for s in doc["sources"]]
        plan = Plan(uuid.UUID(doc["migration_id"]), datetime.fromisoformat(doc["created_at"]),
                    doc["created_by"], sources, int(doc["staging_days"]))
        if not 1 <= plan.staging_days <= MAX_STAGING_DAYS:
            raise ValueError("staging days out of range")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigurationError(f"cannot read the plan {path.name}: {type(e).__name__}") from None
    plan.raw = data
    return plan


def source_reader(src: SourcePlan) -> Reader:
    """The reader a planned source is read with; its CSV mapping must not have changed."""
    mapping = Path(src.mapping) if src.mapping else None
    if mapping is not None and file_sha256(mapping)[0].hex() != src.mapping_sha256:
        raise ConfigurationError(f"the CSV mapping of {src.name} changed since the plan; "
                                 "make a new plan")
    return ingest.reader_for(src.format, mapping)


def _bump(src: SourcePlan, key: str, position: str, field_: str, reason: str) -> None:
    src.anomalies[key] = src.anomalies.get(key, 0) + 1
    if len(src.examples) < EXAMPLES:
        src.examples.append({"position": position, "field": field_, "reason": reason})


def inventory(src: SourcePlan, units: Iterator[Unit], seen: set[bytes]) -> set[str]:
    """Fold a file's units into its plan entry: counts, dates, anomalies. Returns the names of
    the attached report files its results point to."""
    patients: set[object] = set()
    files: set[str] = set()
    first = last = None
    for u in units:
        src.units += 1
        if isinstance(u, Rejected):
            src.rejected += 1
            _bump(src, f"rejected: {u.field}: {u.reason}", str(u.position), u.field, u.reason)
            continue
        src.parsed += 1
        rec = u.record
        try:
            validate_record(rec)
        except InvalidRecord as e:
            _bump(src, f"invalid: {e.field}: {e.reason}", str(u.position), e.field, e.reason)
        for a in u.anomalies:
            _bump(src, f"note: {a.field}: {a.reason}", str(u.position), a.field, a.reason)
        if u.source_sha256 in seen:
            _bump(src, "duplicate unit (identical source bytes)", str(u.position), "unit",
                  "identical to an earlier unit")
        seen.add(u.source_sha256)
        p = rec.patient
        patients.add(patient_nir(p) or u.source_patient_id or (p.last_name, p.birth_date))
        src.orders += len(rec.orders)
        files.update(attachments.referenced(rec))
        for o in rec.orders:
            src.comments += len(o.comments)
            when = o.sampled_at or o.requested_at
            if when is not None:
                first = when if first is None or when < first else first
                last = when if last is None or when > last else last
            for r in o.results:
                src.results += 1
                src.comments += len(r.comments)
                if r.code_system != "LN":
                    _bump(src, "note: result.code_system: local code (not LOINC)",
                          str(u.position), "result.code_system", "local code (not LOINC)")
    src.patients = len(patients)
    src.first_date = first.date().isoformat() if first else None
    src.last_date = last.date().isoformat() if last else None
    return files


def _locate_attachments(src: SourcePlan, names: set[str], path: Path, next_index: int) -> int:
    for name in sorted(names):
        found = attachments.locate(path, name)
        if found is None or found.stat().st_size > attachments.MAX_BYTES:
            key = "attached report file not found beside the source, or too large"
            _bump(src, key, src.name, "result.value (FIC)", key)
            continue
        digest, size = file_sha256(found)
        src.attachments.append({"index": next_index, "name": name, "path": str(found.resolve()),
                                "size": size, "sha256": digest.hex()})
        next_index += 1
    return next_index

def make_plan(sources: Sequence[Path], *, created_by: str, now: datetime,
              fmt: str | None = None, mapping: Path | None = None,
              staging_days: int = DEFAULT_STAGING_DAYS,
              progress: Callable[[int], None] | None = None) -> Plan:
    if len(sources) >= attachments.FIRST_INDEX:
        raise ConfigurationError(f"at most {attachments.FIRST_INDEX - 1} source files per "
                                 "migration: split it in several plans")
    if not 1 <= staging_days <= MAX_STAGING_DAYS:
        raise ConfigurationError(f"staging days must be between 1 and {MAX_STAGING_DAYS}")
    plan = Plan(uuid.uuid4(), now, created_by, [], staging_days)
    seen: set[bytes] = set()
    next_attachment = attachments.FIRST_INDEX
    for index, path in enumerate(sources):
        if not path.is_file():
            raise ConfigurationError(f"source {index + 1} is not a readable file")
        with path.open("rb") as f:
            detected = fmt or ingest.detect(f.read(4096))
        if detected is None:
            raise ConfigurationError(f"source {index + 1} ({path.name}): format not recognised; "
                                     "name it with --format")
        src = SourcePlan(index, str(path.resolve()), path.name, detected,
                         str(mapping.resolve()) if mapping and detected == "csv" else None)
        if src.mapping:
            src.mapping_sha256 = file_sha256(Path(src.mapping))[0].hex()
        stats = ReadStats()
        reader = ingest.reader_for(detected, mapping)
        digest, src.size = file_sha256(path)
        src.sha256 = digest.hex()
        with path.open("rb") as f:
            names = inventory(src, reader(f, path.name, stats), seen)
        next_attachment = _locate_attachments(src, names, path, next_attachment)
        src.encoding, src.line_ending, src.version = stats.encoding, stats.line_ending, stats.version
        src.segments, src.notes = dict(stats.segments), list(stats.notes)
        plan.sources.append(src)
        if progress:
            progress(src.size)
    return plan


__all__ = ["Plan", "SourcePlan", "file_sha256", "load_plan", "make_plan", "source_reader"]
