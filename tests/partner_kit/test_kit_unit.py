"""The partner kit without a relay: keys, PKCE, client assertions and DPoP proofs as a relay checks
them, the redirect checks, pickup's waiting, and opening sealed payloads and webhooks made locally."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from partner_kit import (
    AuthorizationError,
    CallbackMismatch,
    Delivery,
    DeliveryGone,
    DeliveryTimeout,
    KeyFileError,
    PartnerKeys,
    PendingAuthorization,
    RelayClient,
    RelayError,
    SealedDelivery,
    VerificationError,
    generate_partner_keys,
    new_code_verifier,
    s256,
)
from tests.conftest import REPO_ROOT
from tests.partner_kit.fake_relay import ISSUER, METADATA, FakeRelay, Sealer, answer

DEMO_BANK_KEYS = REPO_ROOT / "local" / "partners" / "demo-bank.DEMO-ONLY-private-jwks.json"


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def verified(token: str, key: ECKey) -> dict[str, Any]:
    return dict(json.loads(jws.deserialize_compact(token, key, algorithms=["ES256"]).payload))


@pytest.fixture
def relay() -> FakeRelay:
    return FakeRelay()


@pytest.fixture
def keys() -> PartnerKeys:
    return generate_partner_keys("demo-bank")


@pytest.fixture
def client(relay: FakeRelay, keys: PartnerKeys) -> RelayClient:
    return RelayClient(ISSUER, "demo-bank", keys, session=relay)


@pytest.fixture
def sealer(relay: FakeRelay, keys: PartnerKeys) -> Sealer:
    return Sealer(relay.service_key, keys.encryption_key)


def pending(state: str = "s-1") -> PendingAuthorization:
    return PendingAuthorization(
        state=state,
        code_verifier=new_code_verifier(),
        redirect_uri="http://127.0.0.1:8030/callback",
        dataset="local_tax",
        purpose="loan-screening",
        authorize_url=f"{ISSUER}/authorize?x",
    )


def delivery() -> Delivery:
    return Delivery(
        access_token="at-1",
        delivery_id="d-1",
        dpop_key=ECKey.generate_key("P-256"),
        expires_at=time.time() + 60,
    )


# keys ------------------------------------------------------------------------------------------


def test_generated_keys_have_dated_kids_and_a_public_jwks_without_private_members() -> None:
    keys = generate_partner_keys("acme-bank", now=datetime(2026, 11, 3, tzinfo=UTC))
    assert (keys.signing_kid, keys.encryption_kid) == ("acme-bank-sig-2026-11", "acme-bank-enc-2026-11")
    public = keys.public_jwks()["keys"]
    assert [(k["kid"], k["use"], k["alg"], k["kty"], k["crv"]) for k in public] == [
        ("acme-bank-sig-2026-11", "sig", "ES256", "EC", "P-256"),
        ("acme-bank-enc-2026-11", "enc", "ECDH-ES+A256KW", "EC", "P-256"),
    ]
    assert all(set(k) == {"kty", "crv", "x", "y", "kid", "use", "alg"} for k in public)
    private = keys.private_jwks()["keys"]
    assert all("d" in k for k in private)
    again = PartnerKeys.from_jwks(keys.private_jwks())
    assert again.public_jwks() == keys.public_jwks()


def test_the_demo_private_jwks_loads_and_matches_the_registered_public_keys() -> None:
    keys = PartnerKeys.load(DEMO_BANK_KEYS)  # its "_warning" member is ignored
    registered = json.loads((REPO_ROOT / "local" / "partners" / "demo-bank.partner.json").read_text())
    assert keys.public_jwks() == {
        "keys": [
            {name: key[name] for name in ("kty", "crv", "x", "y", "kid", "use", "alg")}
            for key in registered["jwks"]["keys"]
        ]
    }


def test_a_public_or_incomplete_jwks_is_refused(tmp_path: Path, keys: PartnerKeys) -> None:
    with pytest.raises(KeyFileError, match="public key"):
        PartnerKeys.from_jwks(keys.public_jwks())
    with pytest.raises(KeyFileError, match="use=enc"):
        PartnerKeys.from_jwks({"keys": keys.private_jwks()["keys"][:1]})
    bad = tmp_path / "bad.json"
    bad.write_text("not json", encoding="utf-8")
    with pytest.raises(KeyFileError, match="not JSON"):
        PartnerKeys.load(bad)


# PKCE, PAR, client assertion -------------------------------------------------------------------


def test_pkce_s256_matches_rfc_7636_appendix_b() -> None:
    assert (
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    verifier = new_code_verifier()
    assert len(verifier) == 43
    assert verifier != new_code_verifier()


def test_start_pushes_the_request_with_pkce_and_a_fresh_client_assertion(
    relay: FakeRelay, client: RelayClient, keys: PartnerKeys
) -> None:
    relay.script(
        "POST",
        "/par",
        answer(201, {"request_uri": "urn:ietf:params:oauth:request_uri:abc", "expires_in": 90}),
    )
    started = client.start("http://127.0.0.1:8030/callback", "loan-screening", "local_tax")
    form = relay.to("/par")[0].data
    assert form is not None
    assert form["response_type"] == "code"
    assert form["client_id"] == "demo-bank"
    assert form["redirect_uri"] == "http://127.0.0.1:8030/callback"
    assert (form["scope"], form["purpose"], form["state"]) == ("local_tax", "loan-screening", started.state)
    assert form["code_challenge_method"] == "S256"
    assert form["code_challenge"] == s256(started.code_verifier)
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert header_of(form["client_assertion"]) == {"alg": "ES256", "kid": keys.signing_kid, "typ": "JWT"}
    claims = verified(form["client_assertion"], keys.signing_key)
    assert claims["iss"] == claims["sub"] == "demo-bank"
    assert claims["aud"] == ISSUER
    assert claims["exp"] - claims["iat"] == 60
    assert abs(claims["iat"] - time.time()) < 5
    assert len(claims["jti"]) >= 16
    assert urlsplit(started.authorize_url)._replace(query="").geturl() == METADATA["authorization_endpoint"]
    assert parse_qs(urlsplit(started.authorize_url).query) == {
        "client_id": ["demo-bank"],
        "request_uri": ["urn:ietf:params:oauth:request_uri:abc"],
    }
    # every request gets its own assertion, and the pending authorization survives JSON
    client.start("http://127.0.0.1:8030/callback", "loan-screening", "local_tax", state="mine")
    second = relay.to("/par")[1].data
    assert second is not None
    assert verified(second["client_assertion"], keys.signing_key)["jti"] != claims["jti"]
    assert second["state"] == "mine"
    assert PendingAuthorization.from_dict(json.loads(json.dumps(started.to_dict()))) == started
    # metadata was fetched once
    assert len(relay.to("/.well-known/oauth-authorization-server")) == 1


def test_a_refused_par_raises_the_oauth_error(relay: FakeRelay, client: RelayClient) -> None:
    relay.script("POST", "/par", answer(400, {"error": "invalid_request", "error_description": "purpose"}))
    with pytest.raises(RelayError) as refused:
        client.start("http://127.0.0.1:8030/callback", "nope", "local_tax")
    assert (refused.value.status, refused.value.error, refused.value.description) == (
        400,
        "invalid_request",
        "purpose",
    )


def test_a_metadata_issuer_that_is_not_ours_is_refused(keys: PartnerKeys) -> None:
    relay = FakeRelay()
    relay.answers.clear()
    relay.script(
        "GET", "/.well-known/oauth-authorization-server", answer(200, {**METADATA, "issuer": "http://evil"})
    )
    with pytest.raises(RelayError, match="issuer"):
        RelayClient(ISSUER, "demo-bank", keys, session=relay).start("http://x/cb", "p", "local_tax")


# finish: the redirect back, the token request ---------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"code": "c", "state": "s-1"},  # no iss
        {"code": "c", "state": "s-1", "iss": "http://other.test"},
        {"code": "c", "state": "s-2", "iss": ISSUER},
        {"error": "access_denied", "state": "s-2", "iss": ISSUER},
        {"state": "s-1", "iss": ISSUER},
    ],
)
def test_finish_refuses_a_redirect_of_another_issuer_or_state(
    relay: FakeRelay, client: RelayClient, query: dict[str, str]
) -> None:
    with pytest.raises(CallbackMismatch):
        client.finish(pending(), query)
    assert relay.to("/token") == []


def test_finish_raises_the_authorization_error(client: RelayClient) -> None:
    with pytest.raises(AuthorizationError) as failed:
        client.finish(
            pending(),
            {
                "error": "temporarily_unavailable",
                "error_description": "portal down",
                "state": "s-1",
                "iss": ISSUER,
            },
        )
    assert (failed.value.error, failed.value.description) == ("temporarily_unavailable", "portal down")


def test_finish_redeems_the_code_with_the_verifier_an_assertion_and_a_dpop_proof(
    relay: FakeRelay, client: RelayClient, keys: PartnerKeys
) -> None:
    relay.script(
        "POST",
        "/token",
        answer(
            200,
            {
                "access_token": "at-1",
                "token_type": "DPoP",
                "expires_in": 300,
                "delivery_id": "d-1",
                "scope": "local_tax",
            },
        ),
    )
    flow = pending()
    got = client.finish(flow, {"code": "c-1", "state": "s-1", "iss": ISSUER})
    sent = relay.to("/token")[0]
    assert sent.data is not None
    assert sent.data["grant_type"] == "authorization_code"
    assert (sent.data["code"], sent.data["code_verifier"]) == ("c-1", flow.code_verifier)
    assert sent.data["redirect_uri"] == flow.redirect_uri
    assert verified(sent.data["client_assertion"], keys.signing_key)["aud"] == ISSUER
    proof = sent.headers["DPoP"]
    header = header_of(proof)
    assert (header["typ"], header["alg"]) == ("dpop+jwt", "ES256")
    assert "d" not in header["jwk"]
    claims = verified(proof, ECKey.import_key(header["jwk"]))
    assert (claims["htm"], claims["htu"]) == ("POST", METADATA["token_endpoint"])
    assert "ath" not in claims
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["jti"]
    assert got.access_token == "at-1"
    assert got.delivery_id == "d-1"
    assert got.dpop_key.thumbprint() == ECKey.import_key(header["jwk"]).thumbprint()
    assert 290 < got.expires_at - time.time() <= 300


def test_a_refused_token_request_raises_the_oauth_error(relay: FakeRelay, client: RelayClient) -> None:
    relay.script("POST", "/token", answer(400, {"error": "invalid_grant", "error_description": "code.used"}))
    with pytest.raises(RelayError) as refused:
        client.finish(pending(), {"code": "c", "state": "s-1", "iss": ISSUER})
    assert refused.value.error == "invalid_grant"


# pickup ------------------------------------------------------------------------------------------


def test_pick_up_waits_through_202_honouring_retry_after(relay: FakeRelay, client: RelayClient) -> None:
    waiting = answer(202, {"status": "pending"}, {"Retry-After": "5"})
    relay.script(
        "GET",
        "/v1/self-info",
        waiting,
        waiting,
        answer(200, "eyJ.a.b.c.d", {"Content-Type": "application/jose"}),
    )
    slept: list[float] = []
    token = delivery()
    sealed = client.pick_up(token, wait_s=60, sleep=slept.append)
    assert sealed == SealedDelivery(compact="eyJ.a.b.c.d", delivery_id="d-1")
    assert slept == [5.0, 5.0]
    sent = relay.to("/v1/self-info")
    assert len(sent) == 3
    assert sent[0].headers["Authorization"] == "DPoP at-1"
    header = header_of(sent[0].headers["DPoP"])
    claims = verified(sent[0].headers["DPoP"], ECKey.import_key(header["jwk"]))
    assert ECKey.import_key(header["jwk"]).thumbprint() == token.dpop_key.thumbprint()
    assert (claims["htm"], claims["htu"]) == ("GET", f"{ISSUER}/v1/self-info")
    expected_ath = base64.urlsafe_b64encode(hashlib.sha256(b"at-1").digest()).rstrip(b"=").decode()
    assert claims["ath"] == expected_ath
    assert len({verified(s.headers["DPoP"], token.dpop_key)["jti"] for s in sent}) == 3


def test_pick_up_gives_up_after_wait_s(relay: FakeRelay, client: RelayClient) -> None:
    relay.script("GET", "/v1/self-info", answer(202, {"status": "pending"}, {"Retry-After": "5"}))
    slept: list[float] = []
    with pytest.raises(DeliveryTimeout):
        client.pick_up(delivery(), wait_s=12, sleep=slept.append)
    assert slept == [5.0, 5.0, 2.0]


def test_pick_up_raises_delivery_gone_with_the_check(relay: FakeRelay, client: RelayClient) -> None:
    problem = {
        "type": "urn:myna-relay:problem:gone",
        "status": 410,
        "detail": "picked up",
        "check": "delivery.picked_up",
    }
    relay.script("GET", "/v1/self-info", answer(410, problem))
    with pytest.raises(DeliveryGone) as gone:
        client.pick_up(delivery(), sleep=lambda _: None)
    assert gone.value.check == "delivery.picked_up"


def test_pick_up_raises_the_token_error_and_the_problem(relay: FakeRelay, client: RelayClient) -> None:
    relay.script(
        "GET",
        "/v1/self-info",
        answer(
            401,
            {"error": "invalid_token", "error_description": "token.unknown"},
            {"WWW-Authenticate": 'DPoP error="invalid_token"'},
        ),
        answer(
            403, {"type": "urn:myna-relay:problem:forbidden", "detail": "not yours", "check": "delivery_id"}
        ),
    )
    with pytest.raises(RelayError) as unauthorised:
        client.pick_up(delivery(), sleep=lambda _: None)
    assert (unauthorised.value.status, unauthorised.value.error) == (401, "invalid_token")
    with pytest.raises(RelayError) as forbidden:
        client.pick_up(delivery(), sleep=lambda _: None)
    assert (forbidden.value.status, forbidden.value.error, forbidden.value.check) == (
        403,
        "forbidden",
        "delivery_id",
    )
    assert forbidden.value.problem is not None


# open ----------------------------------------------------------------------------------------------


def test_open_decrypts_and_verifies_a_sealed_payload(client: RelayClient, sealer: Sealer) -> None:
    claims = client.open(SealedDelivery(sealer.seal()))
    assert claims["data"]["records"] == [{"fiscal_year": 2026, "total_income": 3680000}]
    assert claims["aud"] == "demo-bank"


def test_open_refuses_a_tampered_payload(client: RelayClient, sealer: Sealer) -> None:
    parts = sealer.seal().split(".")
    ciphertext = parts[3]
    parts[3] = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
    with pytest.raises(VerificationError):
        client.open(".".join(parts))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": "demo-health"}, "aud"),
        ({"iss": "http://other.test"}, "iss"),
        ({"exp": int(time.time()) - 1}, "expired"),
    ],
)
def test_open_refuses_a_payload_for_someone_else_or_expired(
    client: RelayClient, sealer: Sealer, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(VerificationError, match=message):
        client.open(sealer.seal(**overrides))


def test_open_refuses_a_payload_sealed_to_another_key(client: RelayClient, sealer: Sealer) -> None:
    other = ECKey.generate_key("P-256", parameters={"kid": "demo-bank-enc-2026-11"})
    with pytest.raises(VerificationError, match="decrypt"):
        client.open(sealer.seal(to=other))


def test_open_refuses_an_inner_token_signed_by_another_key(client: RelayClient, sealer: Sealer) -> None:
    forger = Sealer(ECKey.generate_key("P-256", parameters={"kid": "relay-1"}), sealer.partner_encryption_key)
    with pytest.raises(VerificationError, match="does not verify"):
        client.open(forger.seal())


def test_open_refuses_a_payload_signed_by_an_event_key(
    relay: FakeRelay, client: RelayClient, sealer: Sealer
) -> None:
    # An event key is published in the same JWKS and its signature is valid: still not a payload's.
    forged = Sealer(relay.event_key, sealer.partner_encryption_key)
    with pytest.raises(VerificationError, match="signed by an event key"):
        client.open(forged.seal())


def test_open_refetches_the_jwks_once_for_an_unknown_kid(
    relay: FakeRelay, client: RelayClient, sealer: Sealer
) -> None:
    client.open(sealer.seal())  # JWKS cached with relay-1
    relay.service_key = ECKey.generate_key("P-256", parameters={"kid": "relay-2"})  # the relay rotates
    rotated = Sealer(relay.service_key, sealer.partner_encryption_key)
    assert client.open(rotated.seal())["iss"] == ISSUER
    assert len(relay.to("/.well-known/jwks.json")) == 2
    stranger = Sealer(
        ECKey.generate_key("P-256", parameters={"kid": "nobody"}), sealer.partner_encryption_key
    )
    with pytest.raises(VerificationError, match="not in the relay's JWKS"):
        client.open(stranger.seal())


# webhooks ------------------------------------------------------------------------------------------


def webhook(key: ECKey, *, typ: str = "myna-relay-event+jwt", aud: str = "demo-bank") -> str:
    event = {
        "id": "ev-1",
        "type": "delivery.ready",
        "delivery_id": "d-1",
        "occurred_at": "2026-11-03T00:00:00Z",
    }
    claims = {"iss": ISSUER, "aud": aud, "iat": int(time.time()), "jti": "ev-1", "event": event}
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": typ}, claims, key)


def test_verify_webhook_returns_the_event(relay: FakeRelay, client: RelayClient) -> None:
    event = client.verify_webhook(webhook(relay.event_key))
    assert (event["id"], event["type"], event["delivery_id"]) == ("ev-1", "delivery.ready", "d-1")


def test_verify_webhook_refuses_a_foreign_signature_another_audience_or_type(
    relay: FakeRelay, client: RelayClient
) -> None:
    with pytest.raises(VerificationError, match="does not verify"):
        client.verify_webhook(webhook(ECKey.generate_key("P-256", parameters={"kid": relay.event_key.kid})))
    with pytest.raises(VerificationError, match="aud"):
        client.verify_webhook(webhook(relay.event_key, aud="demo-health"))
    with pytest.raises(VerificationError, match="typ"):
        client.verify_webhook(webhook(relay.event_key, typ="JWT"))
    with pytest.raises(VerificationError):
        client.verify_webhook("garbage")


def test_verify_webhook_refuses_an_event_signed_by_the_payload_key(
    relay: FakeRelay, client: RelayClient
) -> None:
    # Valid under the KMS key the JWKS publishes, but events are signed by event keys only.
    with pytest.raises(VerificationError, match="signed by the payload key"):
        client.verify_webhook(webhook(relay.service_key))
