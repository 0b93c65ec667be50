"""Who calls: the bearer token of a session or of a service becomes a `Principal`.

The route never decides what the principal may do: it passes the principal to the vault,
which checks the permission and writes the audit event. Checking a session is one indexed
lookup (no password hashing), so it runs on the event loop.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from labvault.access.principal import Principal, Role
from labvault.errors import AuthenticationFailed
from labvault.secret import Secret
from labvault.vault import Vault

bearer = HTTPBearer(auto_error=False, description="A session token (after login and MFA) "
                    "or a service's API token.")

PURPOSE_PATTERN = r"^[a-z][a-z0-9-]{1,39}$"
DEFAULT_PURPOSE = {
    Role.SECRETARY: "administration", Role.TECHNICIAN: "care", Role.BIOLOGIST: "care",
    Role.DPO: "data-protection", Role.ADMIN: "administration", Role.PATIENT: "patient-access",
    Role.SERVICE: "integration",
}


def vault_of(request: Request) -> Vault:
    return request.app.state.vault


def source_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def request_id_of(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def token_of(credentials: HTTPAuthorizationCredentials | None) -> Secret[str]:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise AuthenticationFailed()
    return Secret(credentials.credentials)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_purpose: Annotated[str | None, Header(pattern=PURPOSE_PATTERN,
                                            description="Why the data is accessed (audited).")
                         ] = None,
) -> Principal:
    token = token_of(credentials)
    vault = vault_of(request)
    principal = vault.accounts.authenticate_bearer(
        token, source=source_of(request), purpose=x_purpose or "unspecified",
        request_id=request_id_of(request))
    if x_purpose is None:
        principal = _with_purpose(principal, DEFAULT_PURPOSE.get(principal.role, "unspecified"))
    return principal


def _with_purpose(p: Principal, purpose: str) -> Principal:
    return dataclasses.replace(p, purpose=purpose)  # every other field kept (step-up due...)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
