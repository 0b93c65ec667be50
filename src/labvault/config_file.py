"""Optional TOML files of settings with documented defaults (``watch.toml``, ``breach.toml``).

A value given in the file replaces the default; an unknown section or key, or a value of the
wrong type, is refused naming it: a typo must not silently leave a setting at its default.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labvault.errors import ConfigurationError


def read_toml(path: Path) -> dict[str, Any] | None:
    """The file's document, or None when there is no file."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML (line {exc.lineno})") from None


def merge(base: dict[str, Any], doc: Mapping[str, Any], file_name: str,
          open_tables: tuple[str, ...] = (), path: str = "") -> dict[str, Any]:
    """`base` with the values of `doc`; tables named in `open_tables` accept new keys."""
    out = copy.deepcopy(base)
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            if path in open_tables:
                out[key] = value
                continue
            raise ConfigurationError(f"{file_name}: unknown setting {where}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"{file_name}: {where} must be a table")
            out[key] = merge(default, value, file_name, open_tables, where)
        elif default is not None and not _same_kind(default, value):
            raise ConfigurationError(f"{file_name}: {where} must be a {type(default).__name__}")
        else:
            out[key] = value
    return out


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


__all__ = ["merge", "read_toml"]
