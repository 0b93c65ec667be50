"""The one door to personal data: `Vault` (patients, results, keys) and its import desk."""

from labvault.vault.core import Erasure, Rotation, Vault, validate_record

__all__ = ["Erasure", "Rotation", "Vault", "validate_record"]
