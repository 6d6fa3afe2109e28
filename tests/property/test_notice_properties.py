"""Mynaportal's completion notice (IF001-05) as a property: whatever header values the sandbox portal
could put in a notice, the relay answers with the echo the sandbox itself accepts, and a notice
for no known process changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import inferred as sandbox_inferred
from sandbox.portal import _notice_answer_problem
from sandbox.telegrams import CommonHeader
from tests.property.support import PROPERTY

# What the sandbox's telegram model admits for the values a notice repeats (the telegramId and
# mode the relay sent, the processId the portal gave), in a notice as the sandbox sends it.
notice_headers = st.builds(
    CommonHeader,
    telegramId=st.text(max_size=64) | st.from_regex(sandbox_inferred.TELEGRAM_ID_PATTERN, fullmatch=True),
    telegramType=st.just(sandbox_inferred.NOTICE_TELEGRAM),
    mode=st.sampled_from(sorted(sandbox_inferred.ACCEPTED_MODES)) | st.text(max_size=8),
    processId=st.text(max_size=64),
    errorCode=st.just(""),
)


def state_items(dynamodb_client: Any, table: str) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in dynamodb_client.scan(TableName=table)["Items"])


@pytest.fixture
def unreachable_portal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Portal endpoints the relay is configured with but that a notice must never make it call."""
    for name, path in {
        "RELAY_PORTAL_AUTHORIZE_URL": "/online-authorization-web/oauth/authorize",
        "RELAY_PORTAL_TOKEN_URL": "/online-authorization-web/oauth/token",
        "RELAY_PORTAL_REQUEST_URL": "/online-resource-web/request",
        "RELAY_PORTAL_RESULT_URL": "/online-resource-web/result",
    }.items():
        monkeypatch.setenv(name, f"http://127.0.0.1:9{path}")  # port 9 (discard): nothing listens


def test_every_notice_the_sandbox_can_send_gets_the_echo_it_expects_and_changes_nothing(
    unreachable_portal: None, client: Any, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    before = state_items(dynamodb_client, resources["RELAY_STATE_TABLE"])

    @settings(PROPERTY, max_examples=60)
    @given(notice_headers)
    def echoed(header: CommonHeader) -> None:
        # GIVEN a notice exactly as the sandbox's sender writes it (UTF-8 JSON, not ASCII-escaped)
        sent = header.model_dump()
        # WHEN it reaches the relay
        answer = client.http.post(
            "/portal/notice",
            body=json.dumps({"commonHeader": sent}, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )
        # THEN the sandbox's own check of the answer finds nothing wrong, and the echo is exact
        assert (answer.status_code, answer.headers["Content-Type"]) == (200, "application/json")
        body = json.loads(answer.body)
        assert _notice_answer_problem(answer.status_code, body, sent) is None
        assert body == {"commonHeader": {**sent, "telegramType": sandbox_inferred.NOTICE_ANSWER_TELEGRAM}}

    echoed()
    # AND no notice changed anything
    assert state_items(dynamodb_client, resources["RELAY_STATE_TABLE"]) == before
