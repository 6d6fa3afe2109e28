"""The JWKS serves the public half of the KMS signing key; KMS signatures verify against it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey
from joserfc.util import urlsafe_b64encode

from chalicelib import container
from chalicelib.container import get_container
from chalicelib.settings import get_settings


def served_jwks(client: Any) -> dict[str, Any]:
    response = client.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return json.loads(response.body)


def kms_signed_compact_jws(kms_client: Any, key_id: str, kid: str, payload: bytes) -> str:
    """What the service will do for sealed payloads: sign the JWS input with KMS, MessageType=RAW."""
    header = urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": kid}).encode())
    body = urlsafe_b64encode(payload)
    signing_input = header + b"." + body
    der = kms_client.sign(
        KeyId=key_id, Message=signing_input, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
    )["Signature"]
    r, s = decode_dss_signature(der)
    signature = urlsafe_b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return (signing_input + b"." + signature).decode()


def test_jwks_serves_one_es256_public_key_with_its_thumbprint_as_kid(client: Any) -> None:
    response = client.http.get("/.well-known/jwks.json")
    assert response.headers["Content-Type"] == "application/jwk-set+json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    (jwk,) = json.loads(response.body)["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert "d" not in jwk
    assert jwk["kid"] == ECKey.import_key(jwk).thumbprint()


def test_a_kms_raw_signature_verifies_with_the_served_jwk(
    client: Any, kms_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN the served JWK
    (jwk,) = served_jwks(client)["keys"]
    # WHEN KMS signs a JWS (MessageType=RAW) with the signing key's alias
    token = kms_signed_compact_jws(
        kms_client, resources["RELAY_SIGNING_KEY_ID"], jwk["kid"], b'{"hello":"bank"}'
    )
    # THEN joserfc verifies it with the served public key alone
    verified = jws.deserialize_compact(token, ECKey.import_key(jwk), algorithms=["ES256"])
    assert verified.payload == b'{"hello":"bank"}'
    assert verified.headers()["kid"] == jwk["kid"]


def test_a_tampered_payload_does_not_verify(client: Any, kms_client: Any, resources: dict[str, str]) -> None:
    (jwk,) = served_jwks(client)["keys"]
    token = kms_signed_compact_jws(kms_client, resources["RELAY_SIGNING_KEY_ID"], jwk["kid"], b'{"amount":1}')
    header, _, signature = token.split(".")
    forged_payload = urlsafe_b64encode(b'{"amount":9}').decode()
    forged = f"{header}.{forged_payload}.{signature}"
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(forged, ECKey.import_key(jwk), algorithms=["ES256"])


def test_the_service_signer_produces_jws_signatures_that_verify(client: Any) -> None:
    (jwk,) = served_jwks(client)["keys"]
    signer = get_container().signer
    header = urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": jwk["kid"]}).encode())
    signing_input = header + b"." + urlsafe_b64encode(b"{}")
    token = (signing_input + b"." + urlsafe_b64encode(signer.sign(signing_input))).decode()
    assert jws.deserialize_compact(token, ECKey.import_key(jwk), algorithms=["ES256"]).payload == b"{}"


def test_the_public_key_is_fetched_from_kms_once_per_container(client: Any) -> None:
    # GIVEN a counter on the container's KMS client
    calls: list[str] = []
    kms = get_container().aws.kms
    kms.meta.events.register("before-call.kms.GetPublicKey", lambda **_: calls.append("GetPublicKey"))
    # WHEN the JWKS is served three times
    kids = {served_jwks(client)["keys"][0]["kid"] for _ in range(3)}
    # THEN KMS was asked once, and the kid is stable
    assert calls == ["GetPublicKey"]
    assert len(kids) == 1


def test_a_rotated_out_key_stays_published_after_the_current_one(
    client: Any, kms_client: Any, resources: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a new signing key, with the old one configured as previous
    new_key = kms_client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    old_alias = resources["RELAY_SIGNING_KEY_ID"]
    old_kid = served_jwks(client)["keys"][0]["kid"]
    monkeypatch.setenv("RELAY_SIGNING_KEY_ID", new_key)
    monkeypatch.setenv("RELAY_PREVIOUS_SIGNING_KEY_IDS", json.dumps([old_alias]))
    # (the test client re-applies config.json's variables during each request, so the container is
    # built here from the rotated environment, as a fresh Lambda container would build it)
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(settings=get_settings()))
    # WHEN the JWKS is served  THEN the new key comes first and the old one is still there
    kids = [jwk["kid"] for jwk in served_jwks(client)["keys"]]
    assert len(kids) == 2
    assert kids[1] == old_kid


def test_a_misconfigured_signing_key_is_a_503_problem(
    client: Any, kms_client: Any, resources: dict[str, str]
) -> None:
    kms_client.delete_alias(AliasName=resources["RELAY_SIGNING_KEY_ID"])
    response = client.http.get("/.well-known/jwks.json")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    problem = json.loads(response.body)
    assert problem["type"] == "urn:myna-relay:problem:dependency-unavailable"
    assert problem["check"] == "kms"


def test_a_container_keeps_signing_with_the_key_it_publishes_while_the_alias_moves(
    resources: dict[str, str], kms_client: Any
) -> None:
    from chalicelib.adapters.kms_signer import KmsSigner

    # GIVEN a container that has published the signing key behind the alias
    alias = resources["RELAY_SIGNING_KEY_ID"]
    signer = KmsSigner(kms_client, alias)
    published = ECKey.import_key(signer.public_jwk())
    # WHEN an operator points the alias at a new key (a rotation) while the container is warm
    new_key = kms_client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    kms_client.update_alias(AliasName=alias, TargetKeyId=new_key)
    signing_input = b"eyJhbGciOiJFUzI1NiJ9.cm90YXRpb24"
    signature = signer.sign(signing_input)
    # THEN its signatures still verify against the key it publishes (kid and key never disagree)
    compact = (signing_input + b"." + urlsafe_b64encode(signature)).decode()
    assert jws.deserialize_compact(compact, published, algorithms=["ES256"]).payload == b"rotation"
