"""The resident's path in a real browser, through the demo partners: the interstitial, the sandbox
portal's card sign-in and consent, and back to the partner's page with the result or a clear
message. One stack for the session; the sandbox's scenarios and card locks are reset per test."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

RESULT_TIMEOUT_MS = 60_000  # the sandbox answers in seconds; the demo page waits for the delivery


def start_at_bank(page: Any, stack: dict[str, Any]) -> None:
    page.goto(stack["demo"]["bank"])
    expect(page.locator("h1")).to_contain_text("デモ銀行")
    page.locator("#import-income").click()
    expect(page.locator("h1")).to_have_text("マイナポータルからの情報提供の確認")


def start_at_health_app(page: Any, stack: dict[str, Any]) -> None:
    page.goto(stack["demo"]["health"])
    expect(page.locator("h1")).to_contain_text("デモ母子手帳アプリ")
    page.locator("#import-vaccinations").click()
    expect(page.locator("h1")).to_have_text("マイナポータルからの情報提供の確認")


def continue_to_portal(page: Any) -> None:
    page.get_by_role("button", name="マイナポータルへ進む").click()
    expect(page.locator("h1")).to_have_text("マイナンバーカードでログイン")


def sign_in(page: Any, persona: str, pin: str = "1234") -> None:
    page.get_by_label(persona).check()
    page.get_by_label("利用者証明用電子証明書の暗証番号（数字4桁）").fill(pin)
    page.get_by_role("button", name="ログイン").click()


def agree(page: Any) -> None:
    expect(page.locator("h1")).to_have_text("情報提供への同意")
    page.get_by_role("button", name="同意する").click()


def test_income_happy_path(page: Any, stack: dict[str, Any], sandbox_control: Any) -> None:
    start_at_bank(page, stack)
    expect(page.get_by_text("合計所得金額", exact=True)).to_be_visible()
    continue_to_portal(page)
    sign_in(page, "山田 太郎（会社員）")
    agree(page)
    result = page.locator("#result")
    expect(result).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    expect(result).to_contain_text("課税年度")
    expect(result).to_contain_text("2026")
    expect(result).to_contain_text("合計所得金額")


def test_vaccination_happy_path(page: Any, stack: dict[str, Any], sandbox_control: Any) -> None:
    start_at_health_app(page, stack)
    continue_to_portal(page)
    sign_in(page, "田中 由美（保護者・お子さまの予防接種）")
    agree(page)
    result = page.locator("#result")
    expect(result).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    expect(result).to_contain_text("日本脳炎")
    expect(result).to_contain_text("麻しん風しん混合")
    expect(result).not_to_contain_text("BCG")  # older than the 5-year window


def test_the_resident_cancels_at_the_interstitial(
    page: Any, stack: dict[str, Any], sandbox_control: Any
) -> None:
    start_at_bank(page, stack)
    page.get_by_role("button", name="キャンセル（情報を提供しない）").click()
    expect(page.locator("#error")).to_contain_text("キャンセル", timeout=RESULT_TIMEOUT_MS)


def test_three_wrong_pins_lock_the_card(page: Any, stack: dict[str, Any], sandbox_control: Any) -> None:
    start_at_bank(page, stack)
    continue_to_portal(page)
    for _ in range(2):
        sign_in(page, "鈴木 一郎（年金受給者）", "0000")
        expect(page.locator("#signin-error")).to_contain_text("暗証番号が違います")
    sign_in(page, "鈴木 一郎（年金受給者）", "0000")
    expect(page.locator("h1")).to_have_text("カードがロックされています")
    page.get_by_role("button", name="サービスに戻る").click()
    expect(page.locator("#error")).to_be_visible(timeout=RESULT_TIMEOUT_MS)


def test_an_expired_certificate_ends_on_a_clear_page(
    page: Any, stack: dict[str, Any], sandbox_control: Any
) -> None:
    start_at_bank(page, stack)
    continue_to_portal(page)
    sign_in(page, "小林 誠（証明書期限切れ）")
    expect(page.locator("#error")).to_be_visible(timeout=RESULT_TIMEOUT_MS)


def test_a_portal_outage_ends_on_a_clear_page(page: Any, stack: dict[str, Any], sandbox_control: Any) -> None:
    assert sandbox_control("/sandbox/scenario", {"scenario": "token-5xx"}).status_code == 200
    start_at_bank(page, stack)
    continue_to_portal(page)
    sign_in(page, "山田 太郎（会社員）")
    agree(page)
    expect(page.locator("#error")).to_contain_text("利用できません", timeout=RESULT_TIMEOUT_MS)


def test_the_receipt_lists_the_records_and_revocation_works(
    page: Any, stack: dict[str, Any], sandbox_control: Any
) -> None:
    # GIVEN a resident who kept the receipt link from the interstitial, and a slow municipality
    # (the slow-provider persona), so the delivery is still on its way when they change their mind
    start_at_bank(page, stack)
    receipt = page.get_by_role("link", name=re.compile("受付ページを開く")).get_attribute("href")
    assert receipt
    continue_to_portal(page)
    sign_in(page, "中村 翼（提供遅延）")
    expect(page.locator("h1")).to_have_text("情報提供への同意")
    # the bank's page then waits for the delivery; the relay's callback (a redirect on the way)
    # has answered by the time the receipt page is opened
    try:
        with page.expect_response(lambda r: "/portal/callback" in r.url, timeout=90_000) as callback:
            page.get_by_role("button", name="同意する").click(no_wait_after=True)
    except PlaywrightTimeoutError:
        pytest.fail(
            f"the relay's callback did not answer within 90 s; the stack's log:\n{stack['log_tail']()}"
        )
    assert callback.value.status == 303, stack["log_tail"]()
    assert "code=" in (callback.value.headers.get("location") or ""), stack["log_tail"]()
    # WHEN the resident opens the receipt page in another tab
    receipt_page = page.context.new_page()
    receipt_page.goto(receipt)
    expect(receipt_page.locator("h1")).to_have_text("受付ページ（やりとりの記録）")
    expect(receipt_page.locator("table")).to_contain_text("事業者が提供を求めました")
    revoke = receipt_page.get_by_role("button", name="提供を取り消す")
    # until the portal step has finished and the retrieval runs: a deadline, not a count of
    # reloads, since under `make test` the other xdist worker may be running the race tests
    deadline = time.monotonic() + 45
    while not revoke.count() and time.monotonic() < deadline:
        receipt_page.wait_for_timeout(500)
        receipt_page.reload()
    assert revoke.count(), f"no revoke button within 45 s; the stack's log:\n{stack['log_tail']()}"
    expect(receipt_page.locator("table")).to_contain_text("マイナポータルで同意しました")
    # AND revokes the delivery before the bank could pick it up
    revoke.click()
    # THEN it is revoked and on record, and the bank's page ends with a clear message
    expect(receipt_page.get_by_role("status")).to_contain_text("提供を取り消しました")
    expect(receipt_page.locator("table")).to_contain_text("取り消しました")
    expect(page.locator("#error")).to_be_visible(timeout=RESULT_TIMEOUT_MS + 30_000)


def test_the_interstitial_in_english(english_page: Any, stack: dict[str, Any], sandbox_control: Any) -> None:
    english_page.goto(stack["demo"]["bank"])
    english_page.locator("#import-income").click()
    expect(english_page.locator("h1")).to_have_text("Confirm sharing your Mynaportal data")
    expect(english_page.get_by_role("button", name="Continue to Mynaportal")).to_be_visible()
    expect(english_page.get_by_text("Total income", exact=True)).to_be_visible()


def test_a_phone_sized_journey(phone_page: Any, stack: dict[str, Any], sandbox_control: Any) -> None:
    start_at_bank(phone_page, stack)
    fits = phone_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert fits, "the interstitial scrolls sideways on a phone"
    continue_to_portal(phone_page)
    sign_in(phone_page, "山田 太郎（会社員）")
    agree(phone_page)
    expect(phone_page.locator("#result")).to_contain_text("課税年度", timeout=RESULT_TIMEOUT_MS)
