"""Permissions as data, deny by default. The vault checks them; adapters never do.

Permission names follow ``scope:resource:action``. `POLICY` maps each role to what it may do;
a role absent from the policy, or a permission absent from its set, is refused.
"""

from __future__ import annotations

from enum import StrEnum

from labvault.access.principal import Principal, Role
from labvault.errors import AccessDenied


class Permission(StrEnum):
    PATIENT_CREATE = "vault:patient:create"
    PATIENT_SEARCH = "vault:patient:search"
    PATIENT_READ = "vault:patient:read"
    RESULT_READ = "vault:result:read"
    PATIENT_EXPORT = "vault:patient:export"
    PATIENT_ERASE = "vault:patient:erase"
    KEYS_ROTATE = "vault:keys:rotate"
    LEAK_CHECK = "vault:leakcheck:run"
    MIGRATION_RUN = "vault:migration:run"  # stage sources and import them
    MIGRATION_VERIFY = "vault:migration:verify"  # decrypts imported records to reconcile them
    MIGRATION_READ = "vault:migration:read"  # status, reports, certificates: no personal data
    MIGRATION_ERASE = "vault:migration:erase"  # destroy a staging area and its key
    QUARANTINE_READ = "vault:quarantine:read"  # the quarantined units' bytes (personal data)


P = Permission

POLICY: dict[Role, frozenset[Permission]] = {
    Role.LOCAL_OPERATOR: frozenset(Permission),
    Role.SECRETARY: frozenset({P.PATIENT_CREATE, P.PATIENT_SEARCH, P.PATIENT_READ}),
    Role.TECHNICIAN: frozenset({P.PATIENT_SEARCH, P.PATIENT_READ, P.RESULT_READ}),
    Role.BIOLOGIST: frozenset({P.PATIENT_SEARCH, P.PATIENT_READ, P.RESULT_READ}),
    Role.DPO: frozenset({P.PATIENT_ERASE, P.LEAK_CHECK, P.MIGRATION_READ, P.MIGRATION_ERASE}),
    Role.ADMIN: frozenset({P.KEYS_ROTATE}),
    Role.PATIENT: frozenset(),
    Role.SERVICE: frozenset(),
}


def allowed(principal: Principal, permission: Permission) -> bool:
    return permission in POLICY.get(principal.role, frozenset())


def require(principal: Principal, permission: Permission) -> None:
    """Raise `AccessDenied` unless the principal's role grants the permission."""
    if not allowed(principal, permission):
        raise AccessDenied(principal.actor_id, principal.role, permission)
