"""Keyboard only: a resident who cannot use a pointer completes the interstitial (continue, or
cancel) and revokes from the receipt page with Tab and Enter, and sees where the focus is at
every stop (WCAG 2.1.1 Keyboard, 2.4.7 Focus Visible). The real app in Chromium
(tests/a11y/gallery.py); the sandbox portal is a real server on loopback."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from playwright.sync_api import expect

from chalicelib.api.pages import TEXT
from tests.a11y.gallery import RelayInBrowser, Variant, browsing
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_delivery import run_due
from tests.functional.test_receipts import through_token

MAX_TAB_STOPS = 15
FOCUSED = r"""() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  return {
    name: (element.getAttribute('aria-label') || element.innerText || element.tagName).trim().split('\n')[0],
    tag: element.tagName.toLowerCase(),
    outlined: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
  };
}"""


def tab_to(page: Any, name: str) -> list[dict[str, Any]]:
    """Tab until the element named ``name`` has the focus; every stop on the way, that one included."""
    stops: list[dict[str, Any]] = []
    for _ in range(MAX_TAB_STOPS):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(FOCUSED))
        if stops[-1]["name"] == name:
            return stops
    raise AssertionError(f"{name!r} not reached in {MAX_TAB_STOPS} Tab presses: {stops}")


def show_interstitial(page: Any, journey: Journey) -> None:
    assert journey.push().status_code == 201
    page.goto(
        f"/authorize?{urlencode({'client_id': journey.partner.client_id, 'request_uri': journey.request_uri})}"
    )


def test_the_resident_continues_to_the_portal_with_the_keyboard_alone(
    browser: Any, journey: Journey, clock: ShiftedClock
) -> None:
    t = TEXT["ja"]
    with browsing(browser, RelayInBrowser(journey.client), Variant("ja", "desktop")) as page:
        # GIVEN the interstitial
        show_interstitial(page, journey)
        # WHEN the resident tabs to the continue button and presses Enter
        stops = tab_to(page, t["continue"])
        page.keyboard.press("Enter")
        # THEN every stop on the way showed the focus, and Mynaportal's sign-in page is open
        assert all(stop["outlined"] for stop in stops), stops
        expect(page.locator("h1")).to_have_text("マイナンバーカードでログイン")
        assert page.url.startswith(journey.sandbox.app_url)


def test_the_resident_cancels_with_the_keyboard_alone(
    browser: Any, journey: Journey, clock: ShiftedClock
) -> None:
    t = TEXT["en"]
    relay = RelayInBrowser(journey.client)
    with browsing(browser, relay, Variant("en", "desktop")) as page:
        # GIVEN the interstitial, in English
        show_interstitial(page, journey)
        # WHEN the resident tabs past the continue button to cancel and presses Enter
        stops = tab_to(page, t["cancel"])
        page.keyboard.press("Enter")
        # THEN the partner is told that the resident declined
        expect(page.locator("h1")).to_have_text("Partner callback")
        assert [stop["name"] for stop in stops][-2:] == [t["continue"], t["cancel"]]
        assert all(stop["outlined"] for stop in stops), stops
        query = parse_qs(urlsplit(relay.partner_requests[-1]).query)
        assert query["error"] == ["access_denied"]
        assert query["state"] == [journey.state]


def test_the_resident_revokes_from_the_receipt_page_with_the_keyboard_alone(
    browser: Any, journey: Journey, clock: ShiftedClock
) -> None:
    t = TEXT["ja"]
    # GIVEN a delivery waiting for the partner, and its receipt page open
    _, receipt = through_token(journey)
    run_due()
    with browsing(browser, RelayInBrowser(journey.client), Variant("ja", "desktop")) as page:
        page.goto(receipt)
        # WHEN the resident tabs to the revoke button (past the scrollable table) and presses Enter
        stops = tab_to(page, t["revoke_button"])
        page.keyboard.press("Enter")
        # THEN the delivery is revoked and the page says so
        expect(page.get_by_role("status")).to_have_text(t["revoked_notice"])
        expect(page.locator("table")).to_contain_text("取り消しました")
        assert all(stop["outlined"] for stop in stops), stops
