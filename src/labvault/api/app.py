"""The HTTP API: `create_app(vault, config)`.

Nothing answers without a bearer token except ``/health`` (which says only that the process
runs), login, MFA and enrolment. The OpenAPI document and the interactive docs exist only when
the configuration enables them. Every error is JSON without personal data: validation errors
name the field and the kind of error, never the value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from labvault.api import (
    routes_admin,
    routes_alerts,
    routes_audit,
    routes_auth,
    routes_exposure,
    routes_notices,
    routes_patients,
    routes_records,
)
from labvault.api.deps import CurrentPrincipal, vault_of
from labvault.api.middleware import BodyLimit, SecurityHeaders
from labvault.audit.chain import TamperDetected
from labvault.errors import (
    AccessDenied,
    AuditUnavailable,
    AuthenticationFailed,
    InvalidRecord,
    KeyUnavailable,
    LabvaultError,
    NotFound,
    StepUpRequired,
)
from labvault.vault import Vault

log = logging.getLogger("labvault.api")


@dataclass(frozen=True, slots=True)
class ApiConfig:
    docs: bool = False  # OpenAPI document and interactive docs
    max_body_bytes: int = 64 * 1024
    cors_origins: tuple[str, ...] = ()  # none: no cross-origin access at all
    tls: bool = False  # adds Strict-Transport-Security
    extra: dict[str, str] = field(default_factory=dict)


def _error(status: int, error: str, **more: object) -> JSONResponse:
    return JSONResponse({"error": error, **more}, status_code=status)


def create_app(vault: Vault, config: ApiConfig | None = None) -> FastAPI:
    config = config or ApiConfig()
    app = FastAPI(
        title="labvault", version="1", description="A laboratory's patients and results, "
        "encrypted, read only by named and authorised people, every access audited.",
        openapi_url="/openapi.json" if config.docs else None,
        docs_url="/docs" if config.docs else None, redoc_url=None,
        swagger_ui_oauth2_redirect_url=None)
    app.state.vault = vault
    for router in (routes_auth.router, routes_patients.router, routes_admin.router,
                   routes_audit.router, routes_records.router, routes_exposure.router,
                   routes_notices.router):
        app.include_router(router)
    app.include_router(routes_alerts.router)
    _install_error_handlers(app)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Says the process answers; nothing else."""
        return {"status": "ok"}

    @app.get("/health/audit", tags=["health"])
    def audit_health(request: Request, principal: CurrentPrincipal) -> dict[str, object]:
        """The audit store's state (space left, second sink): for administrators and the DPO."""
        return vault_of(request).audit_log.health(principal)

    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["authorization", "content-type", "x-purpose"],
                           allow_credentials=False, max_age=600)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(SecurityHeaders, tls=config.tls,
                       docs_paths=frozenset({"/docs"}) if config.docs else frozenset())
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthenticationFailed)
    def _auth(request: Request, exc: AuthenticationFailed) -> JSONResponse:
        response = _error(401, "authentication_failed")
        response.headers["www-authenticate"] = "Bearer"
        if exc.retry_after:
            response.headers["retry-after"] = str(exc.retry_after)
        return response

    for exc_type, (status, name) in PLAIN_ERRORS.items():
        app.add_exception_handler(exc_type, _plain(status, name))

    @app.exception_handler(InvalidRecord)
    def _invalid(request: Request, exc: InvalidRecord) -> JSONResponse:
        return _error(422, "invalid", fields=[{"field": exc.field, "reason": exc.reason}])

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Pydantic's messages may quote the input: only the location and the error type go out.
        fields = [{"field": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("type")}
                  for e in exc.errors()]
        return _error(422, "invalid", fields=fields)

    @app.exception_handler(AuditUnavailable)
    def _audit(request: Request, exc: AuditUnavailable) -> JSONResponse:
        log.error("audit unavailable: request refused (request %s)", _rid(request))
        return _error(503, "audit_unavailable")

    @app.exception_handler(TamperDetected)
    def _tampered(request: Request, exc: TamperDetected) -> JSONResponse:
        return _error(409, "audit_log_tampered", position=exc.position, kind=exc.kind)

    @app.exception_handler(LabvaultError)
    def _other(request: Request, exc: LabvaultError) -> JSONResponse:
        log.error("%s refused request %s", type(exc).__name__, _rid(request))
        return _error(400, "refused")

    @app.exception_handler(ValueError)
    def _value(request: Request, exc: ValueError) -> JSONResponse:
        return _error(422, "invalid")

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {401: "authentication_failed", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed"}
        return _error(exc.status_code, names.get(exc.status_code, "error"))

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The exception's text may hold anything: only its type reaches the log.
        log.error("internal error %s in request %s", type(exc).__name__, _rid(request))
        return _error(500, "internal")


# Refusals whose answer is only their status and name (the most specific class wins).
PLAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    StepUpRequired: (403, "step_up_required"),
    AccessDenied: (403, "forbidden"),
    NotFound: (404, "not_found"),
    KeyUnavailable: (410, "erased"),
}


def _plain(status: int, name: str):
    def handler(request: Request, exc: Exception) -> JSONResponse:
        return _error(status, name)

    return handler


def _rid(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")
