"""labvault: a medical laboratory's patients and results, encrypted, behind one audited door."""

from labvault.access.permissions import Permission
from labvault.access.principal import Principal, Role, local_operator
from labvault.clock import Clock, FixedClock, SystemClock
from labvault.config import Settings
from labvault.errors import (
    AccessDenied,
    AuditUnavailable,
    ConfigurationError,
    InvalidCiphertext,
    InvalidRecord,
    KeyProviderError,
    KeyUnavailable,
    LabvaultError,
    NotFound,
    StoreError,
)
from labvault.secret import Secret
from labvault.vault import Erasure, Rotation, Vault

__all__ = [
    "AccessDenied",
    "AuditUnavailable",
    "Clock",
    "ConfigurationError",
    "Erasure",
    "FixedClock",
    "InvalidCiphertext",
    "InvalidRecord",
    "KeyProviderError",
    "KeyUnavailable",
    "LabvaultError",
    "NotFound",
    "Permission",
    "Principal",
    "Role",
    "Rotation",
    "Secret",
    "Settings",
    "StoreError",
    "SystemClock",
    "Vault",
    "local_operator",
]
