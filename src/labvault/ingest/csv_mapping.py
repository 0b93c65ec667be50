"""CSV mapping files: how the columns of one legacy CSV export map to labvault's domain fields.

A mapping is a small TOML file (read with the standard library's ``tomllib``), validated when it
is loaded: an unknown key, an unknown domain field, a bad option or a mapping that lacks a
required field raises `labvault.errors.ConfigurationError` naming the mapping key. Example::

    name = "lab-x export"
    encoding = "cp1252"            # utf-8, utf-8-sig, cp1252 or iso-8859-1
    delimiter = ";"
    quote_char = '"'
    header = true                  # false: columns are 1-based positions (column = 3)
    line_ending = "CRLF"           # what the writer emits: CRLF, LF or CR
    timezone = "Europe/Paris"      # local times without an offset are read in this zone
    date_format = ["%d/%m/%Y", "%d/%m/%y"]     # default for date fields, tried in order
    datetime_format = "%d/%m/%Y %H:%M"         # default for datetime fields
    decimal_comma = true           # "12,5" <-> "12.5" in result.value and result.reference_range
    comment_separator = "\\n"      # several comments in one cell

    [fields]
    patient.source_id = "IPP"
    patient.last_name = "NOM"
    patient.first_names = "PRENOM"
    patient.birth_date = { column = "DDN", format = "%d/%m/%Y" }
    patient.sex = { column = "SEXE", values = { "1" = "M", "2" = "F", "H" = "M" } }
    order.lab_finess = { const = "750000001" }
    result.code_system = { const = "LN" }
    result.code = "CODE"
    result.value = { column = "RESULTAT", required = true }

Each key of ``[fields]`` is a dotted domain field (`FIELDS`); its value is a column name (or a
position when ``header = false``), or a table with ``column`` or ``const`` and optionally
``format`` (date and datetime fields), ``values`` (source code -> domain value; a source value
absent from the map is read as a domain value itself, so an unknown code is still rejected) and
``required`` (the cell must not be empty). Several fields may read the same column (the writer
fills it from the first). The ``[fields]`` order is the writer's column order.

Groups: a group (the patient, its INS, address, insurances, the order, its prescriber, a
result) exists in a row when one of its column cells is non-empty, except cells often filled on
every row (address country, INS OID and status, beneficiary rank, result code system and
status) and constants; it then needs its required fields (`REQUIRED`; a missing result label
reads as ""). A mapping that maps any field of a group must map all its required fields.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import cache, cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labvault.domain.normalize import normalize_nir
from labvault.domain.records import (
    AbnormalFlag,
    Comment,
    IdentityStatus,
    InsOid,
    ResultStatus,
    Sex,
)
from labvault.errors import ConfigurationError, InvalidRecord

TEXT, NIR, DATE, DATETIME, INT, DECIMAL, RANGE, COMMENTS = (
    "text", "nir", "date", "datetime", "int", "decimal", "range", "comments")
ENUMS: dict[str, type[StrEnum]] = {
    "patient.sex": Sex, "patient.ins.oid": InsOid, "patient.ins.status": IdentityStatus,
    "result.abnormal_flag": AbnormalFlag, "result.status": ResultStatus,
}
_P, _O, _R = "patient.", "order.", "result."
FIELDS: dict[str, str] = {
    _P + "source_id": TEXT, _P + "last_name": TEXT, _P + "birth_name": TEXT,
    _P + "first_names": TEXT, _P + "birth_date": DATE, _P + "sex": "enum", _P + "birth_place": TEXT,
    _P + "nir": NIR, _P + "ins.matricule": NIR, _P + "ins.oid": "enum", _P + "ins.status": "enum",
    _P + "address.line1": TEXT, _P + "address.line2": TEXT, _P + "address.postal_code": TEXT,
    _P + "address.city": TEXT, _P + "address.country": TEXT, _P + "phone": TEXT, _P + "email": TEXT,
    _P + "mandatory_insurance.scheme": TEXT, _P + "mandatory_insurance.fund": TEXT,
    _P + "mandatory_insurance.centre": TEXT, _P + "mandatory_insurance.beneficiary_rank": INT,
    _P + "complementary_insurance.organisation": TEXT,
    _P + "complementary_insurance.amc_number": TEXT,
    _P + "complementary_insurance.member_id": TEXT,
    _O + "lab_finess": TEXT, _O + "lab_file_number": TEXT, _O + "sampled_at": DATETIME,
    _O + "requested_at": DATETIME, _O + "prescriber.last_name": TEXT,
    _O + "prescriber.first_name": TEXT, _O + "prescriber.rpps": TEXT, _O + "prescriber.adeli": TEXT,
    _O + "comment": COMMENTS,
    _R + "code_system": TEXT, _R + "code": TEXT, _R + "label": TEXT, _R + "value": DECIMAL,
    _R + "unit": TEXT, _R + "reference_range": RANGE, _R + "abnormal_flag": "enum",
    _R + "status": "enum", _R + "observed_at": DATETIME, _R + "comment": COMMENTS,
}
# Required fields of each group, once the group exists in a row.
REQUIRED: dict[str, tuple[str, ...]] = {
    "patient": ("last_name", "first_names", "birth_date", "sex"),
    "patient.ins": ("matricule", "oid"),
    "patient.address": ("line1", "postal_code", "city"),
    "patient.mandatory_insurance": ("scheme", "fund"),
    "patient.complementary_insurance": ("organisation",),
    "order": ("lab_finess",),
    "order.prescriber": ("last_name",),
    "result": ("code_system", "code", "value"),
}
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "iso-8859-1")
LINE_ENDINGS = {"CRLF": "\r\n", "LF": "\n", "CR": "\r"}
FLAT_MAPPING = Path(__file__).with_name("mappings") / "labvault-flat.toml"
_TOP_KEYS = frozenset({"name", "encoding", "delimiter", "quote_char", "header", "line_ending",
                       "timezone", "date_format", "datetime_format", "decimal_comma",
                       "comment_separator", "column_count", "fields"})
_SPEC_KEYS = frozenset({"column", "const", "format", "values", "required"})
_YEARS = (1800, 2200)
_NUMBER = re.compile(r"[<>≤≥]?=?\s*[+-]?\d+(?:[.,]\d+)?")
_RANGE = re.compile(rf"{_NUMBER.pattern}(?:\s*-\s*[+-]?\d+(?:[.,]\d+)?)?")
_SAMPLE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def group_of(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _error(message: str) -> ConfigurationError:
    err = ConfigurationError(message)
    err.hint = "fix the CSV mapping file"
    return err


@dataclass(frozen=True)
class FieldSpec:
    """One domain field: read from a column (name, or 1-based position) or a constant."""

    field: str
    column: str | int | None = None
    const: str | None = None
    formats: tuple[str, ...] = ()
    values: tuple[tuple[str, str], ...] = ()  # (source value, domain value)
    required: bool = False

    @property
    def label(self) -> str:
        """How error messages name the source: the column name, never a cell value."""
        if self.column is None:
            return "constant"
        return f"column {self.column}" if isinstance(self.column, int) else f"column '{self.column}'"


@dataclass(frozen=True)
class CsvMapping:
    """A validated mapping (see the module docstring). Use `dataclasses.replace` for variants."""

    fields: tuple[FieldSpec, ...]
    name: str = "csv"
    encoding: str = "utf-8"
    delimiter: str = ","
    quote_char: str = '"'
    header: bool = True
    line_ending: str = "\r\n"
    timezone: str = "Europe/Paris"
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    datetime_formats: tuple[str, ...] = ("%Y-%m-%dT%H:%M:%S%z",)
    decimal_comma: bool = False
    comment_separator: str = "\n"
    column_count: int | None = None  # header = false: expected cells per row
    source: str = field(default="<mapping>", compare=False)

    def __post_init__(self) -> None:
        where = f"mapping {self.source}"
        if self.encoding.lower() not in ENCODINGS:
            raise _error(f"{where}: encoding must be one of {', '.join(ENCODINGS)}")
        object.__setattr__(self, "encoding", self.encoding.lower())
        object.__setattr__(self, "line_ending", LINE_ENDINGS.get(self.line_ending, self.line_ending))
        for key, value in (("delimiter", self.delimiter), ("quote_char", self.quote_char)):
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise _error(f"{where}: {key} must be one character, not a line break")
        if self.delimiter == self.quote_char:
            raise _error(f"{where}: delimiter and quote_char must differ")
        if self.line_ending not in LINE_ENDINGS.values():
            raise _error(f"{where}: line_ending must be CRLF, LF or CR")
        if not self.comment_separator:
            raise _error(f"{where}: comment_separator must not be empty")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise _error(f"{where}: timezone: unknown time zone") from None
        for key, formats in (("date_format", self.date_formats),
                             ("datetime_format", self.datetime_formats)):
            _check_formats(formats, f"{where}: {key}")
        self._check_fields(where)

    def _check_fields(self, where: str) -> None:
        seen: set[str] = set()
        for spec in self.fields:
            key = f"{where}: fields.{spec.field}"
            if spec.field not in FIELDS:
                raise _error(f"{key}: unknown domain field")
            if spec.field in seen:
                raise _error(f"{key}: field mapped twice")
            seen.add(spec.field)
            if (spec.column is None) == (spec.const is None):
                raise _error(f"{key}: give exactly one of column or const")
            if isinstance(spec.column, int) and (self.header or spec.column < 1):
                raise _error(f"{key}: column positions (1, 2...) need header = false")
            if isinstance(spec.column, str) and (not self.header or not spec.column.strip()):
                raise _error(f"{key}: header = false needs column positions (1, 2...)")
            if spec.formats and FIELDS[spec.field] not in (DATE, DATETIME):
                raise _error(f"{key}: format is only for date and datetime fields")
            _check_formats(spec.formats, f"{key}.format")
            enum = ENUMS.get(spec.field)
            for _source, value in spec.values:
                if enum is not None and value not in enum._value2member_map_:
                    raise _error(f"{key}.values: a value is not a known code of this field")
            if spec.const is not None:
                try:
                    self.converter(spec.field)(spec.const)
                except InvalidRecord:
                    raise _error(f"{key}.const: not a valid value for this field") from None
        for group, names in REQUIRED.items():
            mapped = any(s.field.startswith(group + ".") and group_of(s.field) == group
                         for s in self.fields) or group == "patient"
            if group == "order":
                mapped = any(s.field.startswith(("order.", "result.")) for s in self.fields)
            for name in names if mapped else ():
                if f"{group}.{name}" not in seen:
                    raise _error(f"{where}: fields.{group}.{name}: required field not mapped "
                                 "(map a column or a const)")
        if self.column_count is not None and self.header:
            raise _error(f"{where}: column_count is only for header = false")

    @cached_property
    def specs(self) -> dict[str, FieldSpec]:
        return {s.field: s for s in self.fields}

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def not_carried(self) -> frozenset[str]:
        """Content paths (`labvault.ingest.content` ``omit`` names) this mapping cannot carry."""
        out = set()
        for name in FIELDS:
            if name in self.specs or name == "patient.source_id":
                continue
            parts = name.split(".")
            path = ".".join(parts[:2])
            out.add({"order.comment": "order.comments", "result.comment": "result.comments"}.get(
                path, path))
        return frozenset(out)

    def converter(self, name: str) -> Callable[[str], Any]:
        """Source text (stripped, non-empty) -> domain value; raises InvalidRecord(name, ...)."""
        return _converter(self, self.specs[name])

    def formatter(self, name: str) -> Callable[[Any], str]:
        """Domain value (not None) -> source text, the converter in reverse."""
        spec = self.specs[name]
        kind, enum = FIELDS[name], ENUMS.get(name)
        reverse: dict[str, str] = {}
        for source, value in spec.values:
            reverse.setdefault(value, source)
        fmt = (spec.formats or (self.date_formats if kind == DATE else self.datetime_formats))[0]
        zone, sep, comma = self.zone, self.comment_separator, self.decimal_comma
        if kind == DATE:
            return lambda v: v.strftime(fmt)
        if kind == DATETIME:
            return lambda v: v.astimezone(zone).strftime(fmt)
        if kind == COMMENTS:
            return lambda v: sep.join(c.text for c in v)
        if kind in (DECIMAL, RANGE) and comma:
            pattern = _NUMBER if kind == DECIMAL else _RANGE
            return lambda v: v.replace(".", ",") if pattern.fullmatch(v) else v
        if enum is not None or reverse:
            return lambda v: reverse.get(str(v), str(v))
        return str


def _check_formats(formats: tuple[str, ...], key: str) -> None:
    if not isinstance(formats, tuple) or not all(isinstance(f, str) and "%" in f for f in formats):
        raise _error(f"{key}: expected a strptime pattern or a list of them")
    for fmt in formats:
        try:
            datetime.strptime(_SAMPLE.strftime(fmt), fmt)
        except ValueError:
            raise _error(f"{key}: a pattern cannot read back what it writes") from None


def _converter(mapping: CsvMapping, spec: FieldSpec) -> Callable[[str], Any]:
    name, label = spec.field, spec.label
    kind, enum = FIELDS[name], ENUMS.get(name)
    values = dict(spec.values)
    folded = {k.casefold(): v for k, v in spec.values}

    def bad(reason: str) -> InvalidRecord:
        return InvalidRecord(name, f"{reason} ({label})")

    def mapped(text: str) -> str:
        if not values:
            return text
        return values.get(text) or folded.get(text.casefold(), text)

    if kind in (DATE, DATETIME):
        formats = spec.formats or (mapping.date_formats if kind == DATE else mapping.datetime_formats)
        return _date_converter(name, kind, formats, mapping.zone, bad)
    if enum is not None:
        what = "sex code" if enum is Sex else "code"

        def to_enum(text: str) -> Any:
            text = mapped(text)
            member = enum._value2member_map_.get(text) or enum._value2member_map_.get(text.upper())
            if member is None:
                raise bad(f"unknown {what}")
            return member

        return to_enum
    if kind == NIR:
        return lambda text: normalize_nir(mapped(text))
    if kind == INT:
        def to_int(text: str) -> int:
            if not (text.isascii() and text.isdigit() and len(text) <= 3):
                raise bad("not a small whole number")
            return int(text)

        return to_int
    if kind == COMMENTS:
        sep = mapping.comment_separator

        def to_comments(text: str) -> tuple[Comment, ...]:
            text = text.replace("\r\n", "\n")  # a line break inside a cell, Windows-style
            return tuple(Comment(part.strip()) for part in text.split(sep) if part.strip())

        return to_comments
    if kind in (DECIMAL, RANGE) and mapping.decimal_comma:
        pattern = _NUMBER if kind == DECIMAL else _RANGE

        def to_dot(text: str) -> str:
            text = mapped(text)
            return text.replace(",", ".") if pattern.fullmatch(text) else text

        return to_dot
    return mapped


_FAST: dict[str, tuple[re.Pattern[str], Callable[[str], Any]]] = {
    "%Y-%m-%d": (re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII), date.fromisoformat),
    "%Y-%m-%dT%H:%M:%S%z": (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:?\d{2}", re.ASCII),
                            datetime.fromisoformat),
}


def _date_converter(name: str, kind: str, formats: tuple[str, ...], zone: ZoneInfo,
                    bad: Callable[[str], InvalidRecord]) -> Callable[[str], Any]:
    def convert(text: str) -> date | datetime:
        fast = _FAST.get(formats[0])
        if fast is not None and fast[0].fullmatch(text):  # same result as strptime, faster
            try:
                value = fast[1](text)
            except ValueError:
                value = None  # strptime below says why
            if value is not None:
                if not _YEARS[0] <= value.year <= _YEARS[1]:
                    raise bad("date out of range")
                return value
        for fmt in formats:
            try:
                value = datetime.strptime(text, fmt)
            except ValueError:
                continue
            if kind == DATE:
                day = value.date()
                if "%y" in fmt and name == "patient.birth_date" and day > date.today():
                    try:
                        day = day.replace(year=day.year - 100)  # a two-digit year of last century
                    except ValueError:
                        day = day.replace(year=day.year - 100, day=28)
                result: date | datetime = day
            else:
                result = value if value.tzinfo is not None else value.replace(tzinfo=zone)
            if not _YEARS[0] <= value.year <= _YEARS[1]:
                raise bad("date out of range")
            return result
        raise bad("does not match the date format")

    return convert


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not (_SPEC_KEYS & value.keys()):
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _spec(name: str, value: Any, where: str) -> FieldSpec:
    key = f"{where}: fields.{name}"
    if name not in FIELDS:
        raise _error(f"{key}: unknown domain field")
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return FieldSpec(name, column=value)
    if not isinstance(value, dict):
        raise _error(f"{key}: expected a column, or a table with column or const")
    unknown = value.keys() - _SPEC_KEYS
    if unknown:
        raise _error(f"{key}: unknown option {sorted(unknown)[0]!r}")
    formats = value.get("format", ())
    formats = (formats,) if isinstance(formats, str) else (
        tuple(formats) if isinstance(formats, list) else formats)
    values = value.get("values", {})
    column, const = value.get("column"), value.get("const")
    if (not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values())
            or not isinstance(value.get("required", False), bool)
            or (const is not None and not isinstance(const, str))
            or (column is not None and (not isinstance(column, (str, int)) or isinstance(column, bool)))):
        raise _error(f"{key}: bad option type")
    return FieldSpec(name, column=column, const=const, formats=formats,
                     values=tuple(values.items()), required=value.get("required", False))


def parse_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> CsvMapping:
    """A `CsvMapping` from the decoded TOML document; raises ConfigurationError."""
    where = f"mapping {source}"
    unknown = data.keys() - _TOP_KEYS
    if unknown:
        raise _error(f"{where}: unknown key {sorted(unknown)[0]!r}")
    table = data.get("fields")
    if not isinstance(table, dict) or not table:
        raise _error(f"{where}: fields: a [fields] table is required")
    specs = tuple(_spec(name, value, where) for name, value in _flatten(table))
    options: dict[str, Any] = {}
    for key in ("name", "encoding", "delimiter", "quote_char", "line_ending", "timezone",
                "comment_separator"):
        if key in data:
            if not isinstance(data[key], str):
                raise _error(f"{where}: {key}: expected a string")
            options[key] = data[key]
    for key in ("header", "decimal_comma"):
        if key in data:
            if not isinstance(data[key], bool):
                raise _error(f"{where}: {key}: expected true or false")
            options[key] = data[key]
    for key, attr in (("date_format", "date_formats"), ("datetime_format", "datetime_formats")):
        if key in data:
            value = data[key]
            options[attr] = (value,) if isinstance(value, str) else (
                tuple(value) if isinstance(value, list) else value)
    if "column_count" in data:
        count = data["column_count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _error(f"{where}: column_count: expected a positive whole number")
        options["column_count"] = count
    return CsvMapping(fields=specs, source=source, **options)


def load_mapping(path: str | Path) -> CsvMapping:
    """Load and validate a TOML mapping file; raises ConfigurationError naming the bad key."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError:
        raise _error(f"mapping {path.name}: cannot read the file") from None
    except tomllib.TOMLDecodeError as exc:
        raise _error(f"mapping {path.name}: not valid TOML: {exc}") from None
    return parse_mapping(data, path.name)


@cache
def flat_mapping() -> CsvMapping:
    """The default mapping, ``mappings/labvault-flat.toml``: the layout `csv_rows.write` emits."""
    return load_mapping(FLAT_MAPPING)


__all__ = ["ENCODINGS", "FIELDS", "FLAT_MAPPING", "REQUIRED", "CsvMapping", "FieldSpec",
           "flat_mapping", "load_mapping", "parse_mapping"]
