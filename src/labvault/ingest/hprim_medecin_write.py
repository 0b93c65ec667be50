"""Writer of HPRIM Médecin / HPRIM Net reports (see `labvault.ingest.hprim_medecin`).

One report per `Order` (a patient without orders writes nothing): the 12-line header (line 1,
the patient code, is the last fifteen digits of the patient id as an integer), a plain readable
rendering of the results, then the ****LAB**** section (RES and TEX lines) and ****FIN****;
****FINFICHIER**** ends the file. The abnormal flag A (abnormal qualitative result) and the
status X (cancelled) are written although HPRIM Médecin does not define them.
Text that the reader would misread is written as HTML entities, which the reader decodes:
``|`` as ``&#124;``, line breaks as ``&#10;``/``&#13;``, ``&`` as ``&amp;`` when it would
otherwise start an entity, characters the encoding lacks as ``&#NNN;``, and the first ``*``
of a value that reads as an end marker as ``&#42;``. ``html_entities=True`` writes every
non-ASCII character as an entity (``&eacute;``), as some HPRIM Net senders do.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from datetime import date, datetime
from html.entities import codepoint2name
from typing import BinaryIO

from labvault.domain.records import Order, Patient, PatientRecord, Prescriber, Result, ResultStatus
from labvault.ingest.base import PARIS

__all__ = ["write"]

_MARKERS = ("****FIN****", "****FINFICHIER****", "****LAB****")
_STATUS = {ResultStatus.FINAL: "F", ResultStatus.PRELIMINARY: "R", ResultStatus.CORRECTED: "C",
           ResultStatus.CANCELLED: "X"}
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
_RANGE = re.compile(r"([+-]?\d+(?:[.,]\d+)?)-([+-]?\d+(?:[.,]\d+)?)")
_NAMED = {cp: f"&{name};" for cp, name in codepoint2name.items() if cp > 127}
_ENCODINGS = {"cp1252", "iso-8859-1", "latin-1", "utf-8"}


def _esc(text: str | None, named: bool = False) -> str:
    if not text:
        return ""
    if "&" in text and (named or html.unescape(text) != text):
        text = text.replace("&", "&amp;")
    if "|" in text or "\n" in text or "\r" in text:
        text = text.replace("|", "&#124;").replace("\n", "&#10;").replace("\r", "&#13;")
    if named and not text.isascii():
        text = "".join(c if c.isascii() else _NAMED.get(ord(c), f"&#{ord(c)};") for c in text)
    if "****" in text and text.strip().upper() in _MARKERS:
        text = text.replace("*", "&#42;", 1)
    return text


def _day(d: date | datetime | None) -> str:
    if d is None:
        return ""
    if isinstance(d, datetime):
        d = d.astimezone(PARIS).date()
    return f"{d.day:02d}/{d.month:02d}/{d.year:04d}"


def _recipient(p: Prescriber | None, named: bool) -> str:
    if p is None:
        return ""
    codes = "/".join(c for c in (p.rpps, p.adeli) if c)
    name = f"{p.last_name}, {p.first_name}" if p.first_name else p.last_name
    return f"{codes} {_esc(name, named)}" if codes else _esc(name, named)


def _bounds(reference_range: str | None) -> tuple[str, str]:
    r = reference_range or ""
    if m := _RANGE.fullmatch(r):
        return m.group(1), m.group(2)
    if r[:1] == "<" and _NUMBER.fullmatch(r[1:]):
        return "", r[1:]
    if r[:1] == ">" and _NUMBER.fullmatch(r[1:]):
        return r[1:], ""
    return r, ""


def _header(patient: Patient, order: Order, code: str, nir_with_space: bool, named: bool
            ) -> list[str]:
    a = patient.address
    nir = patient.nir or ""
    if nir_with_space and len(nir) == 15:
        nir = f"{nir[:13]} {nir[13:]}"
    city = f"{a.postal_code} {_esc(a.city, named)}".strip() if a else ""
    return [code, _esc(patient.last_name, named), _esc(patient.first_names, named),
            _esc(a.line1, named) if a else "", _esc(a.line2, named) if a else "", city,
            _day(patient.birth_date), nir, _esc(order.lab_file_number, named),
            _day(order.sampled_at), order.lab_finess, _recipient(order.prescriber, named)]


def _readable(order: Order, named: bool) -> list[str]:
    lines = ["", f"Laboratoire {order.lab_finess}        Dossier {_esc(order.lab_file_number, named)}"
             f"        {_esc('Prélevé', named)} le {_day(order.sampled_at)}", ""]
    lines += [f"Commentaire : {_esc(c.text, named)}" for c in order.comments]
    for r in order.results:
        flag = f" ({r.abnormal_flag.value})" if r.abnormal_flag and r.abnormal_flag.value != "N" else ""
        lines.append(f"{_esc(r.label, named):<45}{_esc(r.value, named):>12} {_esc(r.unit, named):<8}"
                     f" {_esc(r.reference_range, named)}{flag}")
        lines += [f"    {_esc(c.text, named)}" for c in r.comments]
    return [*lines, ""]


def _res(r: Result, named: bool) -> list[str]:
    low, high = _bounds(r.reference_range)
    kind = "N" if _NUMBER.fullmatch(r.value) else "A"
    flag = r.abnormal_flag.value if r.abnormal_flag else ""
    fields = (_esc(r.label, named), _esc(r.code, named), kind, _esc(r.value, named),
              _esc(r.unit, named), _esc(low, named), _esc(high, named), flag, _STATUS[r.status])
    return ["RES|" + "|".join(fields), *(f"TEX|{_esc(c.text, named)}" for c in r.comments)]


def write(records: Iterable[PatientRecord], out: BinaryIO, *, encoding: str = "cp1252",
          line_ending: bytes = b"\r\n", html_entities: bool = False, nir_with_space: bool = True,
          final_marker: bool = True) -> None:
    """Write one report per order of every record; ``final_marker`` ends with ****FINFICHIER****.

    ``encoding``: "cp1252", "iso-8859-1" or "utf-8"; ``line_ending``: CRLF, LF or CR.
    """
    if encoding.lower() not in _ENCODINGS:
        raise ValueError("encoding must be cp1252, iso-8859-1 or utf-8")
    if line_ending not in (b"\r\n", b"\n", b"\r"):
        raise ValueError("line_ending must be CRLF, LF or CR")
    eol = line_ending.decode("ascii")
    for record in records:
        code = _esc(str(record.patient.id.int % 10**15).zfill(15))
        for order in record.orders:
            lines = _header(record.patient, order, code, nir_with_space, html_entities)
            lines += _readable(order, html_entities)
            lines.append("****LAB****")
            lines += [f"TEX|{_esc(c.text, html_entities)}" for c in order.comments]
            for r in order.results:
                lines += _res(r, html_entities)
            lines.append("****FIN****")
            out.write((eol.join(lines) + eol).encode(encoding, "xmlcharrefreplace"))
    if final_marker:
        out.write(f"****FINFICHIER****{eol}".encode("ascii"))
