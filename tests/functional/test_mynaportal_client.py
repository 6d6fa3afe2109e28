"""The relay's Mynaportal client against the sandbox portal, in-process, over mutual TLS on loopback:
IF001-03 (token), IF001-04 (request), IF001-06 (result), what is retried and what is not, and how
each failure is named."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import date, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.adapters import mynaportal_inferred as inferred
from chalicelib.adapters.mynaportal import (
    IF_REQUEST,
    IF_RESULT,
    MynaportalClient,
    PortalClientConfig,
    PortalEndpoints,
)
from chalicelib.domain.portal import (
    PortalAuthorizationFailed,
    PortalError,
    PortalProcess,
    PortalProtocolError,
    PortalRejected,
    PortalToken,
    PortalUnavailable,
    ResultPending,
    ResultReady,
)
from sandbox.clock import ManualClock
from sandbox.portal import ConsentPage, Redirect, ServiceRegistration, SignInPage, Timing
from sandbox.scenarios import Scenario
from sandbox.server import DETERMINISTIC_TIMING, SandboxServer

CLIENT_ID = "SP00000001_AA0001"
REDIRECT_URI = "http://127.0.0.1:8000/portal/callback"
SERVICE = ServiceRegistration(
    client_id=CLIENT_ID,
    name="myna-relay（所得・個人住民税）",
    redirect_uri=REDIRECT_URI,
    notice_url="http://127.0.0.1:8000/portal/notice",
    items=("地方税関係情報",),
)
# An inquiry date in the past: the sandbox's manual clock starts at the real time now.
INQUIRY_DATE = date(2026, 11, 27)
JST = timezone(timedelta(hours=9), "JST")


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Callable[..., SandboxServer]]:
    servers: list[SandboxServer] = []

    def start(timing: Timing = DETERMINISTIC_TIMING) -> SandboxServer:
        server = SandboxServer((SERVICE,), tls_dir=tmp_path / "tls", deterministic=True, timing=timing)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(start_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    return start_sandbox()


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays the client asked for (it is given this list's append instead of sleeping)."""
    return []


def config_for(server: SandboxServer, **overrides: Any) -> PortalClientConfig:
    assert server.tls is not None
    settings: dict[str, Any] = {
        "client_cert": str(server.tls.client_cert),
        "client_key": str(server.tls.client_key),
        "ca_bundle": str(server.tls.ca_cert),
        **overrides,
    }
    return PortalClientConfig(PortalEndpoints(**server.endpoints()), **settings)


def client_for(server: SandboxServer, sleeps: list[float], **overrides: Any) -> MynaportalClient:
    return MynaportalClient(config_for(server, **overrides), sleep=sleeps.append)


def portal_code(server: SandboxServer, persona: str = "salaried") -> str:
    """What the resident's browser does at the portal (IF001-01, sign-in, IF001-02)."""
    page = server.portal.authorize(
        {
            "response_type": ["code"],
            "client_id": [CLIENT_ID],
            "redirect_uri": [REDIRECT_URI],
            "state": ["s-1"],
            "login_type": [inferred.LOGIN_TYPE],
        }
    )
    assert isinstance(page, SignInPage)
    assert isinstance(server.portal.sign_in(page.session_id, persona, "1234"), ConsentPage)
    done = server.portal.consent(page.session_id, agree=True)
    assert isinstance(done, Redirect)
    return parse_qs(urlsplit(done.url).query)["code"][0]


def signed_in(server: SandboxServer, client: MynaportalClient) -> PortalToken:
    return client.exchange_code(client_id=CLIENT_ID, code=portal_code(server), redirect_uri=REDIRECT_URI)


def started(server: SandboxServer, client: MynaportalClient, token: PortalToken) -> PortalProcess:
    return client.start_request(
        client_id=CLIENT_ID,
        access_token=token.access_token,
        inquiry_date=INQUIRY_DATE,
        now=server.portal.clock.now(),
    )


def count_calls(monkeypatch: pytest.MonkeyPatch, server: SandboxServer, interface: str) -> list[None]:
    """Record each call that reaches the portal's ``token``, ``request`` or ``result``."""
    calls: list[None] = []
    original = getattr(server.portal, interface)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        return original(*args, **kwargs)

    monkeypatch.setattr(server.portal, interface, counting)
    return calls


# -- IF001-03 ----------------------------------------------------------------------------------------


def test_a_resident_code_is_exchanged_for_a_bearer_token(sandbox: SandboxServer, sleeps: list[float]) -> None:
    token = signed_in(sandbox, client_for(sandbox, sleeps))
    assert token.access_token
    assert token.expires_in == 900


def test_a_reused_portal_code_is_an_authorization_failure(
    sandbox: SandboxServer, sleeps: list[float]
) -> None:
    # GIVEN a code the relay already exchanged
    client = client_for(sandbox, sleeps)
    code = portal_code(sandbox)
    client.exchange_code(client_id=CLIENT_ID, code=code, redirect_uri=REDIRECT_URI)
    # WHEN it is presented again
    with pytest.raises(PortalAuthorizationFailed) as refused:
        client.exchange_code(client_id=CLIENT_ID, code=code, redirect_uri=REDIRECT_URI)
    # THEN the portal's OAuth error is named, and the code appears nowhere in the error
    assert (refused.value.oauth_error, refused.value.check) == ("invalid_grant", "invalid_grant")
    assert code not in str(refused.value)


def test_without_a_client_certificate_the_portal_is_unavailable(
    sandbox: SandboxServer, sleeps: list[float]
) -> None:
    client = client_for(sandbox, sleeps, client_cert=None, client_key=None)
    with pytest.raises(PortalUnavailable):
        client.exchange_code(client_id=CLIENT_ID, code=portal_code(sandbox), redirect_uri=REDIRECT_URI)


def test_a_portal_certificate_outside_the_configured_trust_is_unavailable(
    sandbox: SandboxServer, sleeps: list[float]
) -> None:
    # System trust does not include the sandbox's test CA.
    client = client_for(sandbox, sleeps, ca_bundle=None)
    with pytest.raises(PortalUnavailable, match="SSLError"):
        client.exchange_code(client_id=CLIENT_ID, code=portal_code(sandbox), redirect_uri=REDIRECT_URI)


def test_a_token_5xx_is_unavailable_and_not_retried(
    sandbox: SandboxServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_calls(monkeypatch, sandbox, "token")
    sandbox.portal.set_scenario(Scenario.TOKEN_5XX)
    with pytest.raises(PortalUnavailable):
        signed_in(sandbox, client_for(sandbox, sleeps))
    assert (len(calls), sleeps) == (1, [])


# -- IF001-04 ----------------------------------------------------------------------------------------


def test_a_started_retrieval_carries_the_portal_process(sandbox: SandboxServer, sleeps: list[float]) -> None:
    client = client_for(sandbox, sleeps)
    process = started(sandbox, client, signed_in(sandbox, client))
    # the telegram id carries the provider's digits and the time it was sent, in Japan
    sent = sandbox.portal.clock.now().astimezone(JST)
    assert process.telegram_id.startswith(f"TL-00000001-{sent:%y%m%d%H%M%S}-")
    assert process.process_id
    assert process.mode == "1"


def test_a_request_5xx_is_unavailable_and_not_retried(
    sandbox: SandboxServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a portal that fails the next request once (and would accept a repeat)
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    calls = count_calls(monkeypatch, sandbox, "request")
    sandbox.portal.set_scenario(Scenario.REQUEST_5XX, times=1)
    # WHEN the relay starts a retrieval THEN it fails at once: a repeat could start a second process
    with pytest.raises(PortalUnavailable):
        started(sandbox, client, token)
    assert (len(calls), sleeps) == (1, [])


def test_a_colliding_telegram_id_is_replaced_and_the_request_sent_again(
    sandbox: SandboxServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an id generator that repeats an id the portal has already seen, then draws a fresh one
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    ids = iter(
        ["TL-00000001-261127090000-0001", "TL-00000001-261127090000-0001", "TL-00000001-261127090000-0002"]
    )
    drawn: list[str] = []

    def next_id(provider_digits: str, now: Any) -> str:
        drawn.append(next(ids))
        return drawn[-1]

    monkeypatch.setattr(inferred, "new_telegram_id", next_id)
    started(sandbox, client, token)
    # WHEN the second retrieval's first id collides
    second = started(sandbox, client, token)
    # THEN it is sent again under the fresh id, and succeeds
    assert second.telegram_id == "TL-00000001-261127090000-0002"
    assert len(drawn) == 3


def test_an_unknown_bearer_token_is_a_rejection(sandbox: SandboxServer, sleeps: list[float]) -> None:
    client = client_for(sandbox, sleeps)
    with pytest.raises(PortalRejected) as rejected:
        client.start_request(
            client_id=CLIENT_ID,
            access_token="not-a-token-the-portal-issued",
            inquiry_date=INQUIRY_DATE,
            now=sandbox.portal.clock.now(),
        )
    assert rejected.value.http_status == 401
    assert rejected.value.error_code == "EE0002"  # the sandbox's guess, as the portal's body says
    assert "not-a-token-the-portal-issued" not in str(rejected.value)


def test_an_answer_without_a_common_header_is_a_protocol_error(
    sandbox: SandboxServer, sleeps: list[float]
) -> None:
    # GIVEN a request URL that answers 200 JSON that is not a telegram (a sandbox control route)
    endpoints = {**sandbox.endpoints(), "request_url": f"{sandbox.app_url}/sandbox/notices/deliver"}
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    misdirected = MynaportalClient(
        dataclasses.replace(config_for(sandbox), endpoints=PortalEndpoints(**endpoints)), sleep=sleeps.append
    )
    with pytest.raises(PortalProtocolError) as broken:
        started(sandbox, misdirected, token)
    assert broken.value.check == "IF001-04.commonHeader"


# -- IF001-06 ----------------------------------------------------------------------------------------


def test_a_whole_retrieval_returns_the_data_as_the_portal_sent_it(
    sandbox: SandboxServer, sleeps: list[float]
) -> None:
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    result = client.fetch_result(access_token=token.access_token, process=started(sandbox, client, token))
    assert isinstance(result, ResultReady)
    assert "神奈川県川崎市" in json.loads(result.self_personal_data)[0]


def test_a_retrieval_is_pending_until_the_portal_has_the_data(
    start_sandbox: Callable[..., SandboxServer], sleeps: list[float]
) -> None:
    # GIVEN a portal whose intermediate servers answer 5 s after the request
    server = start_sandbox(dataclasses.replace(DETERMINISTIC_TIMING, result_delay_s=5))
    client = client_for(server, sleeps)
    token = signed_in(server, client)
    process = started(server, client, token)
    # THEN the result is pending at first, and ready once the time has passed
    assert client.fetch_result(access_token=token.access_token, process=process) == ResultPending()
    clock = server.portal.clock
    assert isinstance(clock, ManualClock)
    clock.advance(5)
    assert isinstance(client.fetch_result(access_token=token.access_token, process=process), ResultReady)


def test_a_result_5xx_once_is_retried_after_a_backoff(sandbox: SandboxServer, sleeps: list[float]) -> None:
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    process = started(sandbox, client, token)
    sandbox.portal.set_scenario(Scenario.RESULT_5XX, times=1)
    result = client.fetch_result(access_token=token.access_token, process=process)
    assert isinstance(result, ResultReady)
    assert sleeps == [0.5]


def test_a_persistent_result_5xx_is_unavailable_after_every_safe_attempt(
    sandbox: SandboxServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(sandbox, sleeps, result_attempts=3)
    token = signed_in(sandbox, client)
    process = started(sandbox, client, token)
    calls = count_calls(monkeypatch, sandbox, "result")
    sandbox.portal.set_scenario(Scenario.RESULT_5XX)
    with pytest.raises(PortalUnavailable):
        client.fetch_result(access_token=token.access_token, process=process)
    assert len(calls) == 3
    assert sleeps == [0.5, 1.0]  # exponential backoff between attempts, none after the last


def test_a_result_that_hangs_past_the_read_timeout_is_unavailable(
    start_sandbox: Callable[..., SandboxServer], sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a portal that hangs 1 s on the result, and a client that waits 0.3 s for an answer
    server = start_sandbox(dataclasses.replace(DETERMINISTIC_TIMING, hang_s=1.0))
    client = client_for(server, sleeps, read_timeout_s=0.3, result_attempts=2)
    token = signed_in(server, client)
    process = started(server, client, token)
    calls = count_calls(monkeypatch, server, "result")
    server.portal.set_scenario(Scenario.RESULT_TIMEOUT)
    # THEN both attempts time out and the failure is definite
    with pytest.raises(PortalUnavailable, match="ReadTimeoutError"):
        client.fetch_result(access_token=token.access_token, process=process)
    assert (len(calls), sleeps) == (2, [0.5])


def test_a_provider_error_code_is_a_rejection(sandbox: SandboxServer, sleeps: list[float]) -> None:
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    sandbox.portal.set_scenario(Scenario.ERROR_CODE)
    process = started(sandbox, client, token)
    with pytest.raises(PortalRejected) as rejected:
        client.fetch_result(access_token=token.access_token, process=process)
    assert (rejected.value.error_code, rejected.value.http_status) == ("EE0100", 200)
    assert rejected.value.definite  # a known failure: the flow fails at once (an unknown code waits)


def test_a_result_for_another_process_is_a_rejection(sandbox: SandboxServer, sleeps: list[float]) -> None:
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    process = started(sandbox, client, token)
    unknown = dataclasses.replace(process, process_id="PR" + "0" * 20)
    with pytest.raises(PortalRejected) as rejected:
        client.fetch_result(access_token=token.access_token, process=unknown)
    assert rejected.value.http_status == 404


def test_an_answer_over_the_size_cap_is_a_protocol_error(
    start_sandbox: Callable[..., SandboxServer], sleeps: list[float]
) -> None:
    # GIVEN a portal whose data is larger than the 8 MiB the client reads
    server = start_sandbox(dataclasses.replace(DETERMINISTIC_TIMING, oversized_bytes=9 * 1024 * 1024))
    client = client_for(server, sleeps)
    token = signed_in(server, client)
    server.portal.set_scenario(Scenario.OVERSIZED_PAYLOAD)
    process = started(server, client, token)
    with pytest.raises(PortalProtocolError) as refused:
        client.fetch_result(access_token=token.access_token, process=process)
    assert refused.value.check == "IF001-06.size"


def test_the_mode_the_request_answer_returns_is_reused_on_the_result(
    sandbox: SandboxServer, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a portal whose IF001-04 answer carries a mode other than the one we sent
    client = client_for(sandbox, sleeps)
    token = signed_in(sandbox, client)
    original = client._post
    sent: list[tuple[str, dict[str, Any]]] = []

    def post(interface: str, url: str, body: bytes, headers: Any) -> Any:
        sent.append((interface, json.loads(body)))
        answer = original(interface, url, body, headers)
        if interface == IF_REQUEST:
            document = json.loads(answer.body)
            document["commonHeader"]["mode"] = "2"
            return dataclasses.replace(answer, body=json.dumps(document).encode())
        return answer

    monkeypatch.setattr(client, "_post", post)
    # WHEN the retrieval starts and its result is asked for
    process = started(sandbox, client, token)
    with contextlib.suppress(PortalError):  # the sandbox may refuse a mode it did not send
        client.fetch_result(access_token=token.access_token, process=process)
    # THEN the returned mode is kept and sent back on IF001-06 (docs/mynaportal.md: reuse it)
    assert process.mode == "2"
    assert sent[0][1]["commonHeader"]["mode"] == "1"
    assert [(interface, body["commonHeader"]["mode"]) for interface, body in sent[1:]] == [(IF_RESULT, "2")]
