"""IF001-04/05/06 in the sandbox: telegrams, asynchronous results, data shape, notices, history."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sandbox.clock import ManualClock
from sandbox.portal import Portal, Timing
from sandbox.scenarios import Scenario
from tests.sandbox.conftest import (
    VACCINATION_SERVICE,
    ZERO,
    NoticeReceiver,
    decoded,
    fetch,
    obtain_token,
    request_body,
    result_body,
    start_retrieval,
    telegram_id,
)

SLOW = Timing(
    result_delay_s=30, slow_result_delay_s=300, notice_delay_s=1, duplicate_notice_gap_s=5, hang_s=0
)


def header_of(answer: object) -> dict[str, str]:
    return answer.body["commonHeader"]  # type: ignore[attr-defined, no-any-return]


# -- IF001-04 request -------------------------------------------------------------------------------------


def test_a_valid_request_issues_a_process_id(portal: Portal) -> None:
    token = obtain_token(portal)
    tid = telegram_id()
    answer = portal.request(f"Bearer {token}", request_body(tid))
    header = header_of(answer)
    assert answer.status == 200
    assert header["telegramId"] == tid
    assert header["telegramType"] == "IFA0301-S01"
    assert header["errorCode"] == ""
    assert header["processId"].startswith("PR")


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer unknown", "Basic abc"])
def test_a_request_without_a_valid_bearer_token_is_unauthorized(
    portal: Portal, authorization: str | None
) -> None:
    answer = portal.request(authorization, request_body(telegram_id()))
    assert (answer.status, header_of(answer)["errorCode"]) == (401, "EE0002")


def test_an_expired_token_is_unauthorized(portal: Portal, clock: ManualClock) -> None:
    token = obtain_token(portal)
    clock.advance(900)
    assert portal.request(f"Bearer {token}", request_body(telegram_id())).status == 401


@pytest.mark.parametrize(
    ("tid", "inquiry", "header"),
    [
        ("TL-00000001-261127090000-0001x", "Date=20261127", {}),
        ("TL-00000009-261127090000-0001", "Date=20261127", {}),  # another provider's digits
        ("TL-00000001-261399090000-0001", "Date=20261127", {}),  # month 13
        ("TL-00000001-261127090000-0002", "Date=2026-11-27", {}),
        ("TL-00000001-261127090000-0003", "Date=20260230", {}),
        ("TL-00000001-261127090000-0004", "Date=20261128", {}),  # the future
        ("TL-00000001-261127090000-0005", "Latest", {}),
        ("TL-00000001-261127090000-0006", "Date=20261127", {"telegramType": "IFA0303-R01"}),
        ("TL-00000001-261127090000-0007", "Date=20261127", {"mode": "2"}),
        ("TL-00000001-261127090000-0008", "Date=20261127", {"processId": "PR1"}),
        ("TL-00000001-261127090000-0009", "Date=20261127", {"errorCode": "E"}),
    ],
)
def test_a_malformed_request_telegram_is_refused_and_changes_nothing(
    portal: Portal, tid: str, inquiry: str, header: dict[str, str]
) -> None:
    token = obtain_token(portal)
    answer = portal.request(f"Bearer {token}", request_body(tid, inquiry, **header))
    assert (answer.status, header_of(answer)["errorCode"]) == (400, "EE0001")
    assert portal.history() == []


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"commonHeader": {}}', b'{"extra": 1}'])
def test_a_body_that_is_not_a_request_telegram_is_malformed(portal: Portal, body: bytes) -> None:
    answer = portal.request(f"Bearer {obtain_token(portal)}", body)
    assert (answer.status, header_of(answer)["errorCode"]) == (400, "EE0001")


def test_a_telegram_id_is_accepted_once(portal: Portal) -> None:
    token = obtain_token(portal)
    tid = telegram_id()
    assert portal.request(f"Bearer {token}", request_body(tid)).status == 200
    again = portal.request(f"Bearer {token}", request_body(tid))
    assert (again.status, header_of(again)["errorCode"]) == (409, "EE0003")


def test_a_refused_request_does_not_use_up_its_telegram_id(portal: Portal) -> None:
    token = obtain_token(portal)
    tid = telegram_id()
    assert portal.request(f"Bearer {token}", request_body(tid, "Date=bad")).status == 400
    assert portal.request(f"Bearer {token}", request_body(tid)).status == 200


# -- IF001-06 result -----------------------------------------------------------------------------------


def test_result_says_still_processing_until_the_data_is_ready(
    make_portal: Callable[..., Portal], clock: ManualClock
) -> None:
    portal = make_portal(SLOW)
    retrieval = start_retrieval(portal)
    early = fetch(portal, retrieval)
    assert header_of(early)["errorCode"] == "EW0001"
    assert "selfPersonalDataProvisionInfo" not in early.body
    clock.advance(30)
    ready = fetch(portal, retrieval)
    assert header_of(ready)["errorCode"] == ""
    assert header_of(ready)["telegramType"] == "IFA0303-S01"
    assert decoded(ready)


def test_self_personal_data_is_a_json_string_keyed_by_municipality_dataset_and_japanese_field(
    portal: Portal,
) -> None:
    data = decoded(fetch(portal, start_retrieval(portal, "salaried")))
    assert data == [{"神奈川県川崎市": {"地方税関係情報": [data[0]["神奈川県川崎市"]["地方税関係情報"][0]]}}]
    record = data[0]["神奈川県川崎市"]["地方税関係情報"][0]
    assert record["課税年度"] == "2026"
    assert record["給与収入額"] == "5200000"


@pytest.mark.parametrize(
    ("inquiry", "municipality", "fiscal_year"),
    [("Date=20260531", "東京都世田谷区", "2025"), ("Date=20260601", "神奈川県横浜市", "2026")],
)
def test_local_tax_switches_fiscal_year_and_municipality_in_june(
    portal: Portal, inquiry: str, municipality: str, fiscal_year: str
) -> None:
    data = decoded(fetch(portal, start_retrieval(portal, "moved", inquiry=inquiry)))
    assert list(data[0]) == [municipality]
    assert data[0][municipality]["地方税関係情報"][0]["課税年度"] == fiscal_year


@pytest.mark.parametrize(
    ("inquiry", "dates"),
    [
        ("Date=20261127", ["20220912", "20221010", "20250520", "20260418"]),
        ("Date=20230101", ["20190812", "20190605", "20200610", "20200515", "20220912", "20221010"]),
    ],
)
def test_vaccination_records_only_of_the_five_years_before_the_inquiry(
    portal: Portal, inquiry: str, dates: list[str]
) -> None:
    data = decoded(fetch(portal, start_retrieval(portal, "parent-vaccination", VACCINATION_SERVICE, inquiry)))
    records = data[0]["東京都練馬区"]["予防接種関係情報"]
    assert [record["接種日"] for record in records] == dates


def test_a_service_receives_only_its_fixed_items(portal: Portal) -> None:
    data = decoded(fetch(portal, start_retrieval(portal, "parent-vaccination", VACCINATION_SERVICE)))
    assert all(set(entry[next(iter(entry))]) == {"予防接種関係情報"} for entry in data)


def test_no_data_is_an_empty_list(portal: Portal) -> None:
    assert decoded(fetch(portal, start_retrieval(portal, "no-data"))) == []
    assert [record.outcome for record in portal.history()] == ["no_data"]


def test_the_individual_number_persona_carries_valid_check_digits(portal: Portal) -> None:
    payload = fetch(portal, start_retrieval(portal, "individual-number")).body[
        "selfPersonalDataProvisionInfo"
    ]
    text = payload["selfPersonalData"]
    assert "621498320257" in text
    assert "1234 5678 9018" in text
    assert "6214-9832-0257" in text


def test_result_for_an_unknown_or_foreign_process_reveals_nothing(portal: Portal) -> None:
    mine = start_retrieval(portal, "salaried")
    other = start_retrieval(portal, "pensioner")
    for authorization, body in [
        (f"Bearer {mine.token}", result_body(mine.telegram_id, "PRUNKNOWN")),
        (f"Bearer {mine.token}", result_body(other.telegram_id, other.process_id)),
        (f"Bearer {mine.token}", result_body(telegram_id(), mine.process_id)),
        (f"Bearer {mine.token}", result_body(mine.telegram_id, mine.process_id, mode="2")),
    ]:
        answer = portal.result(authorization, body)
        assert (answer.status, header_of(answer)["errorCode"]) == (404, "EE0004")
        assert "selfPersonalDataProvisionInfo" not in answer.body


def test_result_with_a_wrong_telegram_type_is_malformed(portal: Portal) -> None:
    retrieval = start_retrieval(portal)
    body = result_body(retrieval.telegram_id, retrieval.process_id, telegramType="IFA0301-R01")
    assert header_of(portal.result(f"Bearer {retrieval.token}", body))["errorCode"] == "EE0001"


# -- IF001-05 completion notice ------------------------------------------------------------------------------


def test_a_notice_is_posted_with_the_common_header_and_accepted_on_an_echo(
    portal: Portal, receiver: NoticeReceiver
) -> None:
    retrieval = start_retrieval(portal)
    (attempted,) = portal.deliver_due_notices()
    assert attempted.delivered
    (notice,) = receiver.received
    assert notice["url"] == "http://127.0.0.1:8000/portal/notice"
    assert notice["commonHeader"] == {
        "telegramId": retrieval.telegram_id,
        "telegramType": "IFA0302-R01",
        "mode": "1",
        "processId": retrieval.process_id,
        "errorCode": "",
    }
    assert portal.deliver_due_notices() == []


def test_a_failed_notice_is_retried_with_backoff_until_echoed(
    portal: Portal, receiver: NoticeReceiver, clock: ManualClock
) -> None:
    # GIVEN a relay that first fails, then answers without the echo, then accepts
    receiver.answers = ["500", "down", "wrong-type", "ok"]
    start_retrieval(portal)
    # WHEN notices are delivered as time passes
    assert portal.deliver_due_notices()[0].last_error == "HTTP 500"
    assert portal.deliver_due_notices() == []  # not due again yet: backoff 2 s
    clock.advance(2)
    assert portal.deliver_due_notices()[0].last_error == "ConnectionRefusedError"
    clock.advance(4)
    assert "telegramType" in (portal.deliver_due_notices()[0].last_error or "")
    clock.advance(8)
    (last,) = portal.deliver_due_notices()
    # THEN the fourth attempt succeeds
    assert (last.delivered, last.attempts) == (True, 4)
    assert len(receiver.received) == 4


def test_a_notice_is_abandoned_after_the_last_attempt(
    portal: Portal, receiver: NoticeReceiver, clock: ManualClock
) -> None:
    receiver.answers = ["500"] * 10
    start_retrieval(portal)
    for _ in range(10):
        portal.deliver_due_notices()
        clock.advance(600)
    (notice,) = portal.notices()
    assert (notice.abandoned, notice.attempts) == (True, 6)


# -- scenarios -----------------------------------------------------------------------------------------


def test_never_notifies(portal: Portal) -> None:
    portal.set_scenario(Scenario.NEVER_NOTIFIES)
    start_retrieval(portal)
    assert portal.notices() == []


def test_notifies_before_the_result_is_ready(
    make_portal: Callable[..., Portal], receiver: NoticeReceiver
) -> None:
    portal = make_portal(SLOW)
    portal.set_scenario(Scenario.NOTIFIES_EARLY)
    retrieval = start_retrieval(portal)
    assert len(portal.deliver_due_notices()) == 1
    assert header_of(fetch(portal, retrieval))["errorCode"] == "EW0001"


def test_duplicate_notices(make_portal: Callable[..., Portal], clock: ManualClock) -> None:
    portal = make_portal(SLOW)
    portal.set_scenario(Scenario.DUPLICATE_NOTICES)
    retrieval = start_retrieval(portal)
    clock.advance(40)
    notices = portal.deliver_due_notices()
    assert [n.process_id for n in notices] == [retrieval.process_id, retrieval.process_id]


def test_slow_provider_takes_minutes(make_portal: Callable[..., Portal], clock: ManualClock) -> None:
    portal = make_portal(SLOW)
    retrieval = start_retrieval(portal, "slow-provider")  # the persona's own scenario
    clock.advance(299)
    assert header_of(fetch(portal, retrieval))["errorCode"] == "EW0001"
    clock.advance(1)
    assert decoded(fetch(portal, retrieval))


def test_a_test_override_beats_the_personas_scenario(
    make_portal: Callable[..., Portal], clock: ManualClock
) -> None:
    portal = make_portal(SLOW)
    portal.set_scenario(Scenario.NORMAL, persona="slow-provider")
    retrieval = start_retrieval(portal, "slow-provider")
    clock.advance(30)
    assert decoded(fetch(portal, retrieval))


@pytest.mark.parametrize(
    ("scenario", "step"),
    [
        (Scenario.TOKEN_5XX, "token"),
        (Scenario.TOKEN_TIMEOUT, "token"),
        (Scenario.REQUEST_5XX, "request"),
        (Scenario.REQUEST_TIMEOUT, "request"),
        (Scenario.RESULT_5XX, "result"),
        (Scenario.RESULT_TIMEOUT, "result"),
    ],
)
def test_a_counted_fault_breaks_only_its_step_and_then_clears(
    portal: Portal, scenario: Scenario, step: str
) -> None:
    # GIVEN one faulty call at one step
    portal.set_scenario(scenario, times=1)
    expected = "5xx" if scenario.value.endswith("5xx") else "timeout"
    from tests.sandbox.conftest import obtain_code, token_form

    code = obtain_code(portal)
    answer = portal.token(token_form(code), client_provider=None, tls=False)
    if step == "token":
        # THEN that call fails without using up the code, and the retry succeeds
        assert answer.fault == expected
        answer = portal.token(token_form(code), client_provider=None, tls=False)
    token = answer.body["access_token"]
    tid = telegram_id()
    started = portal.request(f"Bearer {token}", request_body(tid))
    if step == "request":
        assert started.fault == expected
        assert portal.history() == []
        started = portal.request(f"Bearer {token}", request_body(tid))
    process_id = started.body["commonHeader"]["processId"]
    fetched = portal.result(f"Bearer {token}", result_body(tid, process_id))
    if step == "result":
        assert fetched.fault == expected
        fetched = portal.result(f"Bearer {token}", result_body(tid, process_id))
    assert fetched.fault is None
    assert decoded(fetched)


def test_an_uncounted_fault_persists(portal: Portal) -> None:
    portal.set_scenario(Scenario.RESULT_5XX)
    retrieval = start_retrieval(portal)
    assert all(fetch(portal, retrieval).fault == "5xx" for _ in range(3))


def test_malformed_json(portal: Portal) -> None:
    portal.set_scenario(Scenario.MALFORMED_JSON)
    payload = fetch(portal, start_retrieval(portal)).body["selfPersonalDataProvisionInfo"]["selfPersonalData"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(payload)


def test_error_code(portal: Portal) -> None:
    portal.set_scenario(Scenario.ERROR_CODE)
    answer = fetch(portal, start_retrieval(portal))
    assert header_of(answer)["errorCode"] == "EE0100"
    assert "selfPersonalDataProvisionInfo" not in answer.body
    assert [record.outcome for record in portal.history()] == ["failed"]


def test_oversized_payload(make_portal: Callable[..., Portal]) -> None:
    portal = make_portal(ZERO)
    portal.set_scenario(Scenario.OVERSIZED_PAYLOAD)
    payload = fetch(portal, start_retrieval(portal)).body["selfPersonalDataProvisionInfo"]["selfPersonalData"]
    assert len(payload.encode()) > portal.timing.oversized_bytes
    assert json.loads(payload)


def test_a_scenario_for_an_unknown_persona_is_refused(portal: Portal) -> None:
    with pytest.raises(KeyError):
        portal.set_scenario(Scenario.ERROR_CODE, persona="nobody")


# -- provision history -----------------------------------------------------------------------------------


def test_history_records_the_request_then_the_provision(
    make_portal: Callable[..., Portal], clock: ManualClock
) -> None:
    portal = make_portal(SLOW)
    retrieval = start_retrieval(portal, "salaried")
    (pending,) = portal.history()
    assert (pending.outcome, pending.provided_at) == ("pending", None)
    clock.advance(30)
    fetch(portal, retrieval)
    fetch(portal, retrieval)  # fetching again records nothing new
    (record,) = portal.history()
    assert record.outcome == "provided"
    assert record.requester == "myna-relay（所得・個人住民税）"
    assert record.requester_client_id == "SP00000001_AA0001"
    assert record.provider == "神奈川県川崎市"
    assert (record.item, record.item_code) == ("地方税関係情報", "TM000000000002")
    assert record.provided_at is not None
    assert record.provided_at > record.requested_at
    assert record.process_id == retrieval.process_id
