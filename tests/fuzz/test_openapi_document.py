"""``/openapi.json``: a valid OpenAPI 3.1 document that names every route of the app (and nothing
else), built from the models the routes and the domain really use, served as it is built."""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel

from app import app
from chalicelib.api import delivery, middleware, schemas
from chalicelib.api.middleware import INTERACTION_HEADER
from chalicelib.api.openapi import OPENAPI_PATH, OPERATIONS, build_document
from chalicelib.domain.authorization import PAR_PARAMETERS, REVOKE_PARAMETERS, TOKEN_PARAMETERS
from chalicelib.domain.oauth.client_assertion import CLIENT_ASSERTION_TYPE
from chalicelib.domain.partner_audit import QUERY_PARAMETERS

ISSUER = "https://myna-relay.test"  # the test stage's RELAY_ISSUER (.chalice/config.json)
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(ISSUER)


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method.upper()): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []
    assert document["openapi"] == "3.1.0"


def test_every_route_of_the_app_is_documented_and_every_documented_operation_is_a_route(
    document: dict[str, Any],
) -> None:
    # GIVEN the routes registered on the Chalice app, with every method of each
    routes = {(path, method) for path, entries in app.routes.items() for method in entries}
    # THEN the document names exactly those operations, both ways
    assert set(operations(document)) == routes
    assert len(OPERATIONS) == len(routes)


def test_the_served_document_is_the_built_one_with_the_issuer_as_its_server(client: Any) -> None:
    response = client.http.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert "x-fapi-interaction-id" in response.headers
    served = json.loads(response.body)
    assert served == build_document(ISSUER)
    assert served["servers"] == [{"url": ISSUER}]


def fields_of(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize(
    ("model", "accepted"),
    [
        (schemas.PushedAuthorizationRequest, PAR_PARAMETERS),
        (schemas.TokenRequest, TOKEN_PARAMETERS),
        (schemas.RevocationRequest, REVOKE_PARAMETERS),
        (schemas.AuditQuery, QUERY_PARAMETERS),
    ],
)
def test_a_hand_read_form_or_query_is_documented_with_exactly_the_parameters_the_domain_accepts(
    model: type[BaseModel], accepted: frozenset[str]
) -> None:
    assert fields_of(model) == set(accepted)


def test_the_documented_client_assertion_type_is_the_one_the_domain_requires() -> None:
    annotation = schemas.ClientAuthentication.model_fields["client_assertion_type"].annotation
    assert typing.get_args(annotation) == (CLIENT_ASSERTION_TYPE,)


def test_the_completion_notice_is_parsed_with_the_documented_model(document: dict[str, Any]) -> None:
    # the view parses with the documented model (imported at its first request, not at cold start)
    assert "from chalicelib.api.schemas import MAX_NOTICE_BYTES, Notice" in inspect.getsource(delivery)
    body = operations(document)[("/portal/notice", "POST")]["requestBody"]["content"]
    assert body == {"application/json": {"schema": {"$ref": "#/components/schemas/Notice"}}}


def test_every_answer_documents_the_interaction_id_and_the_security_headers(document: dict[str, Any]) -> None:
    required = {
        "x-fapi-interaction-id",
        "Cache-Control",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Referrer-Policy",
        "Content-Security-Policy",
        "Strict-Transport-Security",
    }
    missing = {
        f"{method} {path} {status}": required - set(response["headers"])
        for (path, method), operation in operations(document).items()
        for status, response in operation["responses"].items()
        if not required <= set(response["headers"])
    }
    assert missing == {}
    header = document["components"]["headers"]["x-fapi-interaction-id"]
    assert header["required"] is True


def test_every_operation_documents_the_400_problem_for_a_malformed_interaction_id(
    document: dict[str, Any],
) -> None:
    without = [
        f"{method} {path}"
        for (path, method), operation in operations(document).items()
        if PROBLEM not in operation["responses"]["400"].get("content", {})
    ]
    assert without == []


@pytest.mark.parametrize("path", ["/par", "/token", "/revoke"])
def test_oauth_endpoints_answer_errors_as_rfc_6749_error_json(document: dict[str, Any], path: str) -> None:
    responses = operations(document)[(path, "POST")]["responses"]
    for status in ("401", "413", "415", "500", "503"):
        assert responses[status]["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/OAuthErrorBody"}}
        }


def test_error_bodies_are_documented_as_rfc_6749_and_rfc_9457_objects(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    assert components["OAuthErrorBody"]["required"] == ["error", "error_description"]
    assert components["Problem"]["required"] == ["type", "title", "status", "detail"]
    assert components["Problem"]["properties"]["type"]["pattern"].startswith("^urn:myna-relay:problem:")


def test_every_answer_body_is_closed_against_unknown_members(document: dict[str, Any]) -> None:
    # A leaked member (a private "d" in the JWKS, a token in an error) must fail the contract tests.
    answered = {
        schema["$ref"].rsplit("/", 1)[1]
        for operation in operations(document).values()
        for response in operation["responses"].values()
        for media in response.get("content", {}).values()
        for schema in [media["schema"]]
        if "$ref" in schema
    }
    open_models = sorted(
        name
        for name in answered
        if document["components"]["schemas"][name].get("additionalProperties") is not False
    )
    assert answered
    assert open_models == []


def test_partners_find_the_dpop_and_private_key_jwt_security_schemes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["DPoP"] == {**schemes["DPoP"], "type": "http", "scheme": "DPoP"}
    assert schemes["DPoPProof"] == {**schemes["DPoPProof"], "type": "apiKey", "in": "header", "name": "DPoP"}
    assert schemes["private_key_jwt"] == {**schemes["private_key_jwt"], "type": "http", "scheme": "bearer"}
    by_operation = {key: operation["security"] for key, operation in operations(document).items()}
    assert by_operation[("/v1/self-info", "GET")] == [{"DPoP": [], "DPoPProof": []}]
    assert by_operation[("/token", "POST")] == [{"DPoPProof": []}]
    assert by_operation[("/v1/audit", "GET")] == [{"private_key_jwt": []}]


def test_pages_are_documented_as_html_and_pickup_as_jose(document: dict[str, Any]) -> None:
    ops = operations(document)
    assert set(ops[("/authorize", "GET")]["responses"]["200"]["content"]) == {"text/html"}
    assert set(ops[("/receipts/{interaction_id}", "GET")]["responses"]["404"]["content"]) == {"text/html"}
    pickup = ops[("/v1/self-info", "GET")]["responses"]
    assert set(pickup["200"]["content"]) == {"application/jose"}
    assert set(pickup["202"]["content"]) == {"application/json"}
    assert pickup["202"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}
    assert document["components"]["headers"]["Retry-After"]["required"] is True


def test_the_documented_interaction_id_is_the_one_the_middleware_accepts(document: dict[str, Any]) -> None:
    documented = {
        parameter["schema"]["pattern"]
        for operation in operations(document).values()
        for parameter in operation["parameters"]
        if parameter["name"] == INTERACTION_HEADER
    }
    assert documented == {middleware._UUID.pattern}


def test_an_audit_record_carries_the_withheld_from_disclosure_flag(document: dict[str, Any]) -> None:
    # 不開示 (番号法 第23条): every record of GET /v1/audit says whether it is withheld from disclosure
    schema = document["components"]["schemas"]["AuditRecord"]
    flag = schema["properties"]["withheld_from_disclosure"]
    assert flag["type"] == "boolean"
    assert flag["default"] is False
