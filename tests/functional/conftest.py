"""Functional fixtures: the relay (Chalice test client, moto in-process) wired to a real sandbox
portal on loopback over mutual TLS, a registered test partner, and a resident's browser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from chalicelib import container
from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from sandbox.server import SandboxServer, load_services
from scripts.dev import SANDBOX_SERVICES
from tests.fakes import ShiftedClock
from tests.partner_helpers import Pkce, TestPartner

ISSUER = "https://myna-relay.test"
CALLBACK = f"{ISSUER}/portal/callback"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    # the relay's registrations at the portal, as `make run` registers them
    services = load_services(SANDBOX_SERVICES, ISSUER)
    server = SandboxServer(services, tls_dir=tmp_path / "tls", deterministic=True).start()
    yield server
    server.stop()


@pytest.fixture
def portal_env(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sandbox.tls is not None
    endpoints = sandbox.endpoints()
    for name, value in {
        "RELAY_PORTAL_AUTHORIZE_URL": endpoints["authorize_url"],
        "RELAY_PORTAL_TOKEN_URL": endpoints["token_url"],
        "RELAY_PORTAL_REQUEST_URL": endpoints["request_url"],
        "RELAY_PORTAL_RESULT_URL": endpoints["result_url"],
        "RELAY_PORTAL_CLIENT_CERT": str(sandbox.tls.client_cert),
        "RELAY_PORTAL_CLIENT_KEY": str(sandbox.tls.client_key),
        "RELAY_PORTAL_CA_BUNDLE": str(sandbox.tls.ca_cert),
        "RELAY_PORTAL_SERVICES": json.dumps(
            {"local_tax": "SP00000001_AA0001", "vaccination": "SP00000001_AA0002"}
        ),
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def partner(resources: dict[str, str], dynamodb_client: Any) -> TestPartner:
    test_partner = TestPartner()
    store = DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
    PartnerRegistry(store, SystemClock(), allow_loopback=True).register(test_partner.document())
    return test_partner


def set_cookie(response: Any, name: str) -> str:
    """The value a response sets for cookie ``name`` ("" if none)."""
    values = response.headers.get("Set-Cookie", [])
    for value in [values] if isinstance(values, str) else values:
        key, _, rest = value.partition("=")
        if key == name:
            return rest.split(";", 1)[0]
    return ""


def location_query(response: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


@dataclass
class Journey:
    """One partner-initiated flow, step by step, through the relay and the sandbox."""

    client: Any
    partner: TestPartner
    sandbox: SandboxServer
    pkce: Pkce
    state: str = "partner-state-1"
    request_uri: str = ""
    csrf_cookie: str = ""
    csrf_token: str = ""
    portal_url: str = ""
    callback_query: str = ""
    portal_cookie: str = ""  # relay_portal: binds the portal's callback to this browser
    # what the resident's browser trusts: True (the system) for the sandbox's plain-HTTP side,
    # the test CA when the sandbox serves that side over TLS
    browser_verify: bool | str = True

    def form(self, fields: dict[str, str]) -> dict[str, Any]:
        return {"body": urlencode(fields), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}

    def push(
        self,
        purpose: str = "loan-screening",
        scope: str = "local_tax",
        *,
        dpop: str | None = None,
        **overrides: str | None,
    ) -> Any:
        """PAR; ``dpop`` is sent as the DPoP header (RFC 9449 section 10.1), none by default."""
        fields: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.partner.client_id,
            "redirect_uri": self.partner.redirect_uri,
            "state": self.state,
            "code_challenge": self.pkce.challenge,
            "code_challenge_method": "S256",
            "scope": scope,
            "purpose": purpose,
            **self.partner.authentication(ISSUER),
        }
        fields.update(overrides)
        request = self.form({k: v for k, v in fields.items() if v is not None})
        if dpop is not None:
            request["headers"]["DPoP"] = dpop
        response = self.client.http.post("/par", **request)
        if response.status_code == 201:
            self.request_uri = json.loads(response.body)["request_uri"]
        return response

    def show_consent(self, lang: str | None = None, *, cookie: str | None = None) -> Any:
        """GET the interstitial; ``cookie``: the relay_csrf cookie the browser sends (none by default)."""
        query = {"client_id": self.partner.client_id, "request_uri": self.request_uri}
        if lang:
            query["lang"] = lang
        headers = {"Cookie": f"relay_csrf={cookie}"} if cookie is not None else {}
        response = self.client.http.get(f"/authorize?{urlencode(query)}", headers=headers)
        if response.status_code == 200:
            self.csrf_cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
            self.csrf_token = re.search(r'name="csrf_token" value="([^"]+)"', response.body.decode()).group(1)  # type: ignore[union-attr]
        return response

    def decide(self, action: str = "continue", *, csrf: str | None = None, cookie: str | None = None) -> Any:
        fields = {
            "request_uri": self.request_uri,
            "csrf_token": self.csrf_token if csrf is None else csrf,
            "action": action,
        }
        request = self.form(fields)
        request["headers"]["Cookie"] = f"relay_csrf={self.csrf_cookie if cookie is None else cookie}"
        response = self.client.http.post("/authorize/decision", **request)
        if response.status_code == 303:
            self.portal_url = response.headers["Location"]
            self.portal_cookie = set_cookie(response, "relay_portal") or self.portal_cookie
        return response

    def at_portal(self, persona: str = "salaried", *, agree: bool = True) -> dict[str, str]:
        """The resident signs in at the sandbox and agrees; returns the portal's callback query."""
        browser = requests.Session()
        browser.trust_env = False  # REQUESTS_CA_BUNDLE would override the verify below
        browser.verify = self.browser_verify
        page = browser.get(self.portal_url, timeout=10)
        assert page.status_code == 200, page.text
        session = re.search(r'name="session" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        signed = browser.post(
            f"{self.sandbox.app_url}/online-authorization-web/login",
            timeout=10,
            data={"session": session, "persona": persona, "pin": "1234", "action": "signin"},
            allow_redirects=False,
        )
        if signed.status_code == 303:
            self.callback_query = urlsplit(signed.headers["Location"]).query
            return location_query(signed)
        done = browser.post(
            f"{self.sandbox.app_url}/online-authorization-web/consent",
            timeout=10,
            data={"session": session, "action": "agree" if agree else "deny"},
            allow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["Location"].startswith(CALLBACK + "?")
        self.callback_query = urlsplit(done.headers["Location"]).query
        return location_query(done)

    def with_locked_card(self) -> str:
        """The resident signs in with a locked card (refused) and goes back to the service; returns
        the portal's callback query."""
        browser = requests.Session()
        page = browser.get(self.portal_url, timeout=10)
        session = re.search(r'name="session" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        locked = browser.post(
            f"{self.sandbox.app_url}/online-authorization-web/login",
            timeout=10,
            data={"session": session, "persona": "locked-card", "pin": "1234", "action": "signin"},
        )
        assert locked.status_code == 403
        back = browser.post(
            f"{self.sandbox.app_url}/online-authorization-web/locked",
            timeout=10,
            data={"session": session},
            allow_redirects=False,
        )
        self.callback_query = back.headers["Location"].split("?", 1)[1]
        return self.callback_query

    def callback(self, query: str | None = None, *, cookie: str | None = None) -> Any:
        """The portal's redirect back, in this browser (its binding cookie) unless ``cookie`` says
        otherwise ("" for a browser without it)."""
        binding = self.portal_cookie if cookie is None else cookie
        headers = {"Cookie": f"relay_portal={binding}"} if binding else {}
        return self.client.http.get(
            f"/portal/callback?{self.callback_query if query is None else query}", headers=headers
        )

    def redeem(
        self, code: str, *, verifier: str | None = None, dpop: str | None = "default", **overrides: str | None
    ) -> Any:
        fields: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.partner.redirect_uri,
            "code_verifier": verifier or self.pkce.verifier,
            **self.partner.authentication(ISSUER),
        }
        fields.update(overrides)
        request = self.form({k: v for k, v in fields.items() if v is not None})
        if dpop == "default":
            dpop = self.partner.dpop("POST", f"{ISSUER}/token")
        if dpop is not None:
            request["headers"]["DPoP"] = dpop
        return self.client.http.post("/token", **request)

    def to_partner_code(self, persona: str = "salaried") -> str:
        """PAR through callback: the code the partner receives."""
        assert self.push().status_code == 201
        assert self.show_consent().status_code == 200
        assert self.decide().status_code == 303
        self.at_portal(persona)
        response = self.callback()
        assert response.status_code == 303, response.body
        return location_query(response)["code"]


@pytest.fixture
def journey(client: Any, partner: TestPartner, sandbox: SandboxServer, portal_env: None) -> Journey:
    return Journey(client=client, partner=partner, sandbox=sandbox, pkce=Pkce())


@pytest.fixture
def clock(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    """The relay's clock, movable; the partner signs with the same time."""
    shifted = ShiftedClock()
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(clock=shifted))
    journey.partner.clock = shifted.timestamp
    return shifted
