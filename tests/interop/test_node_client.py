"""An independent client not written here, in another language: panva's openid-client (v6) and
jose, on Node, with their defaults, against the whole local stack over real HTTP (flow.mjs).

Discovery (RFC 8414), PAR with private_key_jwt and a DPoP proof, PKCE, the code exchange bound to
the same DPoP key, pickups through 202 + Retry-After, the JWE opened and its JWS verified against
the relay's JWKS (iss, aud), a second pickup answering 410; and a resident who cancels on the
portal, which the library reports as access_denied. Where the libraries fail, the relay is at fault:
they run unmodified. The resident's side is a form-following HTTP client (tests/interop/resident.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.personas import ALL_PERSONA_DIRS, load_personas
from tests.integration.stack import Launcher, free_port, relayctl_local
from tests.interop.lane import NodeFlow, install, require_node
from tests.interop.resident import Resident
from tests.partner_helpers import TestPartner

pytestmark = pytest.mark.integration


@dataclass
class Relay:
    launcher: Launcher
    partner: TestPartner
    private_jwks: Path


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = require_node()
    install(npm)
    return node


@pytest.fixture(scope="module")
def relay(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """The stack, with a bank registered whose private keys only the Node client reads."""
    state = tmp_path_factory.mktemp("interop")
    launcher = Launcher(state / "state")
    launcher.start()
    try:
        partner = TestPartner(
            client_id="node-bank",
            redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
            kid="node-bank-sig-1",
        )
        document = state / "node-bank.json"
        document.write_text(json.dumps(partner.document()), encoding="utf-8")
        registered = relayctl_local(launcher.state_dir, "partners", "register", str(document))
        assert registered.returncode == 0, registered.stderr
        public = {key["use"]: key for key in partner.document()["jwks"]["keys"]}
        private_jwks = state / "node-bank.private.jwks.json"
        private_jwks.write_text(
            json.dumps(
                {
                    "keys": [
                        {**public["sig"], **partner.signing_key.as_dict(private=True)},
                        {**public["enc"], **partner.encryption_key.as_dict(private=True)},
                    ]
                }
            ),
            encoding="utf-8",
        )
        private_jwks.chmod(0o600)
        yield Relay(launcher, partner, private_jwks)
    finally:
        launcher.stop()


def run_journey(
    node: str, relay: Relay, journey: str, resident_steps: Any, **environment: str
) -> dict[str, Any]:
    """flow.mjs for ``journey``; ``resident_steps(resident, authorize_url)`` plays the resident;
    ``environment``: flow.mjs's other settings (SCOPE, PURPOSE)."""
    flow = NodeFlow(
        node,
        {
            "RELAY_ISSUER": relay.launcher.api,
            "CLIENT_ID": relay.partner.client_id,
            "REDIRECT_URI": relay.partner.redirect_uri,
            "PARTNER_JWKS": str(relay.private_jwks),
            "JOURNEY": journey,
            **environment,
        },
    )
    try:
        event = flow.next_event()
        if event["event"] == "failed":
            pytest.fail(failure(event, flow, relay))
        assert event["event"] == "authorize", event
        resident = Resident(relay.partner.redirect_uri)
        resident_steps(resident, event["url"])
        assert resident.left_for_partner is not None, relay.launcher.log_tail()
        flow.send(resident.left_for_partner)
        result = flow.next_event()
        if result["event"] != "result":
            pytest.fail(failure(result, flow, relay))
        assert flow.process.wait(timeout=10) == 0, flow.stderr()
        return result
    finally:
        flow.close()


def failure(event: dict[str, Any], flow: NodeFlow, relay: Relay) -> str:
    return (
        f"the Node client failed at {event.get('step')!r}: {json.dumps(event, ensure_ascii=False)}\n"
        f"--- flow.mjs stderr\n{flow.stderr()}\n--- the stack's log\n{relay.launcher.log_tail()}"
    )


def agrees(resident: Resident, authorize_url: str) -> None:
    interstitial = resident.open(authorize_url)
    assert interstitial.status == 200, interstitial.text
    sign_in = resident.press(interstitial, "continue")
    consent = resident.press(sign_in, "signin", persona="salaried", pin="1234")
    resident.press(consent, "agree")


def cancels_on_the_portal(resident: Resident, authorize_url: str) -> None:
    interstitial = resident.open(authorize_url)
    assert interstitial.status == 200, interstitial.text
    sign_in = resident.press(interstitial, "continue")
    resident.press(sign_in, "cancel")


def test_openid_client_and_jose_receive_and_open_the_sealed_delivery(node: str, relay: Relay) -> None:
    result = run_journey(node, relay, "deliver", agrees)

    issuer = relay.launcher.api
    assert result["issuer"] == issuer
    assert result["token"]["token_type"].lower() == "dpop"
    assert result["token"]["scope"] == "local_tax"
    # 202 (with Retry-After, honoured) until the portal's result is in, then the sealed payload once
    assert result["pickups"][-1] == 200
    assert set(result["pickups"][:-1]) <= {202}
    assert len(result["retry_after"]) == len(result["pickups"]) - 1
    assert result["content_type"].startswith("application/jose")
    assert result["jwe_header"]["alg"] == "ECDH-ES+A256KW"
    assert result["jws_header"]["alg"] == "ES256"
    claims = result["claims"]
    assert claims["iss"] == issuer
    assert claims["aud"] == relay.partner.client_id
    assert claims["purpose"] == "loan-screening"
    assert claims["data"]["records"][0]["fiscal_year"] == 2026
    assert result["second_pickup"]["status"] == 410
    assert result["second_pickup"]["body"]["check"] == "delivery.picked_up"


def test_openid_client_reports_access_denied_when_the_resident_cancels_on_the_portal(
    node: str, relay: Relay
) -> None:
    result = run_journey(node, relay, "cancel", cancels_on_the_portal)

    assert result["name"] == "AuthorizationResponseError"
    assert result["error"] == "access_denied"


def test_a_code_pushed_with_one_dpop_key_is_refused_with_another_and_then_redeemed(
    node: str, relay: Relay
) -> None:
    # GIVEN openid-client pushed the PAR with its DPoP handle (the library's default: a proof on /par)
    # WHEN the code comes back to /token under a second handle, then under the first
    result = run_journey(node, relay, "other_key", agrees)
    # THEN the stranger key is refused (RFC 9449 section 10) and changed nothing: the right key redeems
    assert result["other_key"]["name"] == "ResponseBodyError"
    assert result["other_key"]["error"] == "invalid_dpop_proof"
    assert result["token"]["token_type"].lower() == "dpop"
    assert result["pickups"][-1] == 200
    assert result["second_pickup"]["status"] == 410


# -- the portal's plausible shapes and observed callbacks (issue [15]) ---------------------------------


def signs_in_as(persona: str) -> Any:
    def steps(resident: Resident, authorize_url: str) -> None:
        interstitial = resident.open(authorize_url)
        assert interstitial.status == 200, interstitial.text
        sign_in = resident.press(interstitial, "continue")
        consent = resident.press(sign_in, "signin", persona=persona, pin="1234")
        resident.press(consent, "agree")

    return steps


def documented(persona: str, *fields: str) -> list[tuple[Any, ...]]:
    """What the sandbox's persona says the relay should read, in the purpose's fields."""
    expected = load_personas(*ALL_PERSONA_DIRS)[persona].relay_should_read
    assert expected is not None
    return [tuple(record.get(name) for name in fields) for record in expected.records]


def test_openid_client_receives_the_real_shapes_income_as_its_persona_documents(
    node: str, relay: Relay
) -> None:
    # GIVEN a resident whose portal answer is grouped, in arrays of single-key objects, with nulls,
    # wareki years, a △ business income, two municipalities and a duplicate, all unicode-escaped
    result = run_journey(node, relay, "deliver", signs_in_as("real-shapes-income"))
    # THEN the partner's unmodified client opens exactly the documented records (the purpose's fields)
    records = result["claims"]["data"]["records"]
    assert [(r["fiscal_year"], r["total_income"]) for r in records] == documented(
        "real-shapes-income", "fiscal_year", "total_income"
    )


def test_openid_client_receives_the_real_shapes_vaccinations_as_their_persona_documents(
    node: str, relay: Relay
) -> None:
    result = run_journey(
        node,
        relay,
        "deliver",
        signs_in_as("real-shapes-vaccination"),
        SCOPE="vaccination",
        PURPOSE="child-vaccination-record",
    )
    records = result["claims"]["data"]["records"]
    assert [(r["vaccine"], r["date"]) for r in records] == documented(
        "real-shapes-vaccination", "vaccine", "date"
    )


def with_an_expired_certificate(resident: Resident, authorize_url: str) -> None:
    interstitial = resident.open(authorize_url)
    assert interstitial.status == 200, interstitial.text
    sign_in = resident.press(interstitial, "continue")
    resident.press(sign_in, "signin", persona="expired-certificate", pin="1234")


def test_openid_client_reports_access_denied_for_an_expired_certificate_in_the_observed_form(
    node: str, relay: Relay
) -> None:
    # GIVEN the portal's observed answer to an expired certificate: state=Certificate expired (the
    # relay's state replaced by that text; the sandbox's default callback form)
    result = run_journey(node, relay, "cancel", with_an_expired_certificate)
    # THEN the relay still sends the resident back to the partner, whose client reads the refusal
    assert result["name"] == "AuthorizationResponseError"
    assert result["error"] == "access_denied"
