"""Who is calling: every vault call carries a `Principal`."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
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
    """The actor (a named person or service), its role, where it calls from and why."""

    actor_id: str
    role: Role
    source: str
    purpose: str

    def __post_init__(self) -> None:
        for name in ("actor_id", "source", "purpose"):
            if not getattr(self, name):
                raise ValueError(f"a principal needs a non-empty {name}")


def local_operator(purpose: str, source: str = "cli") -> Principal:
    """The principal of the command line on the lab's own machine, named after the OS user.

    Until accounts exist it is the only principal; it is recorded in the audit like any other.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(f"local-operator:{user}", Role.LOCAL_OPERATOR, source, purpose)
