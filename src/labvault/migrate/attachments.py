"""Report files attached to results (HPRIM Santé ``FIC``), found beside the source export.

An HPRIM Santé result of type FIC carries, as its value, the name of a PDF or text report sent
with the file. The plan looks for each named file in the source's directory and records its
size and SHA-256; the run stages it sealed like the source and stores its content sealed with
the result (`Attachment`); the verification compares its digest. A FIC result whose file is
missing sends its unit to the quarantine: a result without its report would be incomplete.
"""

from __future__ import annotations

import dataclasses
import mimetypes
import stat
from collections.abc import Callable
from pathlib import Path, PurePath

from labvault.domain.records import Attachment, PatientRecord
from labvault.ingest.base import Parsed, Rejected, Unit
from labvault.ingest.content import canonical_bytes, record_content

PREFIX = "FIC:"
FIRST_INDEX = 10_000  # staging file indexes of attachments start here (sources count from 0)
MAX_BYTES = 64 << 20
MEDIA_TYPES = {".pdf": "application/pdf", ".txt": "text/plain", ".rtf": "application/rtf",
               ".htm": "text/html", ".html": "text/html"}


def referenced(record: PatientRecord) -> list[str]:
    """Names of the attached files a record's results point to."""
    return [r.value[len(PREFIX):] for o in record.orders for r in o.results
            if r.value.startswith(PREFIX)]


def locate(source: Path, name: str) -> Path | None:
    """The attached file beside the source, or None.

    Only a regular file directly in the source's folder qualifies: no directory part in the
    name, no symbolic link (a link planted in an export folder could otherwise pull in any
    file the operator can read, the key file included), nothing that resolves elsewhere.
    """
    if not name or PurePath(name).name != name or name in (".", ".."):
        return None
    folder = source.parent.resolve()
    path = folder / name
    try:
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or path.resolve().parent != folder:
        return None
    return path


def media_type(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def attach(unit: Unit, files: dict[str, int], read: Callable[[int], bytes]) -> Unit:
    """The unit with each FIC result's file content attached (read by staging index).

    `files` maps an attached file's name to its staging index; a name it lacks rejects the unit.
    """
    if not isinstance(unit, Parsed) or not referenced(unit.record):
        return unit
    orders = []
    for order in unit.record.orders:
        results = []
        for r in order.results:
            if r.value.startswith(PREFIX):
                name = r.value[len(PREFIX):]
                index = files.get(name)
                if index is None:
                    return Rejected(unit.seq, unit.position, "result.value (FIC)",
                                    "attached report file not found beside the source",
                                    canonical_bytes(record_content(unit.record)))
                r = dataclasses.replace(r, attachments=(
                    Attachment(name, media_type(name), read(index)),))
            results.append(r)
        orders.append(dataclasses.replace(order, results=tuple(results)))
    return dataclasses.replace(unit, record=PatientRecord(unit.record.patient, tuple(orders)))




__all__ = ["FIRST_INDEX", "MAX_BYTES", "attach", "locate", "media_type", "referenced"]
