"""Every response: interaction id, security headers, problem documents; /health answers."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from app import app
from chalicelib import container
from chalicelib.telemetry import logger


def test_health_answers_with_the_stage(client: Any) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok", "service": "myna-relay", "stage": "test"}


def test_an_interaction_id_is_generated_when_none_is_sent(client: Any) -> None:
    response = client.http.get("/health")
    assert uuid.UUID(response.headers["x-fapi-interaction-id"]).version == 4


def test_the_partners_interaction_id_is_echoed(client: Any) -> None:
    sent = str(uuid.uuid4())
    response = client.http.get("/health", headers={"x-fapi-interaction-id": sent})
    assert response.headers["x-fapi-interaction-id"] == sent


@pytest.mark.parametrize("bad", ["not-a-uuid", "x" * 300, "<script>", "1234"])
def test_a_malformed_interaction_id_is_refused_and_not_reflected(client: Any, bad: str) -> None:
    response = client.http.get("/health", headers={"x-fapi-interaction-id": bad})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem["type"] == "urn:myna-relay:problem:invalid-interaction-id"
    assert problem["check"] == "x-fapi-interaction-id"
    assert bad not in response.body.decode()
    assert response.headers["x-fapi-interaction-id"] != bad


def test_security_headers_are_on_every_response(client: Any) -> None:
    headers = client.http.get("/health").headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Strict-Transport-Security"].startswith("max-age=")


def test_debug_is_never_on() -> None:
    assert app.debug is False


def test_the_app_leaves_the_service_logger_at_info() -> None:
    # Chalice's debug setter would set the logger named after the app (ours) to ERROR
    import logging

    assert logging.getLogger("myna-relay").getEffectiveLevel() <= logging.INFO


def test_an_unexpected_error_is_an_opaque_problem_with_no_traceback(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a fault deep inside the service, carrying something that must not leak
    def explode(self: object) -> dict[str, Any]:
        raise RuntimeError("secret-token-abc123")

    monkeypatch.setattr(container.Container, "jwks", explode)
    # WHEN a request hits it
    response = client.http.get("/.well-known/jwks.json")
    # THEN a 500 problem, with the interaction id, and nothing of the fault
    assert response.status_code == 500
    body = response.body.decode()
    problem = json.loads(body)
    assert problem["type"] == "urn:myna-relay:problem:internal-error"
    assert problem["interaction_id"] == response.headers["x-fapi-interaction-id"]
    assert "secret-token-abc123" not in body
    assert "Traceback" not in body


def test_logs_are_json_lines_carrying_the_interaction_id(client: Any) -> None:
    # GIVEN the service's log stream captured (the handler keeps the stream it was built with)
    handler = logger.registered_handler
    captured = io.StringIO()
    previous = handler.setStream(captured)
    try:
        sent = str(uuid.uuid4())
        client.http.get("/health", headers={"x-fapi-interaction-id": sent})
    finally:
        handler.setStream(previous)
    # THEN every line is JSON and the access line carries the interaction id and the route template
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    request_lines = [line for line in lines if line.get("message") == "request"]
    assert len(request_lines) == 1
    assert request_lines[0]["interaction_id"] == sent
    assert request_lines[0]["route"] == "/health"
    assert request_lines[0]["status"] == 200


def test_openid_configuration_is_a_problem_pointing_to_the_oauth_metadata(client: Any) -> None:
    # WHEN a client library tries OpenID discovery first
    response = client.http.get("/.well-known/openid-configuration")
    # THEN it gets a 404 problem naming where the RFC 8414 metadata is
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem["type"] == "urn:myna-relay:problem:not-an-openid-provider"
    assert "/.well-known/oauth-authorization-server" in problem["detail"]
    assert problem["interaction_id"] == response.headers["x-fapi-interaction-id"]
    # AND the metadata is there
    assert client.http.get("/.well-known/oauth-authorization-server").status_code == 200


def test_chalices_own_errors_are_problems(client: Any) -> None:
    # WHEN a route gets a method it does not have, or a media type it does not take
    wrong_method = client.http.request("DELETE", "/health", headers={}, body=b"")
    wrong_media = client.http.get("/health", headers={"Content-Type": "text/plain"})
    # THEN both are problems with their status (and Allow), not Chalice's {"Code", "Message"}
    for response, status, code in (
        (wrong_method, 405, "method-not-allowed"),
        (wrong_media, 415, "unsupported-media-type"),
    ):
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/problem+json"
        assert json.loads(response.body)["type"] == f"urn:myna-relay:problem:{code}"
    assert wrong_method.headers["Allow"] == "GET"


def test_the_local_server_answers_a_path_no_route_has_with_the_services_404() -> None:
    from chalice.config import Config

    from scripts.chalice_local import ServiceGateway

    # GIVEN the gateway chalice local runs behind the launcher
    gateway = ServiceGateway(app, Config(chalice_stage="test"))
    sent = str(uuid.uuid4())
    # WHEN a path no route has is asked for
    answer = gateway.handle_request("GET", "/admin?x=1", {"x-fapi-interaction-id": sent}, None)
    # THEN it is the service's 404 problem with the interaction id, not API Gateway's 403
    assert answer["statusCode"] == 404
    assert answer["headers"]["Content-Type"] == "application/problem+json"
    assert answer["headers"]["x-fapi-interaction-id"] == sent
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"
    problem = json.loads(answer["body"])
    assert (problem["type"], problem["interaction_id"]) == ("urn:myna-relay:problem:not-found", sent)


def test_without_a_partners_id_the_interaction_id_is_the_gateways_request_id() -> None:
    # (the API Gateway access log can read no response header: its requestId must be the id)
    from chalice.app import Response

    from chalicelib.api.middleware import answer

    gateway = str(uuid.uuid4())
    produced = answer({}, "GET", "/health", lambda: Response(body="ok"), gateway_request_id=gateway)
    assert produced.headers["x-fapi-interaction-id"] == gateway
    # a partner's own id still wins, and a request id that is not a UUID is not adopted
    sent = str(uuid.uuid4())
    headers = {"x-fapi-interaction-id": sent}
    assert (
        answer(headers, "GET", "/health", lambda: Response(body="ok"), gateway_request_id=gateway).headers[
            "x-fapi-interaction-id"
        ]
        == sent
    )
    other = answer({}, "GET", "/health", lambda: Response(body="ok"), gateway_request_id="not-a-uuid")
    assert other.headers["x-fapi-interaction-id"] != "not-a-uuid"
    assert uuid.UUID(other.headers["x-fapi-interaction-id"]).version == 4
