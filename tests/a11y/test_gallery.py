"""The gallery: every page a resident can see, in Japanese and English, at a desktop and a phone
width, rendered by the real app in Chromium with a Japanese font; a full-page picture of each,
an index naming page, language and width, and axe-core's WCAG 2.0/2.1 A and AA rules run in each
(zero violations). `make screenshots` runs this test alone and writes to build/screenshots/."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.api.pages import TEXT
from chalicelib.domain.authorization import AuthorizationService
from chalicelib.domain.errors import DependencyUnavailable
from tests.a11y.axe import install
from tests.a11y.gallery import (
    VARIANTS,
    Gallery,
    RelayInBrowser,
    Variant,
    browsing,
    gallery_dir,
    require_japanese_font,
)
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_delivery import pick_up, run_due
from tests.functional.test_receipts import through_token

STALE_REQUEST_URI = "urn:ietf:params:oauth:request_uri:expired-or-already-used"


def heading(page: Any) -> str:
    return str(page.locator("h1").inner_text()).strip()


def interstitials(gallery: Gallery, page: Any, variant: Variant, journeys: dict[str, Journey]) -> None:
    for key, journey in journeys.items():
        partner_id, purpose_id = key.split("/")
        purpose = next(p for p in journey.partner.document()["purposes"] if p["id"] == purpose_id)
        assert journey.push(purpose=purpose_id, scope=purpose["dataset"]).status_code == 201
        query = urlencode({"client_id": partner_id, "request_uri": journey.request_uri})
        answer = page.goto(f"/authorize?{query}")
        assert heading(page) == TEXT[variant.lang]["heading"]
        gallery.take(
            page,
            f"Interstitial: {partner_id}, purpose {purpose_id}",
            f"interstitial-{partner_id}-{purpose_id}",
            variant,
            answer.status,
        )


def error_pages(
    gallery: Gallery, page: Any, variant: Variant, journey: Journey, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = TEXT[variant.lang]
    # a link that cannot be used (expired, used, or not a request at all)
    answer = page.goto(
        f"/authorize?{urlencode({'client_id': journey.partner.client_id, 'request_uri': STALE_REQUEST_URI})}"
    )
    assert (answer.status, heading(page)) == (400, t["error_heading"])
    gallery.take(page, "Error: invalid or expired link", "error-invalid", variant, answer.status)
    # the form's cookie lost (a cleared browser, another window): the decision is refused
    assert journey.push().status_code == 201
    page.goto(
        f"/authorize?{urlencode({'client_id': journey.partner.client_id, 'request_uri': journey.request_uri})}"
    )
    page.context.clear_cookies()
    with page.expect_response(lambda r: r.url.endswith("/authorize/decision")) as decision:
        page.get_by_role("button", name=t["continue"]).click()
    assert decision.value.status == 403
    gallery.take(page, "Error: the form could not be verified (CSRF)", "error-csrf", variant, 403)
    # the state table unavailable while the interstitial is asked for
    assert journey.push().status_code == 201
    with monkeypatch.context() as outage:

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise DependencyUnavailable("dynamodb unavailable", check="dynamodb")

        outage.setattr(AuthorizationService, "consent_view", unavailable)
        answer = page.goto(
            f"/authorize?{urlencode({'client_id': journey.partner.client_id, 'request_uri': journey.request_uri})}"
        )
    assert (answer.status, heading(page)) == (503, t["error_heading"])
    gallery.take(page, "Error: service unavailable", "error-unavailable", variant, answer.status)
    # a receipt link that shows nothing (tampered, or past its 30 days)
    answer = page.goto("/receipts/no-such-flow?e=1&t=none")
    assert answer.status == 404
    gallery.take(page, "Error: receipt link not valid", "error-receipt-not-found", variant, answer.status)


def receipts(gallery: Gallery, page: Any, variant: Variant, journey: Journey) -> None:
    t = TEXT[variant.lang]
    # a delivery waiting for the bank: the records so far, and the revoke button
    _, receipt = through_token(journey)
    run_due()
    page.goto(receipt)
    assert heading(page) == t["receipt_heading"]
    gallery.take(page, "Receipt: records, delivery waiting (revocable)", "receipt-revocable", variant, 200)
    page.get_by_role("button", name=t["revoke_button"]).click()
    page.get_by_role("status").wait_for()
    gallery.take(page, "Receipt: revocation done", "receipt-revoked", variant, 200)
    # another delivery, picked up while the resident had its receipt open: revoking is refused
    token, receipt = through_token(journey)
    run_due()
    page.goto(receipt)
    assert pick_up(journey, token).status_code == 200
    with page.expect_response(lambda r: r.url.endswith("/revoke")) as refused:
        page.get_by_role("button", name=t["revoke_button"]).click()
    assert refused.value.status == 409
    gallery.take(page, "Error: revocation refused (already picked up)", "error-revoke", variant, 409)
    page.goto(receipt)
    assert t["not_revocable"] in page.content()
    gallery.take(page, "Receipt: records, delivery picked up", "receipt-picked-up", variant, 200)


def test_every_page_a_resident_can_see_is_photographed_and_passes_axe(
    browser: Any,
    journey: Journey,
    clock: ShiftedClock,
    demo_journeys: dict[str, Journey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the real app behind Chromium, a Japanese font, the demo partners' purposes, and axe-core
    require_japanese_font()
    gallery = Gallery(gallery_dir(), install())
    relay = RelayInBrowser(journey.client)
    bank = demo_journeys["demo-bank/loan-screening"]
    # WHEN a resident in each language, on a desktop and on a phone, meets every page
    try:
        for variant in VARIANTS:
            with browsing(browser, relay, variant) as page:
                interstitials(gallery, page, variant, demo_journeys)
                receipts(gallery, page, variant, bank)
                error_pages(gallery, page, variant, bank, monkeypatch)
    finally:
        index = gallery.write_index()  # what was seen, also when a page could not be reached
    # THEN every page is in the gallery, and axe finds nothing in any of them
    assert len(gallery.shots) == len(VARIANTS) * (len(demo_journeys) + 8), index
    found = {shot.picture: shot.violations for shot in gallery.shots if shot.violations}
    assert not found, f"axe violations (details in {index.parent / 'axe.json'}): " + "; ".join(
        f"{picture}: {', '.join(v['id'] for v in violations)}" for picture, violations in found.items()
    )
