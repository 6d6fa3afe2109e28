"""A partner's webhook endpoint in Node, with panva's jose unmodified (webhook.mjs): the relay's
JWKS fetched over HTTP with ``createRemoteJWKSet``, each event verified with ``jwtVerify`` (typ,
iss, aud, ES256), as docs/partners.md says. The events are the relay's own (the in-process relay of
tests/functional, its JWKS served over loopback exactly as it answers it): signed by the hour's
event key, which the JWKS publishes beside the KMS key (issue [13])."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from chalicelib import container
from tests.fakes import ShiftedClock
from tests.functional import conftest as functional
from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_delivery import WebhookReceiver, redeemed, run_due
from tests.interop.lane import INTEROP_DIR, install, require_node

pytestmark = pytest.mark.integration

# the in-process relay, its sandbox portal and a registered partner (tests/functional)
sandbox, portal_env, partner = functional.sandbox, functional.portal_env, functional.partner
journey, clock = functional.journey, functional.clock


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = require_node()
    install(npm)
    return node


@pytest.fixture
def served_jwks(journey: Journey) -> Iterator[str]:
    """The relay's /.well-known/jwks.json on a loopback URL (what a partner fetches)."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    lock = threading.Lock()

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        with lock:  # the Chalice test client serves one request at a time
            answer = journey.client.http.get("/.well-known/jwks.json")
        return Response(answer.body, status=answer.status_code, content_type=answer.headers["Content-Type"])

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def verify_in_node(node: str, jwks_uri: str, audience: str, bodies: list[str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node, str(INTEROP_DIR / "webhook.mjs")],
        cwd=INTEROP_DIR,
        env={"PATH": "/usr/bin:/bin", "JWKS_URI": jwks_uri, "ISSUER": ISSUER, "AUDIENCE": audience},
        input="\n".join(bodies) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_jose_verifies_the_relays_webhook_event_with_its_remote_jwks(
    node: str, journey: Journey, clock: ShiftedClock, served_jwks: str
) -> None:
    # GIVEN a partner with a webhook, told that its delivery is ready
    receiver = WebhookReceiver()
    try:
        container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
        redeemed(journey)
        assert run_due() == {"ready": 1, "webhook.delivered": 1}
    finally:
        receiver.stop()
    (event,) = receiver.bodies
    # AND a forgery: the same claims signed by a key the relay never published
    stranger = ECKey.generate_key("P-256")
    forged = jwt.encode(
        {"alg": "ES256", "kid": _header(event)["kid"], "typ": "myna-relay-event+jwt"},
        _claims(event),
        stranger,
    )
    # WHEN the partner's Node endpoint verifies both with jose and the relay's JWKS URL
    verified, refused = verify_in_node(node, served_jwks, journey.partner.client_id, [event, forged])
    # THEN the relay's event verifies (an event key), and the forgery does not
    assert verified["ok"], verified
    assert verified["kid"].startswith("event-")
    assert verified["typ"] == "myna-relay-event+jwt"
    assert verified["event"]["type"] == "delivery.ready"
    assert refused == {"ok": False, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}


def _header(compact: str) -> dict[str, Any]:
    return dict(jws.extract_compact(compact.encode()).headers())


def _claims(compact: str) -> dict[str, Any]:
    return dict(json.loads(jws.extract_compact(compact.encode()).payload))
