"""The HTTP API: thin routes that build a principal and call the vault."""

from labvault.api.app import ApiConfig, create_app

__all__ = ["ApiConfig", "create_app"]
