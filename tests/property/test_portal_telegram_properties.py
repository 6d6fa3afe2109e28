"""The Mynaportal client's reading of IF001-03, IF001-04 and IF001-06 answers: whatever the portal
answers (any status, any bytes), the client returns a typed value or raises a named ``PortalError``,
accepts nothing the interface does not allow, shows no token or data in an error, and repeats only
what is safe to repeat; what the sandbox builds comes through exactly."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.adapters import mynaportal_inferred as relay_inferred
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
from sandbox import inferred as sandbox_inferred
from sandbox.clock import ManualClock
from sandbox.personas import Persona
from sandbox.portal import (
    ConsentPage,
    Portal,
    Redirect,
    ServiceRegistration,
    SignInPage,
    _telegram_error,
    build_self_personal_data,
)
from sandbox.server import DETERMINISTIC_TIMING
from sandbox.telegrams import CommonHeader, RequestTelegram, ResultTelegram
from tests.property.support import (
    MARKER,
    PROPERTY,
    canned,
    dumps,
    exception_chain,
    json_values,
    mangled,
    object_text,
    personas,
    sandbox_responder,
    scripted_client,
)

CLIENT_ID = "SP00000001_AA0001"
REDIRECT_URI = "http://127.0.0.1:8000/portal/callback"
HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,4096}")
SAFE_OAUTH_ERROR = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# the portal's client_id: SP, 8 provider digits, _, the service id (2 capital letters, 4 digits)
WELL_FORMED_CLIENT_ID = r"SP[0-9]{8}_[A-Z]{2}[0-9]{4}"
REFUSED_ARGUMENT = (
    rf"^(client_id is not of the form {re.escape(relay_inferred.CLIENT_ID_FORM)}"
    r"|access_token is not a header-safe Bearer token)$"
)
NOW = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)  # the sandbox's manual clock starts here
HEADER_FIELDS = ("telegramId", "telegramType", "mode", "processId", "errorCode")

statuses = st.sampled_from([200, 200, 200, 400, 401, 404, 409, 500, 503]) | st.integers(
    min_value=100, max_value=599
)
header_strings = st.text(max_size=12) | st.text(min_size=250, max_size=260) | st.just(MARKER)
error_codes = st.sampled_from(["", "", "", "EW0001", "EE0001", "EE0003", "EE0100"]) | st.text(max_size=40)


def outcome_of(call: Callable[[], object]) -> object:
    """What a client call returned, or the ``PortalError`` it raised; anything else fails the test."""
    try:
        return call()
    except PortalError as error:
        return error


def assert_reveals_nothing(outcome: object) -> None:
    """No error shows the portal's data, and none keeps the parser's error (which quotes its input)."""
    if not isinstance(outcome, BaseException):
        return
    chain = exception_chain(outcome)
    assert not any(isinstance(error, ValidationError | json.JSONDecodeError) for error in chain)
    assert MARKER not in " ".join(f"{error!s} {error!r} {getattr(error, 'check', '')}" for error in chain)


def python_reading(body: bytes) -> Any:
    """Python's own reading of an answer (the last of duplicate keys wins, as in the client); integers
    as Decimal, which has no digit limit."""
    return json.loads(body.decode("utf-8"), parse_int=Decimal)


def answered_header(body: bytes) -> dict[str, Any]:
    document = python_reading(body)
    assert isinstance(document, dict)
    header = document["commonHeader"]
    assert isinstance(header, dict)
    return header


@st.composite
def header_text(draw: st.DrawFn, faithful: dict[str, Any]) -> bytes:
    """A ``commonHeader`` object: the ``faithful`` values with up to two of them wrong, and sometimes
    a field missing, repeated with another value, or an unknown one added."""
    values = dict(faithful)
    for name in draw(st.lists(st.sampled_from(HEADER_FIELDS), unique=True, max_size=2)):
        values[name] = draw(WRONG_HEADER_VALUES[name])
    pairs = [(name, dumps(value, ascii_only=True)) for name, value in values.items()]
    shape = draw(st.sampled_from(["complete"] * 6 + ["missing", "repeated", "extra"]))
    if shape == "missing":
        pairs.pop(draw(st.integers(min_value=0, max_value=len(pairs) - 1)))
    elif shape == "repeated":
        name = draw(st.sampled_from(HEADER_FIELDS))
        at = draw(st.integers(min_value=0, max_value=len(pairs)))
        pairs.insert(at, (name, dumps(draw(WRONG_HEADER_VALUES[name]), ascii_only=True)))
    elif shape == "extra":
        pairs.append(("resultCode", dumps(draw(json_values), ascii_only=True)))
    return object_text(pairs)


def string_or_other(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """A wrong header value: mostly a string, sometimes any other JSON value."""
    return st.one_of(strings, strings, json_values)


WRONG_HEADER_VALUES = {name: string_or_other(header_strings) for name in HEADER_FIELDS} | {
    "errorCode": string_or_other(error_codes)
}


# -- IF001-03: token ------------------------------------------------------------------------------------

valid_tokens = st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True)
token_values = (
    valid_tokens
    | valid_tokens
    | st.text(max_size=8).map(lambda text: MARKER + text)
    | st.integers(min_value=4097, max_value=4100).map(lambda length: "t" * length)
    | json_values
)
lifetimes = (
    st.integers()
    | st.from_regex(r"[0-9]{1,12}", fullmatch=True)
    | st.floats()
    | st.booleans()
    | st.none()
    | st.text(max_size=6)
)
oauth_errors = (
    st.sampled_from(["invalid_grant", "invalid_client", "access_denied"])
    | st.from_regex(r"[A-Za-z0-9_.\-]{60,70}", fullmatch=True)
    | st.text(max_size=70)
    | json_values
)


@st.composite
def token_answers(draw: st.DrawFn) -> bytes:
    """An IF001-03 answer: a token, a refusal, both or neither; a name may repeat."""
    ascii_only = draw(st.booleans())
    fields = {
        "access_token": token_values,
        "expires_in": lifetimes,
        "token_type": st.just("Bearer") | json_values,
        "error": oauth_errors,
        "error_description": st.just(MARKER) | json_values,
    }
    lead = draw(st.sampled_from([["access_token"], ["access_token", "expires_in"], ["error"], []]))
    names = lead + draw(st.lists(st.sampled_from(sorted(fields)), max_size=3))
    pairs = [(name, dumps(draw(fields[name]), ascii_only=ascii_only)) for name in names]
    body = draw(st.sampled_from([object_text(pairs)] * 4 + [dumps(draw(json_values), ascii_only=ascii_only)]))
    return draw(mangled(body))


@settings(PROPERTY, max_examples=200)
@given(statuses, token_answers() | st.binary(max_size=64))
# Found by this property: the refused token stayed in the error as its __context__ (the parser's
# ValidationError, whose input is the whole token), though ``from None`` hid it from tracebacks.
@example(200, b'{"access_token": "' + MARKER.encode() + b'"}')
@example(400, b'{"error": "' + MARKER.encode() + b'", "error": "invalid_grant"}')
@example(200, b'{"access_token": "t0ken", "expires_in": 1e400}')
def test_any_token_answer_is_a_token_or_a_named_portal_error(status: int, body: bytes) -> None:
    # GIVEN a token endpoint that answers this status and body
    client, pool, sleeps = scripted_client(canned(status, body))
    # WHEN a resident's code is exchanged
    outcome = outcome_of(
        lambda: client.exchange_code(client_id=CLIENT_ID, code="c0de", redirect_uri=REDIRECT_URI)
    )
    # THEN the single-use code was sent once, whatever happened
    assert (len(pool.calls), sleeps) == (1, [])
    event(type(outcome).__name__)
    assert_reveals_nothing(outcome)
    if status >= 500:
        assert isinstance(outcome, PortalUnavailable)
    elif isinstance(outcome, PortalToken):
        # a token is only what a 200 said, and only one that fits a Bearer header
        assert status == 200
        assert outcome.access_token == python_reading(body)["access_token"]
        assert HEADER_SAFE.fullmatch(outcome.access_token)
        assert outcome.expires_in is None or (type(outcome.expires_in) is int and outcome.expires_in > 0)
    elif isinstance(outcome, PortalAuthorizationFailed):
        assert 400 <= status < 500
        said = python_reading(body)["error"]
        assert outcome.oauth_error == (said if SAFE_OAUTH_ERROR.fullmatch(said) else "unrecognized_error")
        assert outcome.check == outcome.oauth_error
    else:
        assert isinstance(outcome, PortalProtocolError)


# -- IF001-04: request -----------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=100)
@given(
    st.from_regex(WELL_FORMED_CLIENT_ID, fullmatch=True),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31), timezones=st.timezones()),
)
def test_every_request_telegram_the_client_sends_is_one_the_sandbox_reads(
    client_id: str, inquiry: date, now: datetime
) -> None:
    # GIVEN a portal that answers every request with a process for the telegramId it was sent
    def echo(_path: str, body: bytes, _headers: dict[str, str]) -> tuple[int, bytes]:
        header = dict(json.loads(body)["commonHeader"], processId="PR1", telegramType="IFA0301-S01")
        return 200, json.dumps({"commonHeader": header}).encode()

    client, pool, _ = scripted_client(echo)
    # WHEN a retrieval is started
    process = client.start_request(client_id=client_id, access_token="t0ken", inquiry_date=inquiry, now=now)
    # THEN the sandbox's own telegram model reads what was sent, as the observed interface describes it
    ((path, body),) = pool.calls
    telegram = RequestTelegram.model_validate_json(body)
    header = telegram.commonHeader
    assert path == "/online-resource-web/request"
    assert (header.telegramType, header.mode, header.processId, header.errorCode) == (
        sandbox_inferred.REQUEST_TELEGRAM,
        "1",
        "",
        "",
    )
    assert header.mode in sandbox_inferred.ACCEPTED_MODES
    stamp = sandbox_inferred.TELEGRAM_ID_PATTERN.fullmatch(header.telegramId)
    assert stamp is not None
    assert stamp["provider"] == client_id[2:10]
    assert stamp["stamp"] == now.astimezone(timezone(timedelta(hours=9))).strftime("%y%m%d%H%M%S")
    condition = sandbox_inferred.INQUIRY_PATTERN.fullmatch(telegram.selfProvisionDataReqInfo.inquiryCondition)
    assert condition is not None
    assert condition["date"] == f"{inquiry:%Y%m%d}"
    assert process == PortalProcess(telegram_id=header.telegramId, process_id="PR1", mode="1")


@settings(PROPERTY, max_examples=100)
@given(st.text(max_size=24) | st.from_regex(WELL_FORMED_CLIENT_ID, fullmatch=True), st.text(max_size=24))
@example("SP00000001_AA0001", "secret\r\nX-Injected: 1")
@example("SP0000000１_AA0001", "t0ken")  # found by this property: \d also matched full-width digits
@example("SP0000000١_AA0001", "t0ken")  # and Arabic-Indic ones
@example("SP00000001_ＡＢ0001", "t0ken")  # full-width letters are no service id either
@example("SP00000001_ab0001", "t0ken")
def test_a_malformed_client_id_or_token_is_refused_before_anything_is_sent(
    client_id: str, token: str
) -> None:
    client, pool, _ = scripted_client(canned(500, b""))
    well_formed = re.fullmatch(WELL_FORMED_CLIENT_ID, client_id) and HEADER_SAFE.fullmatch(token)
    assume(not well_formed)  # the other properties cover what a well-formed call does
    with pytest.raises(ValueError, match=REFUSED_ARGUMENT):  # named, never quoting the token
        client.start_request(client_id=client_id, access_token=token, inquiry_date=date(2026, 1, 1), now=NOW)
    assert pool.calls == []


@st.composite
def request_answers(draw: st.DrawFn, sent: bytes) -> tuple[int, bytes]:
    """An IF001-04 answer to ``sent``: a faithful echo, or one broken in a few places."""
    faithful = {
        "telegramId": json.loads(sent)["commonHeader"]["telegramId"],
        "telegramType": "IFA0301-S01",
        "mode": "1",
        "processId": "PR0A1B",
        "errorCode": draw(error_codes),
    }
    header = draw(header_text(faithful))
    return draw(statuses), draw(mangled(object_text([("commonHeader", header)])))


@settings(PROPERTY, max_examples=300)
@given(st.data())
def test_any_request_answer_is_a_process_or_a_named_portal_error(data: st.DataObject) -> None:
    # GIVEN a portal that answers each request telegram with a generated answer
    answers: list[tuple[int, bytes]] = []

    def respond(_path: str, body: bytes, _headers: dict[str, str]) -> tuple[int, bytes]:
        answers.append(data.draw(request_answers(body)))
        return answers[-1]

    client, pool, _ = scripted_client(respond)
    # WHEN a retrieval is started
    outcome = outcome_of(
        lambda: client.start_request(
            client_id=CLIENT_ID, access_token="t0ken", inquiry_date=date(2026, 11, 27), now=NOW
        )
    )
    event(type(outcome).__name__)
    assert_reveals_nothing(outcome)
    sent = [json.loads(body)["commonHeader"]["telegramId"] for _, body in pool.calls]
    # THEN a telegram is sent again, under a fresh id, only after "duplicate telegramId", at most 3 times
    assert 1 <= len(sent) <= relay_inferred.DUPLICATE_TELEGRAM_ATTEMPTS
    for status, body in answers[:-1]:
        assert status < 500
        assert answered_header(body)["errorCode"] == "EE0003"
    status, body = answers[-1]
    if status >= 500:
        assert isinstance(outcome, PortalUnavailable)
    elif isinstance(outcome, PortalProcess):
        # a process only from a 200 echoing our telegramId, without an errorCode, with a processId
        header = answered_header(body)
        assert status == 200
        assert all(type(header[name]) is str and len(header[name]) <= 256 for name in HEADER_FIELDS)
        assert (header["telegramId"], header["errorCode"]) == (sent[-1], "")
        # the answer's mode is reused (ours if it names none): a short plain token only
        assert outcome == PortalProcess(
            telegram_id=sent[-1], process_id=header["processId"], mode=header["mode"] or "1"
        )
        assert re.fullmatch(r"[0-9A-Za-z]{1,8}", outcome.mode)
        assert outcome.process_id
    elif isinstance(outcome, PortalRejected):
        said = answered_header(body).get("errorCode") if outcome.error_code else ""
        assert (outcome.error_code, outcome.http_status) == (said, status)
        assert outcome.error_code or status == 401
    else:
        assert isinstance(outcome, PortalProtocolError)


@settings(PROPERTY, max_examples=100)
@given(
    st.text(min_size=1, max_size=256),
    st.text(max_size=256),
    st.text(max_size=256),
    st.booleans(),
)
def test_a_faithful_request_answer_gives_exactly_the_portals_process_id(
    process_id: str, telegram_type: str, mode: str, ascii_only: bool
) -> None:
    # GIVEN a portal that echoes our telegramId and names a process (any text up to the bound)
    def respond(_path: str, body: bytes, _headers: dict[str, str]) -> tuple[int, bytes]:
        ours = json.loads(body)["commonHeader"]["telegramId"]
        header = {
            "telegramId": ours,
            "telegramType": telegram_type,
            "mode": mode,
            "processId": process_id,
            "errorCode": "",
        }
        return 200, dumps({"commonHeader": header}, ascii_only=ascii_only)

    client, pool, _ = scripted_client(respond)
    start = functools.partial(
        client.start_request,
        client_id=CLIENT_ID,
        access_token="t0ken",
        inquiry_date=date(2026, 11, 27),
        now=NOW,
    )
    if mode and not re.fullmatch(r"[0-9A-Za-z]{1,8}", mode):
        # a mode that could not be sent back as it came is an answer outside the interface
        with pytest.raises(PortalProtocolError, match="mode"):
            start()
        return
    process = start()
    # THEN the process is exactly the portal's, under our telegramId and its mode (ours if none)
    ((_, sent),) = pool.calls
    assert process == PortalProcess(
        telegram_id=json.loads(sent)["commonHeader"]["telegramId"], process_id=process_id, mode=mode or "1"
    )


# -- IF001-06: result ------------------------------------------------------------------------------------

processes = st.builds(
    PortalProcess,
    telegram_id=st.text(min_size=1, max_size=64),
    process_id=st.text(min_size=1, max_size=64),
    mode=st.just("1"),
)
self_personal_data = (
    st.text()
    | st.just(MARKER)
    | json_values.map(lambda value: json.dumps(value, ensure_ascii=False))
    | json_values
)


@st.composite
def result_answers(draw: st.DrawFn, process: PortalProcess) -> bytes:
    """An IF001-06 answer for ``process``: a faithful one, or one broken in a few places."""
    faithful = {
        "telegramId": process.telegram_id,
        "telegramType": "IFA0303-S01",
        "mode": process.mode,
        "processId": process.process_id,
        "errorCode": draw(error_codes),
    }
    pairs = [("commonHeader", draw(header_text(faithful)))]
    data = draw(self_personal_data)
    info = draw(st.sampled_from([{"selfPersonalData": data}] * 4 + [{"other": data}, data, None]))
    if info is not None:
        pairs.append(("selfPersonalDataProvisionInfo", dumps(info, ascii_only=draw(st.booleans()))))
    return draw(mangled(object_text(pairs)))


@settings(PROPERTY, max_examples=300)
@given(st.data(), processes, statuses)
def test_any_result_answer_is_data_pending_or_a_named_portal_error(
    data: st.DataObject, process: PortalProcess, status: int
) -> None:
    # GIVEN a portal that gives this one answer to every result telegram
    body = data.draw(result_answers(process) | st.binary(max_size=64))
    client, pool, sleeps = scripted_client(canned(status, body))
    # WHEN the result is fetched
    outcome = outcome_of(lambda: client.fetch_result(access_token="t0ken", process=process))
    event(type(outcome).__name__)
    assert_reveals_nothing(outcome)
    # THEN what was sent is the result telegram the sandbox reads, for our process
    for _, sent in pool.calls:
        header = ResultTelegram.model_validate_json(sent).commonHeader
        assert header == CommonHeader(
            telegramId=process.telegram_id,
            telegramType=sandbox_inferred.RESULT_TELEGRAM,
            mode=process.mode,
            processId=process.process_id,
            errorCode="",
        )
    # AND only a 5xx is retried, with backoff, up to the configured attempts
    if status >= 500:
        assert isinstance(outcome, PortalUnavailable)
        assert (len(pool.calls), sleeps) == (3, [0.5, 1.0])
        return
    assert (len(pool.calls), sleeps) == (1, [])
    if isinstance(outcome, ResultReady | ResultPending):
        # data or "pending" only from a 200 that echoes our telegramId and processId
        header = answered_header(body)
        assert status == 200
        assert all(type(header[name]) is str and len(header[name]) <= 256 for name in HEADER_FIELDS)
        assert (header["telegramId"], header["processId"]) == (process.telegram_id, process.process_id)
        if isinstance(outcome, ResultPending):
            assert header["errorCode"] == "EW0001"
        else:
            assert header["errorCode"] == ""
            assert (
                outcome.self_personal_data
                == python_reading(body)["selfPersonalDataProvisionInfo"]["selfPersonalData"]
            )
    elif isinstance(outcome, PortalRejected):
        said = answered_header(body).get("errorCode") if outcome.error_code else ""
        assert (outcome.error_code, outcome.http_status) == (said, status)
        assert outcome.error_code not in ("", "EW0001") or status != 200
    else:
        assert isinstance(outcome, PortalProtocolError)


@settings(PROPERTY, max_examples=100)
@given(processes, st.text(), st.booleans())
def test_a_faithful_result_answer_gives_exactly_the_portals_data(
    process: PortalProcess, data: str, ascii_only: bool
) -> None:
    header = {
        "telegramId": process.telegram_id,
        "telegramType": "IFA0303-S01",
        "mode": process.mode,
        "processId": process.process_id,
        "errorCode": "",
    }
    body = dumps(
        {"commonHeader": header, "selfPersonalDataProvisionInfo": {"selfPersonalData": data}},
        ascii_only=ascii_only,
    )
    client, _, _ = scripted_client(canned(200, body))
    assert client.fetch_result(access_token="t0ken", process=process) == ResultReady(self_personal_data=data)


@settings(PROPERTY, max_examples=100)
@given(
    st.builds(
        CommonHeader,
        telegramId=st.text(min_size=1, max_size=64),
        telegramType=st.just(sandbox_inferred.RESULT_TELEGRAM),
        mode=st.just("1"),
        processId=st.text(min_size=1, max_size=64),
        errorCode=st.just(""),
    ),
    st.sampled_from(sorted(code for code in sandbox_inferred.HTTP_STATUS_BY_ERROR if code)),
)
def test_every_error_telegram_the_sandbox_builds_is_named_by_the_client(
    header: CommonHeader, code: str
) -> None:
    # GIVEN the sandbox's own error answer to our result telegram
    answer = _telegram_error(header, code, sandbox_inferred.RESULT_ANSWER_TELEGRAM)
    body = json.dumps(answer.body, ensure_ascii=False).encode()
    client, _, _ = scripted_client(canned(answer.status, body), attempts=1)
    process = PortalProcess(telegram_id=header.telegramId, process_id=header.processId, mode=header.mode)
    # WHEN the client reads it
    outcome = outcome_of(lambda: client.fetch_result(access_token="t0ken", process=process))
    # THEN "still processing" is pending, a 5xx is unavailable, and every other code is a rejection
    # that carries the portal's code and status
    if code == sandbox_inferred.ERROR_STILL_PROCESSING:
        assert outcome == ResultPending()
    elif answer.status >= 500:
        assert isinstance(outcome, PortalUnavailable)
    else:
        assert isinstance(outcome, PortalRejected)
        assert (outcome.error_code, outcome.http_status) == (code, answer.status)


# -- the whole exchange with the sandbox -----------------------------------------------------------------

INQUIRY = date(2026, 11, 27)


def resident_code(portal: Portal) -> str:
    """What the resident's browser does at the portal: IF001-01, sign-in, consent (IF001-02)."""
    page = portal.authorize(
        {
            "response_type": ["code"],
            "client_id": [CLIENT_ID],
            "redirect_uri": [REDIRECT_URI],
            "state": ["s-1"],
            "login_type": ["0"],
        }
    )
    assert isinstance(page, SignInPage)
    assert isinstance(portal.sign_in(page.session_id, "generated", "1234"), ConsentPage)
    done = portal.consent(page.session_id, agree=True)
    assert isinstance(done, Redirect)
    return parse_qs(urlsplit(done.url).query)["code"][0]


@settings(PROPERTY, max_examples=60)
@given(
    personas(around=INQUIRY),
    st.sampled_from([("地方税関係情報",), ("予防接種関係情報",), ("地方税関係情報", "予防接種関係情報")]),
    st.dates(min_value=date(2020, 1, 1), max_value=INQUIRY),
    st.sampled_from([0, 5]),
)
def test_what_the_sandbox_portal_answers_reaches_the_relay_exactly(
    persona: Persona, items: tuple[str, ...], inquiry: date, delay: int
) -> None:
    # GIVEN the sandbox portal, in-process, holding a generated resident's records
    clock = ManualClock(NOW)
    service = ServiceRegistration(
        CLIENT_ID, "myna-relay", REDIRECT_URI, "http://127.0.0.1:8000/portal/notice", items
    )
    timing = dataclasses.replace(DETERMINISTIC_TIMING, result_delay_s=delay)
    portal = Portal((service,), {persona.id: persona}, clock, timing=timing)
    client, _, sleeps = scripted_client(sandbox_responder(portal))
    # WHEN the relay exchanges the code, starts a retrieval and fetches its result
    token = client.exchange_code(client_id=CLIENT_ID, code=resident_code(portal), redirect_uri=REDIRECT_URI)
    process = client.start_request(
        client_id=CLIENT_ID, access_token=token.access_token, inquiry_date=inquiry, now=clock.now()
    )
    first = client.fetch_result(access_token=token.access_token, process=process)
    clock.advance(delay)
    ready = client.fetch_result(access_token=token.access_token, process=process)
    # THEN the token's lifetime, the process and the data are exactly the sandbox's
    assert token.expires_in == sandbox_inferred.ACCESS_TOKEN_LIFETIME_S
    assert {record.process_id for record in portal.history()} == {process.process_id}
    assert first == (ResultPending() if delay else ready)
    expected = json.dumps(build_self_personal_data(persona, items, inquiry), ensure_ascii=False)
    assert ready == ResultReady(self_personal_data=expected)
    assert sleeps == []
