"""OAuth errors (RFC 6749 section 5.2, RFC 9449 section 7.1, RFC 9126 section 2.3).

Each carries the RFC's ``error`` code and the HTTP status the token/PAR endpoint answers with;
``check`` names the failed check (``client_assertion.aud``, ``dpop.htu``…) and goes into
``error_description``, never a secret or personal data.
"""

from __future__ import annotations

from typing import ClassVar

from chalicelib.domain.errors import ErrorCategory, RelayError


class OAuthError(RelayError):
    """Base: answered as RFC 6749 error JSON ``{"error", "error_description"}``."""

    error: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400
    category: ClassVar[ErrorCategory] = "invalid_input"
    title = "OAuth request refused"

    @property
    def description(self) -> str:
        return f"{self.check}: {self.detail}" if self.check else self.detail


class InvalidRequest(OAuthError):
    """RFC 6749 5.2: missing, repeated, malformed or unsupported parameter."""

    code = error = "invalid_request"


class RequestNotSupported(OAuthError):
    """RFC 9101 section 6.3 (OIDC Core 3.1.2.6): the ``request`` parameter (a request object) is
    not supported."""

    code = error = "request_not_supported"


class InvalidClient(OAuthError):
    """RFC 6749 5.2: client authentication failed (unknown client, bad assertion)."""

    code = error = "invalid_client"
    status = 401
    category = "unauthorized"


class InvalidGrant(OAuthError):
    """RFC 6749 5.2: the code is invalid, expired, used, or was issued to another client or
    redirect URI; or the PKCE verifier does not match."""

    code = error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """RFC 6749 5.2: the client may not use this grant or purpose."""

    code = error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    code = error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    """RFC 6749 5.2: scope or purpose outside what the partner registered."""

    code = error = "invalid_scope"


class InvalidDpopProof(OAuthError):
    """RFC 9449 section 7.1: the DPoP proof is missing, malformed, replayed or does not match."""

    code = error = "invalid_dpop_proof"


class InvalidToken(OAuthError):
    """RFC 6750 section 3.1: the access token is unknown, expired, revoked or bound to another key."""

    code = error = "invalid_token"
    status = 401
    category = "unauthorized"


class AccessDenied(OAuthError):
    """RFC 6749 4.1.2.1: the resident or the portal refused."""

    code = error = "access_denied"
