"""A maintained OAuth library not written here (Authlib) performs PAR + PKCE + private_key_jwt
against the whole local stack over real HTTP, then redeems the code with a DPoP proof.

This is how a bank's Python backend would integrate; it also proves the relay, the sandbox portal
(mutual TLS) and the embedded AWS work together as `make run` starts them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.jwk import ECKey

from tests.integration.stack import Launcher, free_port, relayctl_local
from tests.partner_helpers import TestPartner

pytestmark = pytest.mark.integration


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
    """Authlib signs assertions valid for an hour by default; FAPI 2.0 wants minutes (we allow 2)."""

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        self.claims = {"exp": int(time.time()) + 60}
        return super().sign(auth, token_endpoint)


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_authlib_pushes_a_request_and_redeems_the_code_with_pkce_private_key_jwt_and_dpop(
    launcher: Launcher, tmp_path: Path
) -> None:
    # GIVEN the local stack and a bank registered with the operator CLI
    launcher.start()
    issuer = launcher.api
    bank = TestPartner(client_id="authlib-bank", redirect_uri=f"http://127.0.0.1:{free_port()}/callback")
    document = tmp_path / "bank.json"
    document.write_text(json.dumps(bank.document()), encoding="utf-8")
    registered = relayctl_local(launcher.state_dir, "partners", "register", str(document))
    assert registered.returncode == 0, registered.stderr
    metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()

    # WHEN Authlib builds the authorization request and pushes it with private_key_jwt
    session = OAuth2Session(
        client_id=bank.client_id,
        client_secret=bank.signing_key,
        token_endpoint_auth_method="private_key_jwt",
        redirect_uri=bank.redirect_uri,
        scope="local_tax",
        code_challenge_method="S256",
    )
    session.register_client_auth_method(
        ShortLivedPrivateKeyJWT(metadata["issuer"], headers={"kid": bank.kid}, alg="ES256")
    )
    verifier = "v" * 20 + ECKey.generate_key("P-256").thumbprint()
    authorization_url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, purpose="loan-screening"
    )
    pushed = session.post(
        metadata["pushed_authorization_request_endpoint"],
        data=query_of(authorization_url),
        auth=session.client_auth("private_key_jwt"),
        withhold_token=True,
        timeout=10,
    )
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    assert query_of(authorization_url)["code_challenge"] == create_s256_code_challenge(verifier)

    # AND the resident goes through the interstitial and the sandbox portal in a browser
    browser = requests.Session()
    browser.trust_env = False
    page = browser.get(
        metadata["authorization_endpoint"],
        params={"client_id": bank.client_id, "request_uri": request_uri},
        timeout=10,
    )
    assert page.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    portal = browser.post(
        f"{issuer}/authorize/decision",
        timeout=10,
        allow_redirects=False,
        data={"request_uri": request_uri, "csrf_token": csrf, "action": "continue"},
    )
    assert portal.status_code == 303
    sign_in = browser.get(portal.headers["Location"], timeout=10)
    session_id = re.search(r'name="session" value="([^"]+)"', sign_in.text).group(1)  # type: ignore[union-attr]
    sandbox_url = (
        f"{urlsplit(portal.headers['Location']).scheme}://{urlsplit(portal.headers['Location']).netloc}"
    )
    browser.post(
        f"{sandbox_url}/online-authorization-web/login",
        timeout=10,
        data={"session": session_id, "persona": "salaried", "pin": "1234", "action": "signin"},
    )
    agreed = browser.post(
        f"{sandbox_url}/online-authorization-web/consent",
        timeout=10,
        allow_redirects=False,
        data={"session": session_id, "action": "agree"},
    )
    back = browser.get(agreed.headers["Location"], timeout=30, allow_redirects=False)  # the relay's callback
    assert back.status_code == 303, back.text
    redirect = back.headers["Location"]
    assert redirect.startswith(bank.redirect_uri)
    assert query_of(redirect)["iss"] == metadata["issuer"]

    # THEN Authlib redeems the code (checking state) with the verifier and a DPoP proof
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=redirect,
        state=state,
        code_verifier=verifier,
        headers={"DPoP": bank.dpop("POST", metadata["token_endpoint"])},
    )
    assert token["token_type"] == "DPoP"
    assert token["scope"] == "local_tax"
    assert token["expires_in"] > 0

    # AND the sealed delivery arrives through the notice or the scheduler, and opens with the bank's key
    from joserfc import jwe, jws
    from joserfc.jwk import KeySet

    deadline = time.monotonic() + 60
    pickup = None
    while time.monotonic() < deadline:
        proof = bank.dpop("GET", f"{issuer}/v1/self-info", access_token=token["access_token"])
        pickup = requests.get(
            f"{issuer}/v1/self-info",
            timeout=10,
            headers={"Authorization": f"DPoP {token['access_token']}", "DPoP": proof},
        )
        if pickup.status_code != 202:
            break
        time.sleep(float(pickup.headers["Retry-After"]) / 5)
    assert pickup is not None
    assert pickup.status_code == 200, pickup.text
    inner = jwe.decrypt_compact(pickup.text, bank.encryption_key).plaintext
    jwks = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    claims = json.loads(jws.deserialize_compact(inner, jwks, algorithms=["ES256"]).payload)
    assert claims["data"]["records"][0]["fiscal_year"] == 2026
