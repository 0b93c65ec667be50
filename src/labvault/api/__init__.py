"""The HTTP API: thin routes that build a principal and call the vault.

The app is imported on first use, so that commands which never serve (all but
``labvault serve``) do not load the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labvault.api.app import ApiConfig, create_app


def __getattr__(name: str) -> Any:
    if name in ("ApiConfig", "create_app"):
        from labvault.api import app
        return getattr(app, name)
    raise AttributeError(f"module 'labvault.api' has no attribute {name!r}")


__all__ = ["ApiConfig", "create_app"]
