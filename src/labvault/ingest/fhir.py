"""FHIR R4 (4.0.1) JSON: Bundles and bulk-export NDJSON of laboratory data.

Variants read
    * a JSON Bundle of type collection, transaction, batch, searchset or document, in a file of
      its own (pretty-printed or not). Such a file is **loaded whole** into memory: JSON gives no
      way to stream one object, so keep single-Bundle files to a reasonable size;
    * NDJSON (bulk export), streamed line by line with flat memory: (a) one Bundle per line,
      (b) one resource per line, a Patient then the resources referencing it (Practitioner,
      Organization and PractitionerRole lines may come anywhere: they are shared and kept for
      the groups after them); (a) and (b) lines may be mixed. Blank lines are skipped, a UTF-8
      BOM is accepted, line ends may be LF or CRLF.

Units
    One unit per Patient: the Patient and the resources whose ``subject`` / ``patient`` /
    ``beneficiary`` is that Patient, with the resources they reference. In NDJSON (b) a group
    ends at the next Patient or Bundle line; a line referencing a patient that is not the
    current group's is Rejected on its own (field ``Observation.subject``...), and so is a line
    that is not JSON (reason ``invalid JSON``, or ``truncated JSON`` when it stops short, as a
    cut last line does). In a Bundle, an entry referencing a Patient absent from the Bundle is
    Rejected on its own; a Bundle without any Patient is one Rejected unit. Position: the line
    (NDJSON) and, inside a Bundle, ``entry N`` (1-based index of the Patient's entry). A unit's
    bytes are its line(s), or the whole Bundle when it is the Bundle's only unit; a Bundle
    holding several patients gives each unit a re-serialised collection Bundle of its entries.

Validation
    Every resource a unit uses is validated with the FHIR **R4** models of ``fhirclient``; a
    failure rejects the unit with the element path (``Patient.birthDate``) and a fixed reason,
    so an R5-only element rejects the unit rather than being silently dropped. Details in
    :mod:`labvault.ingest.fhir_stream`.

Modules
    :mod:`labvault.ingest.fhir_stream`: NDJSON and Bundle streaming, validation, units;
    :mod:`labvault.ingest.fhir_map`: the mapping to the domain (identifiers, extensions, code
    maps), documented there; :mod:`labvault.ingest.fhir_write`: the writer (``bundle_for``,
    ``write``, re-exported here) and the code systems and URLs both sides use.

Not carried / limits
    Everything of the domain is carried (NOT_CARRIED is empty). The unit of a non-numeric
    value travels in a labvault extension; other FHIR readers ignore it. Resource types not
    mapped (Encounter, Specimen...) are validated and ignored with an anomaly; Observation.component
    is not read; contained resources are not resolved; an Observation listed twice is read
    once. In NDJSON (b) the shared resources are kept for the whole file
    (memory grows with the number of distinct practitioners and laboratories, not patients).
    ``bundle_for`` returns decimals as floats (see :mod:`labvault.ingest.fhir_write`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from labvault.ingest import fhir_write as w  # noqa: F401  (re-exported: callers use fhir.w.*)
from labvault.ingest.base import BOM, Parsed, ReadStats, Rejected, source_name
from labvault.ingest.fhir_stream import _Reader
from labvault.ingest.fhir_write import bundle_for, write

NOT_CARRIED: frozenset[str] = frozenset()


def sniff(head: bytes) -> bool:
    """A JSON object (after an optional BOM and blanks) naming a resourceType early on."""
    text = head.removeprefix(BOM).lstrip()
    return text.startswith(b"{") and b'"resourceType"' in text[:4096]


def read(stream: BinaryIO, name: str, stats: ReadStats | None = None) -> Iterator[Parsed | Rejected]:
    """Stream the units of a FHIR R4 JSON Bundle file or NDJSON file (see the module docstring)."""
    return _Reader(stream, source_name(name), stats if stats is not None else ReadStats()).run()


__all__ = ["NOT_CARRIED", "bundle_for", "read", "sniff", "write"]
