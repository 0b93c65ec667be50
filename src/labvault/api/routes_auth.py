"""Login with password then a second factor, step-up, logout, and enrolment.

Every failure answers 401 with the same body, whatever the cause (unknown account, wrong
password, locked, bad code), and ``Retry-After`` when the caller is throttled.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from labvault.api.deps import Bearer, CurrentPrincipal, source_of, token_of, vault_of
from labvault.api.models import (
    ChallengeOut,
    CodeIn,
    EnrolConfirmIn,
    EnrolIn,
    EnrolOut,
    LoginIn,
    MfaIn,
    RecoveryCodesOut,
    SessionOut,
)
from labvault.secret import Secret

router = APIRouter(prefix="/auth", tags=["authentication"])


@router.post("/login", response_model=ChallengeOut)
def login(body: LoginIn, request: Request) -> ChallengeOut:
    """First factor: returns a short-lived challenge for the second."""
    challenge = vault_of(request).accounts.login(body.email, Secret(body.password),
                                                 source_of(request))
    return ChallengeOut(challenge=challenge.reveal())


@router.post("/mfa", response_model=SessionOut)
def mfa(body: MfaIn, request: Request) -> SessionOut:
    """Second factor (a TOTP code or a one-time recovery code): opens a session."""
    grant = vault_of(request).accounts.complete_login(
        Secret(body.challenge), code=body.code,
        recovery_code=Secret(body.recovery_code) if body.recovery_code else None,
        role=body.role, source=source_of(request))
    return SessionOut(token=grant.token.reveal(), role=str(grant.role),
                      expires_at=grant.expires_at, idle_expires_at=grant.idle_expires_at)


@router.post("/step-up", status_code=204)
def step_up(body: CodeIn, request: Request, principal: CurrentPrincipal,
            credentials: Bearer) -> Response:
    """A fresh second factor, which bulk operations (exports) require."""
    vault_of(request).accounts.step_up(token_of(credentials), body.code,
                                       source=source_of(request))
    return Response(status_code=204)


@router.post("/logout", status_code=204)
def logout(request: Request, principal: CurrentPrincipal, credentials: Bearer) -> Response:
    vault_of(request).accounts.logout(token_of(credentials))
    return Response(status_code=204)


@router.post("/enrol", response_model=EnrolOut)
def enrol(body: EnrolIn, request: Request) -> EnrolOut:
    """With the one-time enrolment token an administrator gave: set the password, get the
    authenticator secret (the otpauth URI is what a QR code encodes)."""
    start = vault_of(request).accounts.begin_enrolment(Secret(body.enrolment_token),
                                                       Secret(body.password))
    return EnrolOut(otpauth_uri=start.otpauth_uri.reveal(), secret=start.secret.reveal())


@router.post("/enrol/confirm", response_model=RecoveryCodesOut)
def enrol_confirm(body: EnrolConfirmIn, request: Request) -> RecoveryCodesOut:
    """The first code from the authenticator activates the account; the recovery codes are
    shown this once."""
    codes = vault_of(request).accounts.confirm_enrolment(Secret(body.enrolment_token), body.code)
    return RecoveryCodesOut(recovery_codes=[c.reveal() for c in codes])
