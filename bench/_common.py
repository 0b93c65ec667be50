"""Shared pieces of the benchmark scripts: machine description, vault factories, baseline cipher."""

from __future__ import annotations

import os
import platform
import struct
import tempfile
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from labvault import Settings, Vault
from labvault.crypto.envelope import Sealed
from labvault.secret import Secret


class IdentityCipher:
    """The baseline: the same rows and code path as AES-GCM, with the bytes left as they are."""

    def __init__(self, dek: Secret[bytes], key_version: int) -> None:
        self._header = struct.pack(">BI", 0, key_version)

    def seal(self, table: str, column: str, record_id: uuid.UUID, plaintext: bytes) -> Sealed:
        return Sealed(self._header + plaintext)

    def open(self, table: str, column: str, record_id: uuid.UUID, sealed: Sealed) -> bytes:
        return sealed.blob[len(self._header):]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.node()} — {cpu}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


@contextmanager
def temp_vault(backend: str, cipher_factory=None, postgres_url: str | None = None):
    """A fresh vault in a temporary directory (and fresh PostgreSQL databases if asked)."""
    import psycopg
    from sqlalchemy.engine import make_url

    with tempfile.TemporaryDirectory(prefix="labvault-bench-") as tmp:
        data_dir = Path(tmp) / "vault"
        created: list[str] = []
        if backend == "sqlite":
            settings = Settings.embedded(data_dir)
        else:
            base = make_url(postgres_url or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
            admin = base.set(drivername="postgresql").render_as_string(False)
            name = f"lvbench_{uuid.uuid4().hex[:10]}"
            created = [name, name + "_keys"]
            with psycopg.connect(admin, autocommit=True) as conn:
                for db in created:
                    conn.execute(f'CREATE DATABASE "{db}"')
            url = base.set(drivername="postgresql+psycopg")
            settings = Settings(data_dir, url.set(database=created[0]).render_as_string(False),
                                url.set(database=created[1]).render_as_string(False),
                                data_dir / "master.key")
        kwargs = {"cipher_factory": cipher_factory} if cipher_factory else {}
        vault = Vault.init(settings, **kwargs)
        try:
            yield vault, settings
        finally:
            vault.close()
            if created:
                with psycopg.connect(admin, autocommit=True) as conn:
                    for db in created:
                        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def percentile(sorted_values: list[float], p: float) -> float:
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def set_chain_head(vault, writer, cur, at) -> None:
    """After rows chained by `writer` were inserted in bulk: the log's head and current epoch
    key, as the log itself would have left them."""
    chain = vault._audit.chain
    version, wrapped = vault._keys.wrap(writer.key, b"labvault/audit/epoch-key/v1|"
                                        + str((writer.seq - 1) // 1024).encode())
    cur.execute(chain._sql["head_rekey"], (writer.seq, writer.last_hash, version, wrapped,
                                           chain._ts(at)))
