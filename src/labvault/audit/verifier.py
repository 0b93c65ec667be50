"""What an auditor keeps off the vault's machine: the verifier key file holding k0 (the first
epoch key, from which every event's tag can be checked) and exported copies of the signed
checkpoints (`CheckpointExport`), which stand where the log lost its own. `start_chain` gives a
vault its chain and writes the key file."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from labvault.audit.chain import Checkpoint, TamperDetected
from labvault.errors import ConfigurationError
from labvault.secret import Secret

if TYPE_CHECKING:
    from labvault.audit.log import ChainedAuditLog

CHECKPOINTS_FORMAT = "labvault-audit-checkpoints/1"
VERIFIER_FORMAT = "labvault-audit-verifier/1"
VERIFIER_FILE = "audit-verifier.key"


@dataclass(frozen=True, slots=True)
class CheckpointExport:
    checkpoints: tuple[Checkpoint, ...]
    public_key_pem: str
    key_id: str
    head_seq: int

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self.checkpoints)

    def __len__(self) -> int:
        return len(self.checkpoints)

    def to_json(self) -> dict[str, Any]:
        return {"format": CHECKPOINTS_FORMAT, "key_id": self.key_id,
                "public_key": self.public_key_pem, "head_seq": self.head_seq,
                "checkpoints": [{"first": c.first, "last": c.last,
                                 "last_hash": c.last_hash.hex(), "root": c.root.hex(),
                                 "signature": c.signature.hex()} for c in self.checkpoints]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CheckpointExport:
        if doc.get("format") != CHECKPOINTS_FORMAT:
            raise ValueError("not an exported checkpoint file")
        marks = tuple(Checkpoint(int(c["first"]), int(c["last"]), bytes.fromhex(c["last_hash"]),
                                 bytes.fromhex(c["root"]), bytes.fromhex(c["signature"]))
                      for c in doc["checkpoints"])
        return cls(marks, doc["public_key"], doc["key_id"], int(doc.get("head_seq", 0)))


def load_checkpoints(path: Path) -> CheckpointExport:
    return CheckpointExport.from_json(json.loads(path.read_text("utf-8")))


def check_signature(public: Ed25519PublicKey, c: Checkpoint) -> None:
    try:
        public.verify(c.signature, c.message())
    except InvalidSignature:
        raise TamperDetected(c.first, "checkpoint", "signature does not verify") from None


def write_verifier_key(path: Path, k0: Secret[bytes]) -> None:
    """Write the auditor's k0 (mode 0600). Raises `FileExistsError` if the file exists; the
    file appears complete or not at all."""
    doc = {"format": VERIFIER_FORMAT, "k0": base64.b64encode(k0.reveal()).decode(),
           "note": "labvault audit verifier key: keep it off the vault's machine; "
                   "`labvault audit verify --key FILE` checks every event's tag with it"}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # refuses an existing file
    finally:
        tmp.unlink(missing_ok=True)


def read_verifier_key(path: Path) -> Secret[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        try:
            doc = json.load(f)
            if doc.get("format") != VERIFIER_FORMAT:
                raise ValueError
            key = base64.b64decode(doc["k0"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(f"{path} is not a labvault audit verifier key") from None
    if len(key) != 32:
        raise ConfigurationError(f"{path} is not a labvault audit verifier key")
    return Secret(key)


def start_chain(log: ChainedAuditLog, verifier: Path) -> bool:
    """Give a vault without a chain (new, or older than the chain) its head, and the auditor's
    k0 in `verifier`. True if this call created the chain."""
    if log.head() is not None:
        return False
    try:
        k0 = read_verifier_key(verifier)  # left by an interrupted or concurrent start
    except FileNotFoundError:
        k0 = Secret(os.urandom(32))
        try:
            write_verifier_key(verifier, k0)
        except FileExistsError:
            k0 = read_verifier_key(verifier)
    return log.initialise(k0) is not None


__all__ = ["CHECKPOINTS_FORMAT", "VERIFIER_FILE", "VERIFIER_FORMAT", "CheckpointExport",
           "check_signature", "load_checkpoints", "read_verifier_key", "start_chain",
           "write_verifier_key"]
