"""The HTTP contract: one pydantic model for every request and response body the relay serves.

Why this module exists: ``/openapi.json`` (``chalicelib.api.openapi``) is generated from these
models, and the routes that parse with pydantic parse with these very models, so the published
document cannot drift from the code. Where a handler reads a form or a query by hand (the OAuth
endpoints keep RFC 6749's own error codes for each field), the model documents the same fields,
and tests compare them with the domain's lists of accepted parameters.

What it must never do: import chalice (``tests/unit/test_layering.py``), or describe a response
more loosely than it is sent: response models forbid unknown members, so a leaked field (a private
key member in the JWKS, a token in an error) fails the contract tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.oauth.parameters import MAX_ASSERTION_LENGTH, MAX_PARAMETER_LENGTH
from chalicelib.domain.partner_audit import MAX_CURSOR_LENGTH, MAX_LIMIT
from chalicelib.domain.partner_audit import MAX_PARAMETER_LENGTH as MAX_AUDIT_PARAMETER_LENGTH

# RFC 6749 appendix A.7: error = 1*NQSCHAR, error_description = 1*NQSCHAR.
NQSCHAR = r"^[\x20-\x21\x23-\x5B\x5D-\x7E]+$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
BASE64URL = r"^[A-Za-z0-9_-]+$"
JWS_COMPACT = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$"  # RFC 7515 section 7.1
JWE_COMPACT = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"  # RFC 7516
MAX_NOTICE_BYTES = 8 * 1024

# Optional members are left out when absent, never sent as null: the schema says "string", not
# "string or null" (``SkipJsonSchema`` keeps ``None`` out of the document).
Lang = Literal["ja", "en"]


class _Received(BaseModel):
    """What a partner or a browser sends: unknown members are refused (the handlers refuse them too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Sent(BaseModel):
    """What we answer: every member documented, nothing else (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- errors ---------------------------------------------------------------------------------------


class Problem(_Sent):
    """RFC 9457 problem details (``application/problem+json``), with our extension members."""

    type: str = Field(
        pattern=r"^urn:myna-relay:problem:[a-z0-9_-]+$", description="A stable problem type URN."
    )
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    check: str | SkipJsonSchema[None] = Field(
        default=None, description="The name of the failed check (`client_assertion.aud`, `delivery_id`, ...)."
    )
    errors: list[str] | SkipJsonSchema[None] = None
    interaction_id: str | SkipJsonSchema[None] = Field(default=None, pattern=UUID_PATTERN)


class OAuthErrorBody(_Sent):
    """RFC 6749 section 5.2 error JSON (also RFC 6750 section 3 and RFC 9449 section 7.1 bodies)."""

    error: str = Field(pattern=NQSCHAR, examples=["invalid_request", "invalid_client", "invalid_dpop_proof"])
    error_description: str


# -- health and discovery -------------------------------------------------------------------------


class Health(_Sent):
    status: Literal["ok"]
    service: Literal["myna-relay"]
    stage: str


class PublicJwk(_Sent):
    """A public EC key (RFC 7517/7518): never a private member."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str = Field(pattern=BASE64URL)
    y: str = Field(pattern=BASE64URL)
    kid: str
    use: Literal["sig"]
    alg: Literal["ES256"]


class Jwks(_Sent):
    """RFC 7517 section 5 (``application/jwk-set+json``): the current key first."""

    keys: list[PublicJwk] = Field(min_length=1)


class AuthorizationServerMetadata(_Sent):
    """RFC 8414 section 2, with RFC 9126, RFC 9207 and RFC 9449 members."""

    issuer: str
    pushed_authorization_request_endpoint: str
    require_pushed_authorization_requests: Literal[True]
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    jwks_uri: str
    response_types_supported: list[Literal["code"]]
    response_modes_supported: list[Literal["query"]]
    grant_types_supported: list[Literal["authorization_code"]]
    scopes_supported: list[DatasetId]
    token_endpoint_auth_methods_supported: list[Literal["private_key_jwt"]]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[Literal["private_key_jwt"]]
    revocation_endpoint_auth_signing_alg_values_supported: list[str]
    code_challenge_methods_supported: list[Literal["S256"]]
    dpop_signing_alg_values_supported: list[str]
    authorization_response_iss_parameter_supported: Literal[True]
    request_parameter_supported: Literal[False]
    request_uri_parameter_supported: Literal[False]
    ui_locales_supported: list[Lang]


# -- OAuth endpoints (application/x-www-form-urlencoded; read by chalicelib.api.forms) ------------

_Parameter = Field(min_length=1, max_length=MAX_PARAMETER_LENGTH)


class _OAuthParameters(BaseModel):
    """What a partner sends to an OAuth endpoint (or the resident's browser to ``/authorize``):
    parameters not listed are ignored, not refused (RFC 6749 section 3.1); none may repeat."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ClientAuthentication(_OAuthParameters):
    """``private_key_jwt`` (RFC 7523 section 2.2): the client authenticates in the form body."""

    client_id: str | SkipJsonSchema[None] = Field(
        default=None,
        min_length=1,
        max_length=MAX_PARAMETER_LENGTH,
        description="Defaults to the assertion's iss.",
    )
    # CLIENT_ASSERTION_TYPE of chalicelib.domain.oauth.client_assertion (a test keeps them equal)
    client_assertion_type: Literal["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    client_assertion: str = Field(
        min_length=1, max_length=MAX_ASSERTION_LENGTH, description="A JWT signed with a registered key."
    )


class PushedAuthorizationRequest(ClientAuthentication):
    """RFC 9126 section 2.1; FAPI 2.0: PKCE S256, exact redirect URI, one purpose of the client."""

    response_type: Literal["code"]
    response_mode: Literal["query"] | SkipJsonSchema[None] = Field(
        default=None, description="Only `query` (the default); any other mode is refused."
    )
    ui_locales: str | SkipJsonSchema[None] = Field(
        default=None,
        max_length=MAX_PARAMETER_LENGTH,
        description="Space-separated BCP 47 tags; the first one supported (`ja`, `en`) is the "
        "language of the consent page.",
    )
    redirect_uri: str = _Parameter
    state: str = Field(pattern=r"^[\x20-\x7e]{1,512}$")
    code_challenge: str = Field(pattern=r"^[A-Za-z0-9_-]{43}$")
    code_challenge_method: Literal["S256"]
    scope: DatasetId
    purpose: str = _Parameter
    dpop_jkt: str | SkipJsonSchema[None] = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{43}$",
        description="RFC 9449 section 10: the RFC 7638 SHA-256 thumbprint of the DPoP key the code is bound "
        "to. A DPoP header on this request binds the code the same way; when both are sent they must name "
        "the same key. /token then refuses a proof by any other key (invalid_dpop_proof).",
    )


class PushedAuthorizationResponse(_Sent):
    """RFC 9126 section 2.2 (201 Created)."""

    request_uri: str = Field(pattern=r"^urn:ietf:params:oauth:request_uri:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
    expires_in: int = Field(gt=0, lt=600)


class TokenRequest(ClientAuthentication):
    """RFC 6749 section 4.1.3 with RFC 7636 section 4.5; the DPoP proof is the ``DPoP`` header."""

    grant_type: Literal["authorization_code"]
    code: str = _Parameter
    redirect_uri: str = _Parameter
    code_verifier: str = Field(pattern=r"^[A-Za-z0-9._~-]{43,128}$")


class TokenResponse(_Sent):
    """RFC 6749 section 5.1 with RFC 9449 section 5: a DPoP-bound token for one delivery."""

    access_token: str
    token_type: Literal["DPoP"]
    expires_in: int = Field(gt=0)
    scope: DatasetId
    delivery_id: str


class RevocationRequest(ClientAuthentication):
    """RFC 7009 section 2.1."""

    token: str = _Parameter
    token_type_hint: Literal["access_token"] | SkipJsonSchema[None] = None


# -- the resident's browser -----------------------------------------------------------------------


class AuthorizeQuery(_OAuthParameters):
    """``GET /authorize``: the partner sends the resident here with what PAR returned."""

    client_id: str = _Parameter
    request_uri: str = _Parameter
    lang: Lang | SkipJsonSchema[None] = None


class DecisionForm(_Received):
    """The interstitial's form: continue to Mynaportal or cancel; CSRF-protected."""

    action: Literal["continue", "cancel"]
    request_uri: str = _Parameter
    csrf_token: str = _Parameter
    lang: Lang | SkipJsonSchema[None] = None


class PortalCallbackQuery(_Received):
    """IF001-02: Mynaportal's redirect back (a code, or an error), with the state we sent."""

    state: str = Field(min_length=1, max_length=200)
    code: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=MAX_PARAMETER_LENGTH)
    error: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=100)
    error_description: str | SkipJsonSchema[None] = Field(default=None, max_length=MAX_PARAMETER_LENGTH)


# -- Mynaportal's completion notice (IF001-05) ----------------------------------------------------


class NoticeHeader(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    telegramId: str = Field(max_length=64)  # the portal's own names
    telegramType: str = Field(max_length=32)
    mode: str = Field(max_length=8)
    processId: str = Field(max_length=64)
    errorCode: str = Field(default="", max_length=16)


class Notice(BaseModel):
    """The body ``POST /portal/notice`` parses (at most 8 KiB). A hint only: never trusted."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    commonHeader: NoticeHeader


class NoticeAnswerHeader(_Sent):
    telegramId: str
    telegramType: str
    mode: str
    processId: str
    errorCode: Literal[""]


class NoticeAnswer(_Sent):
    """The echo the portal expects, the same for a known and an unknown processId."""

    commonHeader: NoticeAnswerHeader


# -- the partner's pickup and reconciliation ------------------------------------------------------


class SelfInfoQuery(_Received):
    delivery_id: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, max_length=64, description="Must match the token's delivery when sent."
    )


class PickupPending(_Sent):
    """202 while the data is being retrieved from Mynaportal; ``Retry-After`` says when to ask again."""

    status: Literal["pending"]


class AuditQuery(_Received):
    """``GET /v1/audit``: one UTC month of the partner's own records, a page at a time."""

    month: str | SkipJsonSchema[None] = Field(
        default=None,
        pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
        description="YYYY-MM; the current UTC month when absent.",
    )
    after: str | SkipJsonSchema[None] = Field(
        default=None, max_length=min(MAX_CURSOR_LENGTH, MAX_AUDIT_PARAMETER_LENGTH), pattern=BASE64URL
    )
    limit: int | SkipJsonSchema[None] = Field(default=None, ge=1, le=MAX_LIMIT)


class AuditPage(_Sent):
    records: list[AuditRecord]
    next: str | None = Field(description="The cursor of the following page (`after`); null on the last page.")


class SignedTreeHead(_Sent):
    """A checkpoint of the audit log: every member is also in the signed head (a JWS by our key,
    ``typ`` ``myna-relay-checkpoint+jwt``), which is what a partner should keep."""

    seq: int = Field(ge=1, description="The checkpoint's sequence number.")
    tree_size: int = Field(ge=1, description="How many records the RFC 9162 Merkle tree holds.")
    root: str = Field(pattern=BASE64URL, description="The tree's root hash (SHA-256, base64url).")
    signed_tree_head: str = Field(pattern=JWS_COMPACT)


class ConsistencyQuery(_Received):
    """``from``: the checkpoint the partner kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", pattern=r"^[1-9][0-9]{0,11}$")


class ConsistencyAnswer(_Sent):
    """RFC 9162 section 2.1.4: the ``first`` tree is a prefix of the ``second``."""

    first: SignedTreeHead
    second: SignedTreeHead
    consistency_path: list[str] = Field(
        description="Node hashes (base64url), as RFC 9162 section 2.1.4.1 orders them."
    )


# -- the resident's receipt -----------------------------------------------------------------------


class ReceiptQuery(_Received):
    """The capability link shown on the interstitial: ``e`` (expiry, Unix seconds) and ``t`` (MAC)."""

    e: str = Field(pattern=r"^[0-9]{1,12}$")
    t: str = Field(min_length=1, max_length=128)
    lang: Lang | SkipJsonSchema[None] = None
    revoked: Literal["1"] | SkipJsonSchema[None] = None


class SignedReceiptQuery(_Received):
    e: str = Field(pattern=r"^[0-9]{1,12}$")
    t: str = Field(min_length=1, max_length=128)
    lang: Lang | SkipJsonSchema[None] = None


class ReceiptRevocationForm(_Received):
    e: str = Field(pattern=r"^[0-9]{1,12}$")
    t: str = Field(min_length=1, max_length=128)
    csrf_token: str = Field(min_length=1, max_length=128)
    lang: Lang | SkipJsonSchema[None] = None
