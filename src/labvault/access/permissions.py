"""Permissions as data, deny by default. The vault checks them; adapters never do.

Permission names follow ``scope:resource:action``. `POLICY` maps each role to what it may do;
a role absent from the policy, or a permission absent from its set, is refused. A service
token holds explicit scopes, which can only narrow what `SERVICE_GRANTABLE` allows. The patient
role reaches its own record only (`require` checks the record against the principal).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from labvault.access.principal import Principal, Role
from labvault.errors import AccessDenied, StepUpRequired


class Permission(StrEnum):
    PATIENT_CREATE = "vault:patient:create"
    RESULT_WRITE = "vault:result:write"  # enter an order and its results for a patient
    RESULT_VALIDATE = "vault:result:validate"  # biological validation: results become final
    PATIENT_SEARCH = "vault:patient:search"
    PATIENT_READ = "vault:patient:read"  # identity and administrative data
    RESULT_READ = "vault:result:read"  # orders, results, comments, attached reports
    PATIENT_EXPORT = "vault:patient:export"  # bulk: step-up required
    PATIENT_ERASE = "vault:patient:erase"
    KEYS_ROTATE = "vault:keys:rotate"
    LEAK_CHECK = "vault:leakcheck:run"
    MIGRATION_RUN = "vault:migration:run"  # stage sources and import them
    MIGRATION_VERIFY = "vault:migration:verify"  # decrypts imported records to reconcile them
    MIGRATION_READ = "vault:migration:read"  # status, reports, certificates: no personal data
    MIGRATION_ERASE = "vault:migration:erase"  # destroy a staging area and its key
    QUARANTINE_READ = "vault:quarantine:read"  # the quarantined units' bytes (personal data)
    ACCOUNT_MANAGE = "access:account:manage"  # create, disable, re-enrol accounts
    # Bring into force an account, a re-enrolment or a service token that another person asked
    # for (four eyes): the approver receives the enrolment token or the API token to hand over.
    ACCOUNT_APPROVE = "access:account:approve"
    TOKEN_MANAGE = "access:token:manage"  # noqa: S105 - a permission name, issue/revoke tokens
    AUDIT_READ = "audit:log:read"  # events, who-read reports, exports: ids, never values
    # A patient's own who-read list (GDPR art. 15): when, which role, what, why; not who.
    AUDIT_READ_OWN = "audit:own:read"
    AUDIT_VERIFY = "audit:log:verify"
    AUDIT_HEALTH = "audit:health:read"  # space left, second sink state: nothing personal
    ALERT_READ = "watch:alert:read"  # alerts and the review queue: ids and counts, no values
    ALERT_ACK = "watch:alert:ack"
    # Unlock an account locked by the automatic response: an admin and the DPO must both ask.
    ACCOUNT_UNLOCK = "access:account:unlock"
    HONEYTOKEN_MANAGE = "watch:honeytoken:manage"  # seed decoy patients, list their contacts
    # Record an incident and compute its scope from the audit log: internal ids, categories.
    BREACH_MANAGE = "breach:incident:manage"
    # Apply the retention policy: crypto-shred what is past its term, issue the signed erasure
    # certificate (internal ids only); list and read those certificates.
    RETENTION_RUN = "vault:retention:run"


P = Permission

POLICY: dict[Role, frozenset[Permission]] = {
    Role.LOCAL_OPERATOR: frozenset(Permission),
    Role.SECRETARY: frozenset({P.PATIENT_CREATE, P.PATIENT_SEARCH, P.PATIENT_READ}),
    Role.TECHNICIAN: frozenset({P.PATIENT_SEARCH, P.PATIENT_READ, P.RESULT_READ,
                                P.RESULT_WRITE}),
    Role.BIOLOGIST: frozenset({P.PATIENT_SEARCH, P.PATIENT_READ, P.RESULT_READ,
                               P.RESULT_WRITE, P.RESULT_VALIDATE, P.PATIENT_EXPORT}),
    Role.DPO: frozenset({P.PATIENT_ERASE, P.LEAK_CHECK, P.MIGRATION_READ, P.MIGRATION_ERASE,
                         P.AUDIT_READ, P.AUDIT_VERIFY, P.AUDIT_HEALTH, P.ACCOUNT_APPROVE,
                         P.ALERT_READ, P.ALERT_ACK, P.ACCOUNT_UNLOCK, P.BREACH_MANAGE,
                         P.RETENTION_RUN}),
    Role.ADMIN: frozenset({P.KEYS_ROTATE, P.ACCOUNT_MANAGE, P.ACCOUNT_APPROVE, P.TOKEN_MANAGE,
                           P.MIGRATION_READ, P.AUDIT_HEALTH, P.ALERT_READ, P.ACCOUNT_UNLOCK}),
    Role.PATIENT: frozenset({P.PATIENT_READ, P.RESULT_READ, P.AUDIT_READ_OWN}),
    Role.SERVICE: frozenset(),  # only what its token's scopes grant, within SERVICE_GRANTABLE
}

# What a service token may be given: feeding and reading records one by one, never in bulk.
SERVICE_GRANTABLE = frozenset({P.PATIENT_CREATE, P.PATIENT_SEARCH, P.PATIENT_READ,
                               P.RESULT_READ, P.RESULT_WRITE})

# Operations over more than BULK_LIMIT patients, and every export, need a second factor
# proven within STEP_UP_WINDOW. The local operator holds the key file and is exempt.
BULK_LIMIT = 20
STEP_UP_WINDOW = timedelta(minutes=5)


def allowed(principal: Principal, permission: Permission) -> bool:
    if principal.role is Role.SERVICE:
        return permission in SERVICE_GRANTABLE and permission in (principal.scopes or ())
    granted = permission in POLICY.get(principal.role, frozenset())
    if principal.scopes is not None:
        granted = granted and permission in principal.scopes
    return granted


def reaches(principal: Principal, patient_ids: Iterable[uuid.UUID]) -> bool:
    """The patient role reaches its own record and nothing else."""
    if principal.role is not Role.PATIENT:
        return True
    return principal.patient_id is not None and all(p == principal.patient_id
                                                    for p in patient_ids)


def require(principal: Principal, permission: Permission,
            patient_ids: Iterable[uuid.UUID] = ()) -> None:
    """Raise `AccessDenied` unless the principal's role grants the permission on the records."""
    if not allowed(principal, permission) or not reaches(principal, list(patient_ids)):
        raise AccessDenied(principal.actor_id, principal.role, permission)


def needs_step_up(principal: Principal, permission: Permission, count: int) -> bool:
    return principal.role is not Role.LOCAL_OPERATOR and (
        permission is Permission.PATIENT_EXPORT or count > BULK_LIMIT)


def require_fresh_mfa(principal: Principal, permission: Permission, count: int,
                      now: datetime) -> None:
    """Raise `StepUpRequired` for a bulk operation without a recent second factor."""
    if not needs_step_up(principal, permission, count):
        return
    if principal.mfa_at is None or now - principal.mfa_at > STEP_UP_WINDOW:
        raise StepUpRequired(permission)
