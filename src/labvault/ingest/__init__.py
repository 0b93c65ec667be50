"""Importers of legacy laboratory exports: one module per format, one unit interface.

========================  ==============================================================
format                    module
========================  ==============================================================
``hprim-sante``           `labvault.ingest.hprim_sante` (HPRIM Santé 2.x, H/P/OBR/OBX/C/A/L)
``hprim-medecin``         `labvault.ingest.hprim_medecin` (HPRIM Médecin / HPRIM Net reports)
``hl7v2``                 `labvault.ingest.hl7v2` (HL7 v2.3–2.5.1 ORU^R01)
``fhir``                  `labvault.ingest.fhir` (FHIR R4 Bundles, NDJSON)
``csv``                   `labvault.ingest.csv_rows` with a mapping file (`csv_mapping`)
========================  ==============================================================

Every reader yields `Parsed` or `Rejected` units (`labvault.ingest.base`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from labvault.errors import ConfigurationError
from labvault.ingest.base import Parsed, Position, Reader, ReadStats, Rejected, Unit, Writer

FORMATS: dict[str, str] = {
    "hl7v2": "labvault.ingest.hl7v2",
    "hprim-sante": "labvault.ingest.hprim_sante",
    "fhir": "labvault.ingest.fhir",
    "hprim-medecin": "labvault.ingest.hprim_medecin",
    "csv": "labvault.ingest.csv_rows",
}


def module(fmt: str) -> ModuleType:
    try:
        return importlib.import_module(FORMATS[fmt])
    except KeyError:
        raise ConfigurationError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}") from None


def detect(head: bytes) -> str | None:
    """The format whose sniffer recognises these first bytes (most specific first)."""
    for fmt in FORMATS:
        if module(fmt).sniff(head[:4096]):
            return fmt
    return None


def reader_for(fmt: str, mapping: Path | None = None) -> Reader:
    if fmt == "csv" and mapping is not None:
        from labvault.ingest.csv_mapping import load_mapping

        return module("csv").reader(load_mapping(mapping))
    return module(fmt).read


def writer_for(fmt: str) -> Writer:
    return module(fmt).write


__all__ = ["FORMATS", "Parsed", "Position", "ReadStats", "Reader", "Rejected", "Unit", "Writer",
           "detect", "module", "reader_for", "writer_for"]
