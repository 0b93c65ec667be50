"""Where a vault lives: its data directory, database URLs and key file.

``labvault init`` writes ``labvault.toml`` in the data directory; every other command reads it.
The file holds no secret: URLs must not carry passwords (use a libpq service file or
``PGPASSFILE`` for PostgreSQL), and the key file's passphrase is asked for or read from
``LABVAULT_PASSPHRASE``.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from labvault.errors import ConfigurationError
from labvault.store.engine import sqlite_url

CONFIG_NAME = "labvault.toml"
DEFAULT_DATA_DIR = Path("labvault-data")


def default_data_dir() -> Path:
    return Path(os.environ.get("LABVAULT_HOME", DEFAULT_DATA_DIR))


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    keystore_url: str
    key_file: Path
    passphrase_protected: bool = False
    # A second copy of every audit event: ``file:PATH`` (JSON lines; a relative path is in the
    # data directory), ``syslog+udp://HOST:PORT`` or ``syslog+tcp://HOST:PORT``. None: no copy.
    audit_copy: str | None = None
    # Free space (MiB) under which the audit warns; None: 1 GiB, or 5 % of a smaller disk.
    audit_low_space_mb: int | None = None

    @classmethod
    def embedded(cls, data_dir: Path, passphrase_protected: bool = False) -> Settings:
        """The embedded default: SQLite files and the key file in the data directory."""
        return cls(data_dir, sqlite_url(data_dir / "labvault.sqlite"),
                   sqlite_url(data_dir / "keys.sqlite"), data_dir / "master.key",
                   passphrase_protected)

    @classmethod
    def load(cls, data_dir: Path) -> Settings:
        path = data_dir / CONFIG_NAME
        try:
            doc = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"no labvault vault in {data_dir}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid TOML (line {exc.lineno})") from None
        try:
            low = doc.get("audit_low_space_mb")
            return cls(data_dir, doc["database_url"], doc["keystore_url"],
                       data_dir / doc.get("key_file", "master.key"),
                       bool(doc.get("passphrase_protected", False)),
                       doc.get("audit_copy") or None, int(low) if low is not None else None)
        except (KeyError, ValueError, TypeError) as exc:
            if not isinstance(exc, KeyError):
                raise ConfigurationError(f"{path}: audit_low_space_mb must be a number") from None
            raise ConfigurationError(f"{path} lacks the setting {exc.args[0]}") from None

    def check(self) -> None:
        """Refuse settings that would defeat the design."""
        data, keys = make_url(self.database_url), make_url(self.keystore_url)
        for url in (data, keys):
            if url.password:
                raise ConfigurationError("database URLs must not carry a password")
        same = (data.get_backend_name() == keys.get_backend_name()
                and (data.host, data.port, data.database) == (keys.host, keys.port, keys.database))
        if same:
            raise ConfigurationError(
                "the key store must be a database of its own: a copy of the data would "
                "otherwise carry every data key, and erasure would not reach backups")

    def save(self) -> None:
        self.check()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.data_dir, 0o700)
        key_file = (self.key_file.relative_to(self.data_dir)
                    if self.key_file.is_relative_to(self.data_dir) else self.key_file)
        text = (
            "# labvault settings. No secret belongs here.\n"
            f'database_url = "{self.database_url}"\n'
            f'keystore_url = "{self.keystore_url}"\n'
            f'key_file = "{key_file}"\n'
            f"passphrase_protected = {'true' if self.passphrase_protected else 'false'}\n"
        )
        if self.audit_copy:
            text += f"audit_copy = {json.dumps(self.audit_copy)}\n"
        if self.audit_low_space_mb is not None:
            text += f"audit_low_space_mb = {int(self.audit_low_space_mb)}\n"
        (self.data_dir / CONFIG_NAME).write_text(text, "utf-8")
