"""The resident's receipt: a capability link from the interstitial, the flow's records, a signed
copy with inclusion proofs against a signed tree head, and revocation before pickup."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from chalicelib import container
from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.domain import merkle
from chalicelib.domain.checkpoints import unb64
from chalicelib.domain.receipts import RECEIPT_LIFETIME
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_delivery import pick_up, run_due


def receipt_path(consent_page: str) -> str:
    match = re.search(r'href="(https://myna-relay\.test/receipts/[^"]+)"', consent_page)
    assert match, "the interstitial shows no receipt link"
    url = html.unescape(match.group(1))
    return url.removeprefix(ISSUER)


def through_token(journey: Journey, persona: str = "salaried") -> tuple[str, str]:
    """Push, show (keeping the receipt link), continue, portal, callback, token: (token, receipt path)."""
    assert journey.push().status_code == 201
    page = journey.show_consent()
    receipt = receipt_path(page.body.decode())
    journey.decide()
    journey.at_portal(persona)
    back = journey.callback()
    assert "receipts" not in back.headers["Location"]  # the link never reaches the partner
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    token = json.loads(journey.redeem(code).body)["access_token"]
    return token, receipt


def csrf_of(response: Any) -> tuple[str, str]:
    cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    token = re.search(r'name="csrf_token" value="([^"]+)"', response.body.decode()).group(1)  # type: ignore[union-attr]
    return cookie, token


def revoke(journey: Journey, receipt: str, *, cookie: str | None = None, csrf: str | None = None) -> Any:
    page = journey.client.http.get(receipt)
    # A page without the revoke form (nothing to revoke) gets a self-made matching pair, as a
    # determined resident could send: the refusal must come from the flow's state, not the form.
    page_cookie, page_csrf = csrf_of(page) if "csrf_token" in page.body.decode() else ("pair", "pair")
    query = {k: v[0] for k, v in parse_qs(urlsplit(receipt).query).items()}
    path = urlsplit(receipt).path + "/revoke"
    form = f"e={query['e']}&t={query['t']}&csrf_token={csrf if csrf is not None else page_csrf}"
    return journey.client.http.post(
        path,
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"relay_receipt_csrf={cookie if cookie is not None else page_cookie}",
        },
    )


def test_the_receipt_lists_the_flows_records_in_japanese(journey: Journey, clock: ShiftedClock) -> None:
    token, receipt = through_token(journey)
    run_due()
    pick_up(journey, token)
    page = journey.client.http.get(receipt)
    assert page.status_code == 200
    text = page.body.decode()
    for label in (
        "事業者が提供を求めました",
        "マイナポータルで同意しました",
        "事業者に提供しました",
        "アクメ銀行",
        "地方税関係情報",
    ):
        assert label in text
    assert "提供を取り消す" not in text  # picked up: nothing left to revoke
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_every_kind_of_record_has_a_label_in_both_languages() -> None:
    from chalicelib.domain.audit import AuditEvent
    from chalicelib.page_rendering import EVENT_LABELS

    assert set(EVENT_LABELS) == set(AuditEvent)
    assert all(ja and en for ja, en in EVENT_LABELS.values())


def receipt_rows(journey: Journey, receipt: str, lang: str = "ja") -> list[list[str]]:
    body = journey.client.http.get(f"{receipt}&lang={lang}").body.decode()
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], flags=re.S)
    return [[html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row)] for row in rows]


def test_the_receipt_speaks_japan_time_and_words_not_codes(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a resident who saw the interstitial and continued to the portal
    assert journey.push().status_code == 201
    receipt = receipt_path(journey.show_consent().body.decode())
    assert journey.decide().status_code == 303
    stored = [
        json.loads(item["document"]["S"])
        for item in dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"]
    ]
    in_japan = sorted(
        datetime.fromisoformat(record["occurred_at"]).astimezone(timezone(timedelta(hours=9)))
        for record in stored
    )
    # WHEN they open the receipt, in Japanese and in English
    ja, en = receipt_rows(journey, receipt, "ja"), receipt_rows(journey, receipt, "en")
    # THEN every time is Japan's (UTC + 9 h), and each outcome is a word, not a code
    assert [row[0] for row in ja] == [f"{t.year}年{t.month}月{t.day}日 {t:%H:%M}" for t in in_japan]
    assert [row[0] for row in en] == [f"{t.day} {t:%b} {t.year}, {t:%H:%M} JST" for t in in_japan]
    assert [row[4] for row in ja] == ["受付", "表示", "マイナポータルへ"]
    assert [row[4] for row in en] == ["Request received", "Shown", "Sent to Mynaportal"]
    assert [row[3] for row in en] == ["Local tax (income)"] * 3
    # AND each record says whether it is withheld from disclosure (不開示, 番号法 第23条)
    assert [row[5] for row in ja] == ["なし"] * 3
    assert [row[5] for row in en] == ["No"] * 3
    page = journey.client.http.get(receipt).body.decode()
    assert "UTC" not in page
    for code in ("pushed", "shown", "to_portal"):
        assert f"<td>{code}</td>" not in page


def test_reloading_the_interstitial_or_switching_its_language_records_it_once(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a resident who opened the interstitial
    assert journey.push().status_code == 201
    receipt = receipt_path(journey.show_consent().body.decode())
    token, cookie = journey.csrf_token, journey.csrf_cookie
    state_before = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    # WHEN their browser reloads it and switches its language back and forth
    for lang in (None, "en", "ja", None):
        assert journey.show_consent(lang, cookie=cookie).status_code == 200
        # THEN the page keeps the token it gave (and nothing is written)
        assert (journey.csrf_token, journey.csrf_cookie) == (token, cookie)
    assert dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"] == state_before
    # AND the receipt lists the page as shown once
    assert [row[1] for row in receipt_rows(journey, receipt)] == [
        "事業者が提供を求めました",
        "確認画面を表示しました",
    ]
    # AND the token is still good for one decision, and one only
    assert journey.decide("continue").status_code == 303
    assert journey.decide("continue").status_code == 400
    events = [
        i["event"]["S"] for i in dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"]
    ]
    assert sorted(events) == ["consent_shown", "continued", "request_pushed"]


def test_another_browser_gets_a_new_token_and_no_second_shown_record(
    journey: Journey, clock: ShiftedClock
) -> None:
    # GIVEN an interstitial opened in one browser
    assert journey.push().status_code == 201
    receipt = receipt_path(journey.show_consent().body.decode())
    first_token, first_cookie = journey.csrf_token, journey.csrf_cookie
    # WHEN it is opened where that browser's cookie is not (or a forged one is)
    assert journey.show_consent(cookie="forged").status_code == 200
    # THEN that page has a token of its own, the first one no longer decides, and nothing was recorded
    assert journey.csrf_token not in (first_token, "forged")
    assert journey.decide("continue", csrf=first_token, cookie=first_cookie).status_code == 403
    assert [row[1] for row in receipt_rows(journey, receipt)] == [
        "事業者が提供を求めました",
        "確認画面を表示しました",
    ]
    assert journey.decide("continue").status_code == 303


def test_the_receipt_of_a_flow_the_resident_abandoned_says_so(journey: Journey, clock: ShiftedClock) -> None:
    # GIVEN a resident who kept the receipt link, went to the portal and never came back
    assert journey.push().status_code == 201
    receipt = receipt_path(journey.show_consent().body.decode())
    assert journey.decide().status_code == 303
    journey.at_portal()
    clock.advance(minutes=18)  # the portal state's 15 minutes and the sweep's grace
    assert run_due() == {"abandoned:portal_state.expired": 1}
    # WHEN they open the receipt
    page = journey.client.http.get(receipt)
    # THEN it lists the records up to the abandonment, and offers nothing to revoke
    assert page.status_code == 200
    text = page.body.decode()
    assert "マイナポータルへ進みました" in text
    assert "手続きが完了しませんでした" in text
    assert "提供を取り消す" not in text


def test_the_receipt_speaks_english(journey: Journey, clock: ShiftedClock) -> None:
    _, receipt = through_token(journey)
    page = journey.client.http.get(receipt + "&lang=en").body.decode()
    assert "Exchange history" in page
    assert "You agreed at Mynaportal" in page


def test_the_resident_revokes_a_delivery_before_pickup(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a sealed delivery waiting for the partner
    token, receipt = through_token(journey)
    run_due()
    assert "提供を取り消す" in journey.client.http.get(receipt).body.decode()
    # WHEN the resident revokes it from the receipt page
    answer = revoke(journey, receipt)
    assert answer.status_code == 303
    assert "revoked=1" in answer.headers["Location"]
    # THEN the partner finds it revoked, the delivery and the token are gone, and it is on record
    assert pick_up(journey, token).status_code in (401, 410)
    items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith("DELIVERY#")]
    assert [flow_document(i)["access_token_hash"] for i in items if i["pk"]["S"].startswith("FLOW#")] == [
        None
    ]
    events = [
        i["event"]["S"] for i in dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"]
    ]
    assert "revoked" in events
    assert "提供を取り消しました" in journey.client.http.get(answer.headers["Location"]).body.decode()


def test_a_revocation_after_pickup_is_refused_with_a_clear_message(
    journey: Journey, clock: ShiftedClock
) -> None:
    token, receipt = through_token(journey)
    run_due()
    assert pick_up(journey, token).status_code == 200
    refused = revoke(journey, receipt)
    assert refused.status_code == 409
    page = refused.body.decode()
    assert "取り消せません" in page
    # AND the page says what failed and leads back to the receipt, not "start again"
    assert "<h1>取り消しできませんでした</h1>" in page
    back = re.search(r'<a href="([^"]+)">受付ページに戻る</a>', page)
    assert back is not None
    assert journey.client.http.get(html.unescape(back.group(1))).status_code == 200


def test_revocation_needs_the_csrf_token(journey: Journey, clock: ShiftedClock) -> None:
    token, receipt = through_token(journey)
    run_due()
    assert revoke(journey, receipt, cookie="forged").status_code == 403
    assert revoke(journey, receipt, csrf="forged").status_code == 403
    assert pick_up(journey, token).status_code == 200


@pytest.mark.parametrize("tamper", ["token", "expiry", "other-flow", "expired"])
def test_a_wrong_receipt_link_shows_nothing(journey: Journey, clock: ShiftedClock, tamper: str) -> None:
    _, receipt = through_token(journey)
    path, query = urlsplit(receipt).path, {k: v[0] for k, v in parse_qs(urlsplit(receipt).query).items()}
    if tamper == "token":
        query["t"] = query["t"][:-2] + ("AA" if not query["t"].endswith("AA") else "BB")
    elif tamper == "expiry":
        query["e"] = str(int(query["e"]) + 1)
    elif tamper == "other-flow":
        path = "/receipts/another-flow-id"
    else:
        clock.advance(days=31)
    page = journey.client.http.get(f"{path}?e={query['e']}&t={query['t']}")
    assert page.status_code == 404
    body = page.body.decode()
    assert "アクメ銀行" not in body
    assert "地方税関係情報" not in body


def test_a_signed_receipt_carries_inclusion_proofs_against_the_signed_tree_head(
    journey: Journey, clock: ShiftedClock
) -> None:
    # GIVEN a finished flow whose records a checkpoint has covered
    token, receipt = through_token(journey)
    run_due()
    pick_up(journey, token)
    clock.advance(minutes=2)
    checkpoint = container.get_container().checkpoints.checkpoint()
    assert checkpoint is not None
    # WHEN the resident downloads the signed receipt
    path, query = urlsplit(receipt).path, urlsplit(receipt).query
    answer = journey.client.http.get(f"{path}/signed?{query}")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/jose"
    # THEN it verifies with the served JWKS, and each record is proven in the signed tree
    jwks = KeySet.import_key_set(json.loads(journey.client.http.get("/.well-known/jwks.json").body))
    receipt_claims = json.loads(
        jws.deserialize_compact(answer.body.decode(), jwks, algorithms=["ES256"]).payload
    )
    assert receipt_claims["iss"] == ISSUER
    entries = receipt_claims["records"]
    assert len(entries) == 8
    for entry in entries:
        proof = entry["inclusion"]
        head = json.loads(
            jws.deserialize_compact(proof["signed_tree_head"], jwks, algorithms=["ES256"]).payload
        )
        assert head["tree_size"] == proof["tree_size"]
        leaf = merkle.leaf_hash(entry["document"].encode())
        path_nodes = [unb64(node) for node in proof["audit_path"]]
        assert merkle.verify_inclusion(
            leaf, proof["leaf_index"], proof["tree_size"], path_nodes, unb64(head["root"])
        )
        assert json.loads(entry["document"]) == entry["record"]
        # and a altered record would not verify
        altered = merkle.leaf_hash(entry["document"].replace("picked_up", "expired").encode() + b" ")
        assert not merkle.verify_inclusion(
            altered, proof["leaf_index"], proof["tree_size"], path_nodes, unb64(head["root"])
        )


def test_a_link_made_before_the_keyring_still_opens_until_it_expires(
    journey: Journey, clock: ShiftedClock, kms_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a flow whose consent page made this month's receipt key (and a keyring link)
    _, receipt = through_token(journey)
    flow_id = urlsplit(receipt).path.rsplit("/", 1)[1]

    def legacy_link(issued: datetime) -> str:
        """A link as the release before the keyring made it: KMS HMAC under the pseudonym key."""
        expires = int((issued + RECEIPT_LIFETIME).timestamp())
        mac = kms_client.generate_mac(
            KeyId=resources["RELAY_PSEUDONYM_KEY_ID"],
            Message=f"receipt:{flow_id}:{expires}".encode(),
            MacAlgorithm="HMAC_SHA_256",
        )["Mac"]
        return f"/receipts/{flow_id}?e={expires}&t={base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    # WHEN the resident opens a link made an hour before the upgrade, THEN it still opens
    assert journey.client.http.get(legacy_link(clock.now() - timedelta(hours=1))).status_code == 200
    # AND a KMS HMAC dated after this month's key existed is never asked of KMS: no receipt
    assert journey.client.http.get(legacy_link(clock.now())).status_code == 404
    # AND once 30 days have passed, the old link is dead like any other
    clock.advance(days=30)
    assert journey.client.http.get(legacy_link(clock.now() - timedelta(days=30, hours=1))).status_code == 404


@pytest.mark.parametrize(("withheld", "ja", "en"), [(True, "該当", "Yes"), (False, "なし", "No")])
def test_the_receipt_shows_the_withheld_from_disclosure_flag_in_both_languages(
    withheld: bool, ja: str, en: str
) -> None:
    from chalicelib.domain.audit import AuditEvent, AuditRecord
    from chalicelib.page_rendering import TEXT, receipt_row

    at = datetime(2026, 11, 27, 9, 41, tzinfo=UTC)
    record = AuditRecord(
        record_id="rec",
        occurred_at=at,
        event=AuditEvent.PICKED_UP,
        interaction_id="flow",
        requester_id="acme-bank",
        dataset="local_tax",
        dataset_code="TM000000000002",
        dataset_name_ja="地方税関係情報",
        purpose_id="loan-screening",
        requested_at=at,
        outcome="provided",
        withheld_from_disclosure=withheld,
    )
    assert receipt_row(record, "ja")["withheld"] == ja
    assert receipt_row(record, "en")["withheld"] == en
    assert (TEXT["ja"]["col_withheld"], TEXT["en"]["col_withheld"]) == ("不開示", "Withheld from disclosure")


def test_a_record_stored_before_the_withheld_flag_reads_as_not_withheld() -> None:
    from chalicelib.domain.audit import AuditRecord

    legacy = (
        '{"record_id":"rec","occurred_at":"2026-11-27T09:41:02Z","event":"picked_up",'
        '"interaction_id":"flow","requester_id":"acme-bank","dataset":"local_tax",'
        '"dataset_code":"TM000000000002","dataset_name_ja":"地方税関係情報","purpose_id":"loan-screening",'
        '"requested_at":"2026-11-27T09:40:41Z","outcome":"provided","counts":{}}'
    )
    assert AuditRecord.model_validate_json(legacy).withheld_from_disclosure is False
