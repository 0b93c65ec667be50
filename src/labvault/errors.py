"""The exceptions labvault raises. None of their messages carries a personal value.

::

    LabvaultError
    ├── InvalidRecord(field, reason, position)   bad input: names the field and where, never the value
    ├── AccessDenied(principal, permission)      the policy refused the call (deny by default)
    │   └── StepUpRequired(permission)           a bulk operation wants a fresh second factor
    ├── AuthenticationFailed                     wrong credentials, expired session, locked (one message)
    ├── AuditUnavailable                         the audit event could not be written: no data returned
    │   └── ResponseFailed                       a critical alert's automatic response failed: idem
    ├── NotFound(kind, record_id)                no such record, or it was erased
    ├── KeyFailure (base of the key failures)
    │   ├── KeyProviderError                     key file missing, unreadable, wrong mode, wrong passphrase
    │   ├── KeyUnavailable                       the data key was destroyed (erased patient) or never existed
    │   └── InvalidCiphertext                    one opaque error for every failure to open a sealed value
    ├── StoreError                               the database cannot be used (schema too old, URL invalid)
    └── ConfigurationError                       labvault is not initialised, or its settings are inconsistent
        └── MigrationBusy                        a run of that migration holds its lock
"""

from __future__ import annotations


class LabvaultError(Exception):
    """Base of every labvault error. ``hint`` says how to fix it, for the CLI."""

    hint: str = ""


class InvalidRecord(LabvaultError):
    """A value failed validation. The message names the field and position, never the value."""

    def __init__(self, field: str, reason: str, position: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.position = position
        where = f" at {position}" if position else ""
        super().__init__(f"invalid {field}{where}: {reason}")


class AccessDenied(LabvaultError):
    def __init__(self, actor: str, role: str, permission: str) -> None:
        self.actor = actor
        self.role = role
        self.permission = permission
        super().__init__(f"{actor} (role {role}) lacks permission {permission}")


class StepUpRequired(AccessDenied):
    """A bulk operation (export, many patients at once) needs a second factor proven recently."""

    hint = "confirm with a fresh code from your authenticator (step-up), then retry"

    def __init__(self, permission: str) -> None:
        self.actor = ""
        self.role = ""
        self.permission = permission
        LabvaultError.__init__(self, f"{permission} needs a fresh second factor (step-up)")


class AuthenticationFailed(LabvaultError):
    """Login, MFA, session or token refused. One message whatever the cause, so that an unknown
    account, a wrong password and a locked account cannot be told apart. ``retry_after`` (seconds)
    is set when throttled."""

    def __init__(self, message: str = "authentication failed", retry_after: int | None = None,
                 ) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class AuditUnavailable(LabvaultError):
    hint = "the audit store must be writable before any personal data can be read or written"


class ResponseFailed(AuditUnavailable):
    """The watcher could not lock an account a critical alert named: the call that caused it
    returns no data (fail closed); the response is tried again on the next occurrence."""

    hint = "check the database; the alert is stored with response 'failed'"


class NotFound(LabvaultError):
    def __init__(self, kind: str, record_id: object) -> None:
        self.kind = kind
        self.record_id = record_id
        super().__init__(f"no {kind} {record_id}")


class KeyFailure(LabvaultError):
    """Base of the key failures."""


class KeyProviderError(KeyFailure):
    hint = "check the key file path, its mode (0600) and the passphrase"


class KeyUnavailable(KeyFailure):
    """The data key is gone: the record was erased (crypto-shredded) or never had one."""


class InvalidCiphertext(KeyFailure):
    """A sealed value could not be opened. Deliberately says nothing about which check failed."""

    def __init__(self) -> None:
        super().__init__("sealed value could not be opened")


class StoreError(LabvaultError):
    hint = "run `labvault init` or check the database URL"


class ConfigurationError(LabvaultError):
    hint = "run `labvault init` first, or pass --data-dir"


class MigrationBusy(ConfigurationError):
    """A run of the migration holds its lock (another process): retry when it has finished."""

    hint = "wait for the running `labvault migrate run` to finish, or stop it"
