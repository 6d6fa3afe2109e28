"""Attacks through the resident's browser: stored and reflected script injection, clickjacking,
cross-site request forgery on every form, Host header injection, cross-origin reads and caching
of secrets (OWASP Top 10 A03/A05, OWASP WSTG, RFC 9700 §4.7 and §4.16, RFC 6749 §5.1).

A partner's names and purpose titles are shown to residents: a partner (or whoever edits its
registration) may write markup into them. Pages must escape it, and the Content-Security-Policy
must forbid inline script so that a missed escape still runs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from markupsafe import escape

from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_authorization_refusals import post_form, registry
from tests.functional.test_delivery import pick_up, run_due
from tests.functional.test_receipts import csrf_of, through_token
from tests.partner_helpers import Pkce, TestPartner
from tests.security.helpers import SELF_INFO, TOKEN_URL, Tables, assert_error_page

Snapshot = Callable[[], Tables]

NAME_JA = "<script>alert(1)</script>"
NAME_EN = '"><svg onload=alert(1)>'
TITLE_JA = "</title><script src=//attacker.example/x.js></script>"
TITLE_EN = "<a href=javascript:alert(1)>screening</a>"
RAW_MARKUP = ("<script", "<svg", "</title><script", "<a href=javascript")


@pytest.fixture
def markup_journey(journey: Journey, dynamodb_client: Any, resources: dict[str, str]) -> Journey:
    """A registered partner whose names and purpose titles are markup."""
    markup = TestPartner(
        client_id="markup-bank", redirect_uri="https://markup.example/callback", kid="markup-1"
    )
    document = markup.document(names={"ja": NAME_JA, "en": NAME_EN})
    document["purposes"][0]["titles"] = {"ja": TITLE_JA, "en": TITLE_EN}
    registry(dynamodb_client, resources).register(document)
    return Journey(client=journey.client, partner=markup, sandbox=journey.sandbox, pkce=Pkce())


def assert_scriptless_csp(response: Any) -> None:
    policy = response.headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    assert directives["default-src"] == ["'none'"]
    assert "script-src" not in directives  # so default-src 'none' forbids every script
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert_style_is_the_hashed_element(response)


STYLE_ELEMENT = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def assert_style_is_the_hashed_element(response: Any) -> None:
    """The page's one ``<style>`` element is the only style the CSP allows, by the hash of its exact
    content: no stylesheet is fetched, no other inline style (injected or not) would apply."""
    page = response.body.decode("utf-8")
    policy = response.headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    (content,) = STYLE_ELEMENT.findall(page)
    digest = base64.b64encode(hashlib.sha256(content.encode("utf-8")).digest()).decode("ascii")
    assert directives["style-src"] == [f"'sha256-{digest}'"]
    assert "/static/" not in page
    assert "<link" not in page
    assert " style=" not in page  # a style attribute would need 'unsafe-hashes': none is used


def assert_no_raw_markup(page: str) -> None:
    for raw in RAW_MARKUP:
        assert raw not in page, raw


@pytest.mark.attack(
    source="OWASP A03:2021 / WSTG-INPV-02",
    threat="stored XSS: markup in a partner's names and purpose titles on the interstitial",
)
def test_the_interstitial_escapes_a_partners_markup_and_forbids_inline_script(
    markup_journey: Journey,
) -> None:
    assert markup_journey.push().status_code == 201
    for lang, name, title in (("ja", NAME_JA, TITLE_JA), ("en", NAME_EN, TITLE_EN)):
        page = markup_journey.show_consent(lang=lang)
        assert page.status_code == 200
        text = page.body.decode()
        assert_no_raw_markup(text)
        assert str(escape(name)) in text  # shown, as text
        assert str(escape(title)) in text
        assert_scriptless_csp(page)


@pytest.mark.attack(
    source="OWASP A03:2021 / WSTG-INPV-02",
    threat="stored XSS: a partner's markup name shown on the resident's receipt page",
)
def test_the_receipt_page_escapes_a_partners_markup(markup_journey: Journey, clock: ShiftedClock) -> None:
    _, receipt = through_token(markup_journey)
    page = markup_journey.client.http.get(receipt)
    assert page.status_code == 200
    text = page.body.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the requester column
    assert_no_raw_markup(text)
    assert_scriptless_csp(page)


@pytest.mark.attack(
    source="OWASP A03:2021 / WSTG-INPV-01",
    threat="reflected XSS: markup in query, path and headers echoed by error pages",
)
def test_error_pages_reflect_no_markup_from_the_request(journey: Journey, tables: Snapshot) -> None:
    script = "<script>alert(1)</script>"
    attempts = (
        f"/authorize?{urlencode({'client_id': script, 'request_uri': script, 'lang': script})}",
        f"/authorize?{urlencode({'client_id': 'acme-bank', 'request_uri': 'urn:ietf:params:oauth:request_uri:' + script})}",
        f"/portal/callback?{urlencode({'state': script, 'error': script, 'code': script})}",
        f"/receipts/{quote(script, safe='')}?{urlencode({'e': script, 't': script})}",
    )
    for path in attempts:
        page = journey.client.http.get(path, headers={"Accept-Language": script})
        assert 400 <= page.status_code < 500, (path, page.status_code)
        assert page.headers["Content-Type"].startswith("text/html")
        assert "<script>alert" not in page.body.decode()
        assert "alert(1)" not in page.body.decode()
        assert_scriptless_csp(page)
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(
    source="OWASP WSTG-CLNT-03 / CSP Level 3 §8.3",
    threat="CSS injection: a style the page did not ship applied under a loose style-src",
)
def test_each_page_carries_its_stylesheet_allowed_by_hash_only(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN the consent page, an error page and a page in the other language
    assert journey.push().status_code == 201
    pages = [
        journey.show_consent(),
        journey.client.http.get("/authorize?client_id=acme-bank&request_uri=urn:nothing"),
        journey.client.http.get("/authorize?client_id=acme-bank&request_uri=urn:nothing&lang=en"),
    ]
    for page in pages:
        # WHEN the browser reads it THEN the style element's hash is the CSP's only style source,
        # and nothing refers to a stylesheet to fetch
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
        assert_style_is_the_hashed_element(page)


@pytest.mark.attack(
    source="OWASP WSTG-CLNT-09 / RFC 9700 §4.16",
    threat="clickjacking: the consent buttons framed by another site, or the form posted elsewhere",
)
def test_the_interstitial_cannot_be_framed_and_posts_only_where_it_should(journey: Journey) -> None:
    assert journey.push().status_code == 201
    page = journey.show_consent()
    assert_scriptless_csp(page)
    directives = {
        part.split()[0]: part.split()[1:] for part in page.headers["Content-Security-Policy"].split("; ")
    }
    portal = urlsplit(journey.sandbox.app_url)
    assert sorted(directives["form-action"]) == sorted(
        ["'self'", f"{portal.scheme}://{portal.netloc}", "https://bank.example"]
    )
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.attack(
    source="OWASP WSTG-SESS-02 / RFC 6265bis §8.8",
    threat="CSRF: the anti-forgery cookies readable by script or sent cross-site",
)
def test_the_csrf_cookies_are_host_only_http_only_strict_and_secure(
    journey: Journey, clock: ShiftedClock
) -> None:
    assert journey.push().status_code == 201
    consent = journey.show_consent()
    _, receipt = _through_receipt(journey, consent)
    receipt_page = journey.client.http.get(receipt)
    for cookie, path in (
        (consent.headers["Set-Cookie"], "/authorize"),
        (receipt_page.headers["Set-Cookie"], "/receipts"),
    ):
        attributes = [part.strip() for part in cookie.split(";")]
        assert "HttpOnly" in attributes  # no script reads it
        assert "SameSite=Strict" in attributes  # no other site's request carries it
        assert "Secure" in attributes
        assert f"Path={path}" in attributes
        assert not [a for a in attributes if a.lower().startswith("domain=")]  # host-only


@pytest.mark.attack(
    source="OWASP WSTG-SESS-05 / RFC 9700 §4.7",
    threat="CSRF: a cross-site POST of the consent decision without the SameSite cookie",
)
def test_a_cross_site_decision_without_the_cookie_is_refused(journey: Journey, tables: Snapshot) -> None:
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    before = tables()
    # a cross-site form POST: the browser withholds the SameSite=Strict cookie; even a leaked
    # form token is not enough
    fields = {"request_uri": journey.request_uri, "csrf_token": journey.csrf_token, "action": "continue"}
    response = post_form(journey, "/authorize/decision", fields, Origin="https://attacker.example")
    assert_error_page(response, 403, "csrf_token")
    assert tables() == before


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param(
            "no-cookie",
            id="revoke-without-cookie",
            marks=pytest.mark.attack(
                source="OWASP WSTG-SESS-05", threat="CSRF: a cross-site POST revoking the resident's delivery"
            ),
        ),
        pytest.param(
            "consent-cookie",
            id="revoke-with-the-consent-forms-pair",
            marks=pytest.mark.attack(
                source="OWASP WSTG-SESS-05",
                threat="CSRF: the consent form's token and cookie replayed at the receipt form",
            ),
        ),
    ],
)
def test_a_forged_revocation_is_refused_and_the_delivery_stays(
    journey: Journey, clock: ShiftedClock, tables: Snapshot, forgery: str
) -> None:
    # GIVEN a sealed delivery and the resident's receipt page (with its form)
    assert journey.push().status_code == 201
    consent = journey.show_consent()
    token, receipt = _through_receipt(journey, consent)
    assert run_due() == {"ready": 1}
    page = journey.client.http.get(receipt)
    _, form_token = csrf_of(page)
    query = {k: v[0] for k, v in parse_qs(urlsplit(receipt).query).items()}
    before = tables()
    # WHEN a forged revocation is posted
    if forgery == "no-cookie":
        fields, headers = {**query, "csrf_token": form_token}, {}
    else:
        fields = {**query, "csrf_token": journey.csrf_token}
        headers = {"Cookie": f"relay_csrf={journey.csrf_cookie}"}
    response = post_form(journey, urlsplit(receipt).path + "/revoke", fields, **headers)
    # THEN it is refused, nothing changes, and the partner still receives the delivery
    assert_error_page(response, 403, "csrf_token")
    assert tables() == before
    assert pick_up(journey, token).status_code == 200


def _through_receipt(journey: Journey, consent: Any) -> tuple[str, str]:
    match = re.search(r'href="(https://myna-relay\.test/receipts/[^"]+)"', consent.body.decode())
    assert match
    receipt = html.unescape(match.group(1)).removeprefix(ISSUER)
    assert journey.decide().status_code == 303
    journey.at_portal()
    code = parse_qs(urlsplit(journey.callback().headers["Location"]).query)["code"][0]
    return json.loads(journey.redeem(code).body)["access_token"], receipt


@pytest.mark.attack(
    source="OWASP WSTG-INPV-17",
    threat="Host header injection: links, cookies and CSP built from a forged Host",
)
def test_a_forged_host_header_changes_no_link_on_the_interstitial(journey: Journey) -> None:
    assert journey.push().status_code == 201
    query = urlencode({"client_id": journey.partner.client_id, "request_uri": journey.request_uri})
    page = journey.client.http.get(
        f"/authorize?{query}",
        headers={
            "Host": "attacker.example",
            "X-Forwarded-Host": "attacker.example",
            "X-Forwarded-Proto": "http",
            "Forwarded": "host=attacker.example;proto=http",
        },
    )
    assert page.status_code == 200
    text = page.body.decode()
    assert "attacker.example" not in text
    assert "attacker.example" not in json.dumps(dict(page.headers))
    assert f'href="{ISSUER}/receipts/' in text
    assert "Secure" in page.headers["Set-Cookie"]


@pytest.mark.attack(
    source="OWASP A05:2021 / WSTG-CONF-12",
    threat="CORS: a script on another origin reads the token or the sealed delivery",
)
def test_no_origin_may_read_tokens_or_deliveries(journey: Journey, clock: ShiftedClock) -> None:
    origin = {"Origin": "https://attacker.example"}
    code = journey.to_partner_code()
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": journey.partner.redirect_uri,
        "code_verifier": journey.pkce.verifier,
        **journey.partner.authentication(ISSUER),
    }
    issued = post_form(journey, "/token", fields, DPoP=journey.partner.dpop("POST", TOKEN_URL), **origin)
    assert issued.status_code == 200
    token = json.loads(issued.body)["access_token"]
    run_due()
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    sealed = journey.client.http.get(
        "/v1/self-info", headers={"Authorization": f"DPoP {token}", "DPoP": proof, **origin}
    )
    assert sealed.status_code == 200
    for response in (issued, sealed):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
        # RFC 6749 §5.1 / RFC 9449: neither a token nor a delivery may be kept by a cache
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(
            "decision",
            id="non-ascii-decision-token",
            marks=pytest.mark.attack(
                source="CWE-1287 / OWASP WSTG-SESS-05",
                threat="a non-ASCII CSRF form token that crashes a constant-time comparison (decision)",
            ),
        ),
        pytest.param(
            "revocation",
            id="non-ascii-revocation-token",
            marks=pytest.mark.attack(
                source="CWE-1287 / OWASP WSTG-SESS-05",
                threat="a non-ASCII CSRF form token that crashes a constant-time comparison (revocation)",
            ),
        ),
    ],
)
def test_a_non_ascii_csrf_token_is_refused_not_a_server_error(
    journey: Journey, tables: Snapshot, form: str
) -> None:
    # GIVEN a consent page shown for a pushed request
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    before = tables()
    # WHEN a form is posted with a non-ASCII token beside an ASCII cookie (the cookie parser drops
    # non-ASCII cookies, so only the form can carry one to the comparison)
    if form == "decision":
        fields = {"request_uri": journey.request_uri, "csrf_token": "ｔｏｋｅｎ", "action": "continue"}
        response = post_form(journey, "/authorize/decision", fields, Cookie="relay_csrf=an-ascii-cookie")
    else:
        fields = {"e": "1", "t": "x", "csrf_token": "ｔｏｋｅｎ"}
        response = post_form(
            journey, "/receipts/some-flow/revoke", fields, Cookie="relay_receipt_csrf=an-ascii-cookie"
        )
    # THEN the form is refused as forged (403), not answered with a 500, and nothing changes
    assert_error_page(response, 403, "csrf_token")
    assert tables() == before
