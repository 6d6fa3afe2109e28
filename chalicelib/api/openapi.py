"""``GET /openapi.json``: the relay's OpenAPI 3.1 document, generated from ``chalicelib.api.schemas``.

Why this module exists: partners (banks) run their own conformance tests against us, and our own
contract tests (``tests/fuzz``) fuzz every operation against this document over real HTTP. The
table below names, for every route, the models of its parameters and bodies and every answer it
can give, including the error bodies of ``chalicelib.api.errors``, the pages of
``chalicelib.api.pages`` and the headers ``chalicelib.api.middleware`` puts on every response. A
test compares the table with the routes registered on the app, both ways.

What it must never do: describe an answer the code cannot give, or leave out one it gives (status,
media type, required header): the fuzz suite holds the running service to this document. The
document carries no secret; it is built once per container (the issuer is its only input).
The route itself is ``chalicelib.api.openapi_route``, which imports this module at its first
request: the table and the models behind it are not loaded at cold start.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from chalicelib.api import schemas
from chalicelib.api.errors import PROBLEM_CONTENT_TYPE
from chalicelib.api.middleware import INTERACTION_HEADER, INTERACTION_ID_PATTERN
from chalicelib.api.openapi_route import OPENAPI_PATH as OPENAPI_PATH
from chalicelib.api.wellknown import JWKS_CONTENT_TYPE, OPENID_CONFIGURATION_PATH

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
REF_TEMPLATE = "#/components/schemas/{model}"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
JOSE = "application/jose"  # RFC 7515 / RFC 7516 compact serialisation
HTML = "text/html"
CACHEABLE = "public, max-age=300"

ParameterLocation = Literal["query", "header", "path", "cookie"]
Refs = Mapping[tuple[Any, JsonSchemaMode], Any]  # (model, mode) -> {"$ref": ...}, as pydantic returns them


# -- the table's vocabulary -----------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """One media type of an answer: a model, a raw schema, or a plain string (pages, JOSE)."""

    media_type: str
    model: type[BaseModel] | None = None
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = True
    variant: str = ""  # distinguishes two components/headers entries of one header name

    @property
    def component(self) -> str:
        return "-".join(
            part for part in (self.name, self.variant, "" if self.required else "optional") if part
        )


@dataclass(frozen=True)
class Answer:
    description: str
    bodies: tuple[Body, ...] = ()
    headers: tuple[Header, ...] = ()
    cacheable: bool = False  # Cache-Control "public, max-age=..." instead of "no-store"


@dataclass(frozen=True)
class Parameter:
    name: str
    location: ParameterLocation
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Operation:
    path: str
    method: Literal["GET", "POST"]
    operation_id: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    query: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    json_body: type[BaseModel] | None = None
    parameters: tuple[Parameter, ...] = ()
    security: tuple[Mapping[str, list[str]], ...] = ()


def optional(header: Header) -> Header:
    return dataclasses.replace(header, required=False)


PROBLEM = Body(PROBLEM_CONTENT_TYPE, schemas.Problem)
OAUTH_ERROR = Body(JSON, schemas.OAuthErrorBody)
PAGE = Body(HTML)

RETRY_AFTER = Header(
    "Retry-After", "Seconds to wait before asking again (RFC 9110 section 10.2.3).", {"pattern": "^[0-9]+$"}
)
LOCATION = Header("Location", "Where the browser goes next.")
SET_COOKIE = Header("Set-Cookie", "The form's CSRF cookie (HttpOnly, SameSite=Strict).")
BINDING_COOKIE = Header(
    "Set-Cookie",
    "To the portal: the CSRF cookie expired and relay_portal, which binds the portal's callback to"
    " this browser (HttpOnly, SameSite=Lax, Path=/portal/callback); back from it: relay_portal expired.",
)
WWW_AUTHENTICATE = Header("WWW-Authenticate", "The RFC 6750 section 3 / RFC 9449 section 7.1 challenge.")

# What chalicelib.api.middleware puts on every answer (a view may set its own, to the same effect).
UUID = {"type": "string", "pattern": schemas.UUID_PATTERN}
EVERY_ANSWER: tuple[Header, ...] = (
    Header(INTERACTION_HEADER, "The FAPI interaction id: the one sent, or a new UUID.", UUID),
    Header("X-Content-Type-Options", "Always nosniff.", {"const": "nosniff"}),
    Header("X-Frame-Options", "Always DENY.", {"const": "DENY"}),
    Header("Referrer-Policy", "Always no-referrer.", {"const": "no-referrer"}),
    Header(
        "Content-Security-Policy",
        "No script anywhere; pages allow our own stylesheet.",
        {"pattern": "frame-ancestors 'none'"},
    ),
    Header("Strict-Transport-Security", "HSTS.", {"pattern": "^max-age=[0-9]+"}),
)
NO_STORE = Header(
    "Cache-Control",
    "Anything carrying codes or data is never stored.",
    {"pattern": "^no-store"},
    variant="no-store",
)
PUBLIC = Header(
    "Cache-Control",
    "Public documents may be cached briefly.",
    {"pattern": "^public, max-age=[0-9]+$"},
    variant="public",
)

INTERACTION_PARAMETER = Parameter(
    INTERACTION_HEADER,
    "header",
    "FAPI interaction id to echo (a UUID); anything else is refused with 400.",
    # What the middleware enforces: a UUID in its 8-4-4-4-12 hex form (either case).
    {
        "type": "string",
        "format": "uuid",
        "pattern": INTERACTION_ID_PATTERN,
    },
)
LANGUAGE_PARAMETER = Parameter(
    "Accept-Language", "header", "Pages are Japanese unless the first language is English (or ?lang=en)."
)
CHECKPOINT_PATH = Parameter(
    "checkpoint",
    "path",
    "A checkpoint's sequence number, or latest.",
    {"type": "string", "pattern": "^(latest|[1-9][0-9]{0,11})$"},
    required=True,
)
INTERACTION_ID_PATH = Parameter(
    "interaction_id",
    "path",
    "The flow's interaction id (receipt number).",
    {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    required=True,
)
INVALID_INTERACTION_ID = "The x-fapi-interaction-id header is not a UUID (RFC 9457 problem)."


def problem(description: str, *headers: Header) -> Answer:
    return Answer(description, (PROBLEM,), headers)


def oauth_error(description: str, *headers: Header) -> Answer:
    return Answer(description, (OAUTH_ERROR,), headers)


def page(description: str, *headers: Header) -> Answer:
    return Answer(description, (PAGE,), headers)


def see_other(description: str, *headers: Header) -> Answer:
    return Answer(description, (), (LOCATION, *headers))


# chalicelib.api.errors.problem_responses: anything unexpected, a dependency down, no configuration.
PROBLEM_FAILURES: Mapping[int, Answer] = {
    500: problem("Unexpected failure; logged, nothing revealed."),
    503: problem("A dependency is unavailable or the service is not configured.", optional(RETRY_AFTER)),
}
# chalicelib.api.errors.oauth_responses: RFC 6749 section 5.2 errors (PAR, token, revocation).
OAUTH_FAILURES: Mapping[int, Answer] = {
    400: oauth_error(
        "A missing, malformed, repeated or refused parameter, or more than 30 parameters; "
        "error_description names it. Parameters not documented here are ignored (RFC 6749 section 3.1)."
    ),
    401: oauth_error("Client authentication failed (invalid_client)."),
    413: oauth_error("The form is larger than 16 KiB."),
    415: oauth_error("The body is not application/x-www-form-urlencoded."),
    500: oauth_error("Unexpected failure (server_error); logged, nothing revealed."),
    503: oauth_error("A dependency is unavailable (temporarily_unavailable).", optional(RETRY_AFTER)),
}
# chalicelib.api.consent.page_responses: a step that cannot continue shows a page, never redirects.
PAGE_FAILURES: Mapping[int, Answer] = {
    400: page("The link or form cannot be used: expired, already used, malformed or unknown."),
    500: page("Unexpected failure; logged, nothing revealed."),
    503: page("Mynaportal, DynamoDB or KMS is unavailable."),
}

DPOP_SECURITY: Mapping[str, list[str]] = {"DPoP": [], "DPoPProof": []}
SECURITY_SCHEMES: Mapping[str, Any] = {
    "DPoP": {
        "type": "http",
        "scheme": "DPoP",
        "description": "RFC 9449 section 7.1: `Authorization: DPoP <access token>` from /token, bound to the "
        "key of the proof (cnf.jkt).",
    },
    "DPoPProof": {
        "type": "apiKey",
        "in": "header",
        "name": "DPoP",
        "description": "RFC 9449 section 4: a fresh proof JWT (typ dpop+jwt; ES256, PS256 or EdDSA) with htm, "
        "htu, iat, a single-use jti and, on resource requests, ath.",
    },
    "private_key_jwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "RFC 7523 client assertion (iss = sub = client_id, aud = the issuer as a string and "
        "nothing else (FAPI 2.0 Security Profile 5.3.2.1), "
        "exp at most 2 minutes after iat, single-use jti), signed with a key of the registered JWKS. "
        "At /par, /token and /revoke the same assertion is sent in the form body "
        "(client_assertion_type, client_assertion); at /v1/audit as a bearer token.",
    },
}


# -- the table ------------------------------------------------------------------------------------

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "/health",
        "GET",
        "health",
        "Liveness (no dependency is called).",
        "service",
        {200: Answer("Alive.", (Body(JSON, schemas.Health),)), **PROBLEM_FAILURES},
    ),
    Operation(
        OPENAPI_PATH,
        "GET",
        "openapi",
        "This document.",
        "service",
        {
            200: Answer(
                "The OpenAPI 3.1 document.",
                (
                    Body(
                        JSON,
                        schema={"type": "object", "required": ["openapi", "info", "paths", "components"]},
                    ),
                ),
                cacheable=True,
            ),
            **PROBLEM_FAILURES,
        },
    ),
    Operation(
        "/.well-known/jwks.json",
        "GET",
        "jwks",
        "The public halves of our KMS signing keys (RFC 7517).",
        "discovery",
        {
            200: Answer("The JWKS.", (Body(JWKS_CONTENT_TYPE, schemas.Jwks),), cacheable=True),
            **PROBLEM_FAILURES,
        },
    ),
    Operation(
        OPENID_CONFIGURATION_PATH,
        "GET",
        "openidConfiguration",
        "Not served: the relay is an OAuth 2.0 server; its metadata is /.well-known/oauth-authorization-server.",
        "discovery",
        {404: problem("Always: the detail points to the RFC 8414 metadata."), **PROBLEM_FAILURES},
    ),
    Operation(
        "/.well-known/oauth-authorization-server",
        "GET",
        "authorizationServerMetadata",
        "Authorization server metadata (RFC 8414).",
        "discovery",
        {
            200: Answer("The metadata.", (Body(JSON, schemas.AuthorizationServerMetadata),), cacheable=True),
            **PROBLEM_FAILURES,
        },
    ),
    Operation(
        "/par",
        "POST",
        "pushAuthorizationRequest",
        "Pushed authorization request (RFC 9126), authenticated with private_key_jwt; an optional DPoP "
        "proof binds the code to its key (RFC 9449 section 10.1).",
        "oauth",
        {
            201: Answer("Pushed.", (Body(JSON, schemas.PushedAuthorizationResponse),)),
            **OAUTH_FAILURES,
            400: oauth_error(
                "A refused parameter or DPoP proof; invalid_dpop_proof comes with a challenge.",
                optional(WWW_AUTHENTICATE),
            ),
        },
        form=schemas.PushedAuthorizationRequest,
        security=({}, {"DPoPProof": []}),
    ),
    Operation(
        "/token",
        "POST",
        "token",
        "Authorization code for a DPoP-bound access token (RFC 6749, RFC 7636, RFC 9449).",
        "oauth",
        {
            200: Answer("Issued.", (Body(JSON, schemas.TokenResponse),)),
            **OAUTH_FAILURES,
            400: oauth_error(
                "A refused parameter, grant or DPoP proof; invalid_dpop_proof comes with a challenge.",
                optional(WWW_AUTHENTICATE),
            ),
        },
        form=schemas.TokenRequest,
        security=({"DPoPProof": []},),
    ),
    Operation(
        "/revoke",
        "POST",
        "revoke",
        "Token revocation (RFC 7009); 200 with no body, also for an unknown token.",
        "oauth",
        {200: Answer("Revoked, or there was nothing to revoke."), **OAUTH_FAILURES},
        form=schemas.RevocationRequest,
    ),
    Operation(
        "/authorize",
        "GET",
        "authorize",
        "The consent interstitial for a pushed request (HTML).",
        "resident",
        {200: page("The interstitial.", SET_COOKIE), **PAGE_FAILURES},
        query=schemas.AuthorizeQuery,
        parameters=(LANGUAGE_PARAMETER,),
    ),
    Operation(
        "/authorize/decision",
        "POST",
        "decide",
        "The resident continues to Mynaportal or cancels (CSRF-protected form).",
        "resident",
        {
            303: see_other("To Mynaportal, or back to the partner with access_denied.", BINDING_COOKIE),
            403: page("The CSRF token does not match the cookie."),
            **PAGE_FAILURES,
        },
        form=schemas.DecisionForm,
        parameters=(
            Parameter("relay_csrf", "cookie", "The CSRF cookie set by the interstitial."),
            LANGUAGE_PARAMETER,
        ),
    ),
    Operation(
        "/portal/callback",
        "GET",
        "portalCallback",
        "IF001-02: Mynaportal sends the resident back with a code (or an error) and our state.",
        "mynaportal",
        {
            303: see_other(
                "Back to the partner with code, state and iss (RFC 9207), or an error.", BINDING_COOKIE
            ),
            **PAGE_FAILURES,
        },
        query=schemas.PortalCallbackQuery,
        parameters=(
            Parameter("relay_portal", "cookie", "The binding cookie the decision set in this browser."),
            LANGUAGE_PARAMETER,
        ),
    ),
    Operation(
        "/portal/notice",
        "POST",
        "completionNotice",
        "IF001-05: Mynaportal's completion notice. Unauthenticated, so only a hint; the answer is the same "
        "for a known and an unknown processId.",
        "mynaportal",
        {
            200: Answer("The echo the portal expects.", (Body(JSON, schemas.NoticeAnswer),)),
            400: problem("The body is not a commonHeader telegram."),
            413: problem(f"The body is larger than {schemas.MAX_NOTICE_BYTES} bytes."),
            415: problem("The body is not application/json."),
            **PROBLEM_FAILURES,
        },
        json_body=schemas.Notice,
    ),
    Operation(
        "/v1/self-info",
        "GET",
        "pickUp",
        "The partner picks up the sealed delivery once: 202 while retrieving, then 200, then 410.",
        "delivery",
        {
            200: Answer(
                "The sealed payload: JWE (ECDH-ES+A256KW, A256GCM) around a JWS by our key.",
                (Body(JOSE, schema={"type": "string", "pattern": schemas.JWE_COMPACT}),),
            ),
            202: Answer(
                "Still retrieving from Mynaportal.", (Body(JSON, schemas.PickupPending),), (RETRY_AFTER,)
            ),
            400: Answer(
                "A malformed request: a problem, or an RFC 6750 invalid_request with a challenge.",
                (PROBLEM, OAUTH_ERROR),
                (optional(WWW_AUTHENTICATE),),
            ),
            401: oauth_error("The access token or the DPoP proof is refused.", WWW_AUTHENTICATE),
            403: problem("The token is for another delivery, or the partner is disabled."),
            410: problem("Picked up, expired, revoked or failed; check says which."),
            **PROBLEM_FAILURES,
        },
        query=schemas.SelfInfoQuery,
        security=(DPOP_SECURITY,),
    ),
    Operation(
        "/v1/audit",
        "GET",
        "partnerAudit",
        "The partner's own audit records of one UTC month, a page at a time.",
        "delivery",
        {
            200: Answer("A page of records.", (Body(JSON, schemas.AuditPage),)),
            400: problem("A malformed or unexpected query parameter; check names it."),
            401: oauth_error("The bearer client assertion is refused (invalid_token).", WWW_AUTHENTICATE),
            **PROBLEM_FAILURES,
        },
        query=schemas.AuditQuery,
        security=({"private_key_jwt": []},),
    ),
    Operation(
        "/v1/audit/checkpoints/{checkpoint}",
        "GET",
        "auditCheckpoint",
        "A signed tree head of the audit log (RFC 9162), the latest or by number: keep it to witness the log.",
        "delivery",
        {
            200: Answer("The signed tree head.", (Body(JSON, schemas.SignedTreeHead),)),
            400: problem("A malformed checkpoint number or an unexpected query parameter; check names it."),
            401: oauth_error("The bearer client assertion is refused (invalid_token).", WWW_AUTHENTICATE),
            404: problem("No such checkpoint (or none yet)."),
            **PROBLEM_FAILURES,
        },
        parameters=(CHECKPOINT_PATH,),
        security=({"private_key_jwt": []},),
    ),
    Operation(
        "/v1/audit/checkpoints/{checkpoint}/consistency",
        "GET",
        "auditConsistency",
        "The RFC 9162 consistency proof from a checkpoint the partner kept (from) to this one.",
        "delivery",
        {
            200: Answer("Both signed heads and the proof.", (Body(JSON, schemas.ConsistencyAnswer),)),
            400: problem("from is missing or malformed, or a parameter is unexpected; check names it."),
            401: oauth_error("The bearer client assertion is refused (invalid_token).", WWW_AUTHENTICATE),
            404: problem("No such checkpoint, or from is later than it."),
            **PROBLEM_FAILURES,
        },
        query=schemas.ConsistencyQuery,
        parameters=(CHECKPOINT_PATH,),
        security=({"private_key_jwt": []},),
    ),
    Operation(
        "/receipts/{interaction_id}",
        "GET",
        "receipt",
        "The resident's receipt page, reached through the capability link of the interstitial.",
        "resident",
        {
            200: page("The receipt.", SET_COOKIE),
            404: page("No such receipt (or the link is wrong or expired)."),
            **PAGE_FAILURES,
        },
        query=schemas.ReceiptQuery,
        parameters=(INTERACTION_ID_PATH, LANGUAGE_PARAMETER),
    ),
    Operation(
        "/receipts/{interaction_id}/signed",
        "GET",
        "signedReceipt",
        "The receipt's records as a JWS (ES256, our key) with RFC 6962 inclusion proofs.",
        "resident",
        {
            200: Answer(
                "The signed receipt, as a download.",
                (Body(JOSE, schema={"type": "string", "pattern": schemas.JWS_COMPACT}),),
                (Header("Content-Disposition", "attachment; filename=..."),),
            ),
            404: page("No such receipt (or the link is wrong or expired)."),
            **PAGE_FAILURES,
        },
        query=schemas.SignedReceiptQuery,
        parameters=(INTERACTION_ID_PATH, LANGUAGE_PARAMETER),
    ),
    Operation(
        "/receipts/{interaction_id}/revoke",
        "POST",
        "revokeDelivery",
        "The resident revokes a delivery not yet picked up (CSRF-protected form).",
        "resident",
        {
            303: see_other("Back to the receipt, which says it was revoked."),
            403: page("The CSRF token does not match the cookie."),
            404: page("No such receipt (or the link is wrong or expired)."),
            409: page("Not revocable any more: picked up, expired or ended."),
            **PAGE_FAILURES,
        },
        form=schemas.ReceiptRevocationForm,
        parameters=(
            INTERACTION_ID_PATH,
            Parameter("relay_receipt_csrf", "cookie", "The CSRF cookie set by the receipt page."),
            LANGUAGE_PARAMETER,
        ),
    ),
)


# -- building the document ------------------------------------------------------------------------


class _JsonSchema(GenerateJsonSchema):
    """pydantic's generator, except that an absent optional member has no ``"default": null``: the
    member is left out, never sent as null (``SkipJsonSchema[None]`` in ``schemas``)."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if "default" in schema and schema["default"] is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the table names: requests in validation mode, answers in serialization mode."""
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for operation in OPERATIONS:
        for model in (operation.query, operation.form, operation.json_body):
            if model is not None:
                found[(model, "validation")] = None
        for answer in operation.answers.values():
            for body in answer.bodies:
                if body.model is not None:
                    found[(body.model, "serialization")] = None
    return list(found)


def _parameters_of(
    model: type[BaseModel], location: ParameterLocation, definitions: Mapping[str, Any]
) -> list[Any]:
    schema = definitions[model.__name__]
    required = set(schema.get("required", ()))
    parameters = []
    for name, property_schema in schema["properties"].items():
        described = {
            key: value for key, value in property_schema.items() if key not in ("title", "description")
        }
        parameters.append(
            {
                "name": name,
                "in": location,
                "required": name in required,
                "description": property_schema.get("description", property_schema.get("title", name)),
                "schema": described,
            }
        )
    return parameters


def _parameter(parameter: Parameter) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "in": parameter.location,
        "required": parameter.required,
        "description": parameter.description,
        "schema": dict(parameter.schema),
    }


def _header_component(header: Header) -> dict[str, Any]:
    return {
        "description": header.description,
        "required": header.required,
        "schema": {"type": "string", **header.schema},
    }


def _headers_of(answer: Answer) -> tuple[Header, ...]:
    return (*EVERY_ANSWER, PUBLIC if answer.cacheable else NO_STORE, *answer.headers)


def _response(answer: Answer, refs: Refs) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": answer.description,
        "headers": {
            header.name: {"$ref": f"#/components/headers/{header.component}"}
            for header in _headers_of(answer)
        },
    }
    if answer.bodies:
        response["content"] = {
            body.media_type: {
                "schema": refs[(body.model, "serialization")] if body.model is not None else dict(body.schema)
            }
            for body in answer.bodies
        }
    return response


def _with_invalid_interaction_id(answers: Mapping[int, Answer]) -> dict[int, Answer]:
    """chalicelib.api.middleware answers every route with a 400 problem for a malformed interaction id."""
    merged = dict(answers)
    current = merged.get(400)
    if current is None:
        merged[400] = problem(INVALID_INTERACTION_ID)
    elif PROBLEM not in current.bodies:
        merged[400] = dataclasses.replace(
            current,
            description=f"{current.description} Or: {INVALID_INTERACTION_ID}",
            bodies=(*current.bodies, PROBLEM),
            headers=tuple(optional(header) for header in current.headers),
        )
    return merged


def _operation(
    operation: Operation,
    definitions: Mapping[str, Any],
    refs: Refs,
) -> dict[str, Any]:
    parameters = [_parameter(parameter) for parameter in operation.parameters if parameter.location == "path"]
    if operation.query is not None:
        parameters += _parameters_of(operation.query, "query", definitions)
    parameters += [
        _parameter(parameter) for parameter in operation.parameters if parameter.location != "path"
    ]
    parameters.append(_parameter(INTERACTION_PARAMETER))
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": parameters,
        "security": [dict(requirement) for requirement in operation.security],
        "responses": {
            str(status): _response(answer, refs)
            for status, answer in sorted(_with_invalid_interaction_id(operation.answers).items())
        },
    }
    if operation.form is not None:
        document["requestBody"] = {
            "required": True,
            "content": {FORM: {"schema": refs[(operation.form, "validation")]}},
        }
    if operation.json_body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": refs[(operation.json_body, "validation")]}},
        }
    return document


def build_document(issuer: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a relay whose issuer (public base URL) is ``issuer``."""
    models = _models()
    refs, top = models_json_schema(models, ref_template=REF_TEMPLATE, schema_generator=_JsonSchema)
    definitions: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    headers: dict[str, Any] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(
            operation, definitions, refs
        )
        for answer in _with_invalid_interaction_id(operation.answers).values():
            for header in _headers_of(answer):
                headers[header.component] = _header_component(header)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "myna-relay",
            "version": API_VERSION,
            "summary": "Consent and relay of Mynaportal self-information to partners (FAPI 2.0).",
        },
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(definitions),
            "headers": dict(sorted(headers.items())),
            "securitySchemes": copy.deepcopy(dict(SECURITY_SCHEMES)),
        },
    }


@lru_cache(maxsize=4)
def document_json(issuer: str) -> str:
    """The document as served by ``chalicelib.api.openapi_route``, built once per issuer."""
    return json.dumps(build_document(issuer), ensure_ascii=False)
