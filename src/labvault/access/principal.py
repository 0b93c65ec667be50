"""Who is calling: every vault call carries a `Principal`."""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    LOCAL_OPERATOR = "local_operator"
    SECRETARY = "secretary"
    TECHNICIAN = "technician"
    BIOLOGIST = "biologist"
    DPO = "dpo"
    ADMIN = "admin"
    PATIENT = "patient"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """The actor (a named person or service), its role, where it calls from and why.

    ``scopes`` narrows a service token to the permissions it was given (None: the role's);
    ``patient_id`` is a patient's own record, the only one the patient role may read;
    ``mfa_at`` is the last proof of the second factor, which bulk operations want fresh;
    ``request_id`` ties the audit events of one request together;
    ``step_up_due``: the watcher asked for a fresh second factor before any further call.
    """

    actor_id: str
    role: Role
    source: str
    purpose: str
    request_id: str = ""
    scopes: frozenset[str] | None = None
    patient_id: uuid.UUID | None = None
    mfa_at: datetime | None = None
    step_up_due: bool = False

    def __post_init__(self) -> None:
        for name in ("actor_id", "source", "purpose"):
            if not getattr(self, name):
                raise ValueError(f"a principal needs a non-empty {name}")


def local_operator(purpose: str, source: str = "cli") -> Principal:
    """The principal of the command line on the lab's own machine, named after the OS user.

    It holds the key file, so it is trusted with every permission; it is recorded in the audit
    like any other principal.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(f"local-operator:{user}", Role.LOCAL_OPERATOR, source, purpose,
                     request_id=uuid.uuid4().hex)
