"""What every importer yields: one *unit* per input record, either parsed or rejected.

A unit is the smallest piece of a source file that stands on its own: an HPRIM Santé patient
group (P and its OBR/OBX/C records), an HPRIM Médecin report, an HL7 v2 message (or one patient
group of it), a FHIR Bundle or patient group of NDJSON lines, a CSV block of consecutive rows for
one patient and exam. Units of a file are numbered 1, 2, 3... with no gap: whatever bytes a
reader cannot attach to a unit become a `Rejected` unit of their own, so a file's units always
account for all of it and counts add up (read = stored + quarantined + duplicates).

Readers stream: memory stays flat whatever the file size. They check syntax, required fields,
dates, codes and enumerations; identifier keys (NIR, FINESS, RPPS...) are checked once for every
format by `labvault.vault.validate_record` when the unit is planned or imported.

Nothing here prints a personal value: `Parsed` and `Rejected` mask their representation, and
a rejection names the field and the position, never the value.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol
from zoneinfo import ZoneInfo

from labvault.domain.records import Masked, PatientRecord
from labvault.errors import InvalidRecord

PARIS = ZoneInfo("Europe/Paris")  # the zone of French formats' times without an offset
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte order mark


@dataclass(frozen=True, slots=True)
class Position:
    """Where a unit starts in its source: file name (no directory), 1-based line, segment."""

    file: str
    line: int | None = None
    segment: str | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.segment:
            parts.append(self.segment)
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A non-fatal finding inside a parsed unit (unknown code, ignored field...)."""

    field: str
    reason: str
    position: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Parsed(Masked):
    """A unit read into domain records: one patient and the orders this unit carries."""

    seq: int
    position: Position
    record: PatientRecord
    source_sha256: bytes  # digest of the unit's source bytes (provenance)
    source_patient_id: str | None = None  # the legacy system's own patient code, if any
    anomalies: tuple[Anomaly, ...] = ()


@dataclass(frozen=True, slots=True, repr=False)
class Rejected(Masked):
    """A unit that cannot be imported: it goes to the (sealed) quarantine with its reason."""

    seq: int
    position: Position
    field: str
    reason: str
    raw: bytes  # the unit's source bytes; personal data, sealed before it is stored

    @classmethod
    def from_error(cls, seq: int, position: Position, error: InvalidRecord,
                   raw: bytes) -> Rejected:
        return cls(seq, position, error.field, error.reason, raw)


Unit = Parsed | Rejected


@dataclass
class ReadStats:
    """Facts a reader records while streaming, for the migration plan. No personal values."""

    encoding: str | None = None  # e.g. "utf-8", "cp1252", "iso-8859-1"
    line_ending: str | None = None  # "CRLF", "CR", "LF" or "mixed"
    version: str | None = None  # format version when the source states one
    segments: Counter[str] = field(default_factory=Counter)  # record/segment/resource type
    notes: list[str] = field(default_factory=list)  # e.g. "delimiters \\^&~", "MLLP framing"


class Reader(Protocol):
    """One format's streaming reader."""

    def __call__(self, stream: BinaryIO, name: str,
                 stats: ReadStats | None = None) -> Iterator[Unit]: ...


class Writer(Protocol):
    """One format's writer (export, test fixtures, benchmarks)."""

    def __call__(self, records: Iterable[PatientRecord], out: BinaryIO) -> None: ...


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def source_name(name: str) -> str:
    """The file name given to a reader without any directory ("/" or "\\" separated)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


_LINE_END_LABELS: dict[str | bytes, str] = {
    b"\r\n": "CRLF", b"\n": "LF", b"\r": "CR", "CRLF": "CRLF", "LF": "LF", "CR": "CR"}


def line_ending_label(seen: Iterable[str | bytes]) -> str | None:
    """`ReadStats.line_ending` from the line ends seen in a file: "CRLF", "LF", "CR", "mixed"
    or None when there was none.

    ``seen`` holds labels ("CRLF", "LF", "CR") or the ends themselves (b"\\r\\n"...); anything
    else is ignored. Every item counts as seen: filter out zero counts before passing keys.
    """
    kinds = {_LINE_END_LABELS[k] for k in seen if k in _LINE_END_LABELS}
    if len(kinds) > 1:
        return "mixed"
    return kinds.pop() if kinds else None


__all__ = ["BOM", "PARIS", "Anomaly", "Parsed", "Position", "ReadStats", "Reader", "Rejected",
           "Unit", "Writer", "line_ending_label", "sha256", "source_name"]
