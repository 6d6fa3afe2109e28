"""The simulated portal's behaviour, independent of HTTP: sign-in, consent, codes, tokens,
telegrams, asynchronous results, completion notices and the provision history.

The Flask apps in ``web.py`` only translate HTTP to these methods. Every malformed or
out-of-order call gets the error the portal would plausibly give and changes nothing; protocol
values that are guesses come from ``sandbox.inferred``.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import JsonValue, ValidationError

from sandbox import inferred
from sandbox.clock import Clock
from sandbox.personas import CallbackStyle, Persona
from sandbox.scenarios import Fault, Scenario, ScenarioBook, Step
from sandbox.telegrams import CommonHeader, RequestTelegram, ResultTelegram

JST = timezone(timedelta(hours=9), "JST")  # the portal's dates (inquiry, YYYYMMDD) are Japanese dates


@dataclass(frozen=True)
class ServiceRegistration:
    """An approved API user's service: its fixed information items and registered URLs."""

    client_id: str
    name: str
    redirect_uri: str
    notice_url: str
    items: tuple[str, ...]

    @property
    def provider_digits(self) -> str:
        match = inferred.CLIENT_ID_PATTERN.fullmatch(self.client_id)
        if match is None:
            raise ValueError(f"client_id {self.client_id!r} is not SP########_AA####")
        return match["provider"]


@dataclass(frozen=True)
class Timing:
    """Delays in seconds; all zero in deterministic tests."""

    result_delay_s: float = 5.0
    slow_result_delay_s: float = 240.0
    notice_delay_s: float = 1.0
    duplicate_notice_gap_s: float = 2.0
    hang_s: float = 30.0
    code_lifetime_s: float = inferred.AUTHORIZATION_CODE_LIFETIME_S
    token_lifetime_s: float = inferred.ACCESS_TOKEN_LIFETIME_S
    session_lifetime_s: float = inferred.SIGN_IN_SESSION_LIFETIME_S
    notice_backoff_base_s: float = inferred.NOTICE_BACKOFF_BASE_S
    notice_max_attempts: int = inferred.NOTICE_MAX_ATTEMPTS
    oversized_bytes: int = 3_000_000


# -- outcomes returned to the HTTP layer ---------------------------------------------------------


@dataclass(frozen=True)
class ErrorPage:
    """No redirect is safe (unknown client or redirect URI): show an error instead."""

    status: int
    message: str


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass(frozen=True)
class SignInPage:
    session_id: str
    service: ServiceRegistration
    personas: tuple[Persona, ...]
    error: str | None = None
    attempts_left: int | None = None


@dataclass(frozen=True)
class LockedPage:
    session_id: str
    persona: Persona


@dataclass(frozen=True)
class ConsentPage:
    session_id: str
    service: ServiceRegistration
    persona: Persona


BrowserOutcome = ErrorPage | Redirect | SignInPage | LockedPage | ConsentPage


@dataclass(frozen=True)
class ApiAnswer:
    """A server-to-server answer: status and JSON body, or a simulated fault."""

    status: int
    body: dict[str, Any]
    fault: Fault | None = None


# -- state -----------------------------------------------------------------------------------------


@dataclass
class SignInSession:
    service: ServiceRegistration
    state: str
    created_at: datetime
    persona_id: str | None = None
    signed_in: bool = False


@dataclass
class AuthorizationCode:
    service: ServiceRegistration
    redirect_uri: str
    persona_id: str
    expires_at: datetime
    used: bool = False


@dataclass
class AccessToken:
    service: ServiceRegistration
    persona_id: str
    expires_at: datetime


@dataclass
class Process:
    process_id: str
    telegram_id: str
    mode: str
    token: str
    service: ServiceRegistration
    persona_id: str
    inquiry_date: date
    scenario: Scenario
    requested_at: datetime
    ready_at: datetime
    history_ids: list[str] = field(default_factory=list)


@dataclass
class Notice:
    process_id: str
    telegram_id: str
    mode: str
    url: str
    due_at: datetime
    attempts: int = 0
    # set when a send begins: the portal has finished the process by then, and the relay polls
    # /result while it is still answering the notice
    sending: bool = False
    delivered: bool = False
    abandoned: bool = False
    last_error: str | None = None


@dataclass
class ProvisionRecord:
    """One entry of the portal's own provision history (情報提供等記録, 番号法 第23条)."""

    record_id: str
    requester: str  # 情報照会者: the API user's service
    requester_client_id: str
    provider: str  # 情報提供者: the municipality (or 該当なし)
    item: str  # 特定個人情報の項目
    item_code: str
    requested_at: datetime  # 提供の求めの日時
    provided_at: datetime | None  # 提供の日時
    outcome: Literal["pending", "provided", "no_data", "failed"]
    withheld: bool  # 不開示 flag
    process_id: str
    persona_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "requester": self.requester,
            "requester_client_id": self.requester_client_id,
            "provider": self.provider,
            "item": self.item,
            "item_code": self.item_code,
            "requested_at": self.requested_at.isoformat(),
            "provided_at": self.provided_at.isoformat() if self.provided_at else None,
            "outcome": self.outcome,
            "withheld": self.withheld,
            "process_id": self.process_id,
            "persona_id": self.persona_id,
        }


NoticeSender = Callable[[str, dict[str, Any]], tuple[int, Any]]
"""POST a JSON body to a URL; answer (status, parsed JSON or None). Raises OSError on failure."""


class Portal:
    def __init__(
        self,
        services: tuple[ServiceRegistration, ...],
        personas: Mapping[str, Persona],
        clock: Clock,
        *,
        timing: Timing | None = None,
        scenarios: ScenarioBook | None = None,
        send_notice: NoticeSender | None = None,
    ) -> None:
        self.services = {service.client_id: service for service in services}
        for service in services:
            _ = service.provider_digits  # refuse a malformed registration at start
            unknown = [item for item in service.items if item not in inferred.DATASETS]
            if unknown:
                raise ValueError(f"service {service.client_id} lists unknown items {unknown}")
        self.personas = dict(personas)
        self.clock = clock
        self.timing = timing or Timing()
        self.scenarios = scenarios or ScenarioBook()
        self._send_notice = send_notice
        self._lock = threading.RLock()
        self._sessions: dict[str, SignInSession] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._telegram_ids: set[str] = set()
        self._processes: dict[str, Process] = {}
        self._notices: list[Notice] = []
        self._history: list[ProvisionRecord] = []
        self._pin_failures: dict[str, int] = {}

    # -- administration --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every session, code, token, process, notice, lock and record."""
        with self._lock:
            self._sessions.clear()
            self._codes.clear()
            self._tokens.clear()
            self._telegram_ids.clear()
            self._processes.clear()
            self._notices.clear()
            self._history.clear()
            self._pin_failures.clear()
            self.scenarios.clear()

    def set_scenario(
        self, scenario: Scenario, *, persona: str | None = None, times: int | None = None
    ) -> None:
        with self._lock:
            if persona is not None and persona not in self.personas:
                raise KeyError(persona)
            self.scenarios.set(scenario, persona=persona, times=times)

    def set_callback_style(self, style: CallbackStyle, *, persona: str | None = None) -> None:
        with self._lock:
            if persona is not None and persona not in self.personas:
                raise KeyError(persona)
            self.scenarios.set_callback_style(style, persona=persona)

    def _callback_style(self, persona_id: str | None) -> CallbackStyle:
        persona = self.personas.get(persona_id) if persona_id else None
        return self.scenarios.callback_style(persona_id, persona.callback_style if persona else None)

    def history(self) -> list[ProvisionRecord]:
        with self._lock:
            return list(self._history)

    def notices(self) -> list[Notice]:
        with self._lock:
            return [Notice(**vars(notice)) for notice in self._notices]

    # -- IF001-01: authorize (app side) ------------------------------------------------------------

    def authorize(self, params: Mapping[str, list[str]]) -> BrowserOutcome:
        single = {name: values[0] for name, values in params.items() if len(values) == 1}
        repeated = [name for name, values in params.items() if len(values) != 1]
        client_id = single.get("client_id", "")
        service = self.services.get(client_id)
        if service is None or not inferred.CLIENT_ID_PATTERN.fullmatch(client_id):
            return ErrorPage(400, "client_id が登録されていません (unknown client_id)")
        if single.get("redirect_uri") != service.redirect_uri:
            return ErrorPage(400, "redirect_uri が登録されたものと一致しません (redirect_uri mismatch)")
        state = single.get("state", "")

        def error(code: str, description: str) -> Redirect:
            query = {"error": code, "error_description": description}
            if state:
                query["state"] = state
            return Redirect(_with_query(service.redirect_uri, query))

        if repeated:
            return error("invalid_request", f"repeated parameter: {', '.join(sorted(repeated))}")
        if single.get("response_type") != "code":
            return error("unsupported_response_type", "response_type must be code")
        if not state or len(state) > 512:
            return error("invalid_request", "state is required (at most 512 characters)")
        if single.get("login_type") not in inferred.ACCEPTED_LOGIN_TYPES:
            return error("invalid_request", "login_type is missing or not supported")
        with self._lock:
            session_id = secrets.token_urlsafe(24)
            self._sessions[session_id] = SignInSession(
                service=service, state=state, created_at=self.clock.now()
            )
        return SignInPage(session_id, service, tuple(self.personas.values()))

    def _session(self, session_id: str) -> SignInSession | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self.clock.now() - session.created_at > timedelta(seconds=self.timing.session_lifetime_s):
            del self._sessions[session_id]
            return None
        return session

    def _finish(self, session_id: str, query: dict[str, str], *, state: str | None = None) -> Redirect:
        """End a sign-in session with a redirect to the service (the session is used up), with the
        relay's state unless ``state`` replaces it."""
        session = self._sessions.pop(session_id)
        return Redirect(_with_query(session.service.redirect_uri, {**query, "state": state or session.state}))

    def _refuse(
        self, session_id: str, persona_id: str | None, reason: Literal["cancelled", "expired"]
    ) -> Redirect:
        """A cancel (or refused consent) or an expired certificate, in the form the scenario selects:
        observed ``code=access_denied`` / ``state=Certificate expired``, or OAuth-style ``error=``."""
        if self._callback_style(persona_id) == "observed":
            if reason == "expired":
                return self._finish(session_id, {}, state=inferred.OBSERVED_EXPIRED_STATE)
            return self._finish(session_id, {"code": inferred.OBSERVED_CANCEL_CODE})
        if reason == "expired":
            return self._finish(
                session_id,
                {
                    "error": inferred.ERROR_CERTIFICATE_EXPIRED,
                    "error_description": "user certificate expired",
                },
            )
        return self._finish(
            session_id, {"error": inferred.ERROR_USER_CANCELLED, "error_description": "user cancelled"}
        )

    def sign_in(self, session_id: str, persona_id: str, pin: str) -> BrowserOutcome:
        with self._lock:
            session = self._session(session_id)
            if session is None:
                return ErrorPage(400, "セッションが無効か期限切れです (sign-in session unknown or expired)")
            persona = self.personas.get(persona_id)
            if persona is None:
                return SignInPage(
                    session_id, session.service, tuple(self.personas.values()), "カードを選択してください"
                )
            if self._card_locked(persona):
                return LockedPage(session_id, persona)
            if persona.card.status == "expired":
                return self._refuse(session_id, persona.id, "expired")
            if not secrets.compare_digest(pin.encode(), persona.card.pin.encode()):
                failures = self._pin_failures.get(persona.id, 0) + 1
                self._pin_failures[persona.id] = failures
                if failures >= inferred.PIN_ATTEMPTS_BEFORE_LOCK:
                    return LockedPage(session_id, persona)
                left = inferred.PIN_ATTEMPTS_BEFORE_LOCK - failures
                return SignInPage(
                    session_id,
                    session.service,
                    tuple(self.personas.values()),
                    f"暗証番号が違います。あと {left} 回間違えるとロックされます。",
                    attempts_left=left,
                )
            self._pin_failures.pop(persona.id, None)
            session.persona_id = persona.id
            session.signed_in = True
            return ConsentPage(session_id, session.service, persona)

    def _card_locked(self, persona: Persona) -> bool:
        failures = self._pin_failures.get(persona.id, 0)
        return persona.card.status == "locked" or failures >= inferred.PIN_ATTEMPTS_BEFORE_LOCK

    def leave_locked(self, session_id: str) -> BrowserOutcome:
        """From the locked-card page back to the service, with its own error."""
        with self._lock:
            session = self._session(session_id)
            if session is None:
                return ErrorPage(400, "セッションが無効か期限切れです (sign-in session unknown or expired)")
            return self._finish(
                session_id, {"error": inferred.ERROR_CARD_LOCKED, "error_description": "card locked"}
            )

    def cancel(self, session_id: str) -> BrowserOutcome:
        with self._lock:
            session = self._session(session_id)
            if session is None:
                return ErrorPage(400, "セッションが無効か期限切れです (sign-in session unknown or expired)")
            return self._refuse(session_id, session.persona_id, "cancelled")

    def consent(self, session_id: str, *, agree: bool) -> BrowserOutcome:
        """IF001-02: agreement ends in a redirect with a single-use code and the state."""
        with self._lock:
            session = self._session(session_id)
            if session is None or not session.signed_in or session.persona_id is None:
                return ErrorPage(400, "サインインが完了していません (not signed in)")
            if not agree:
                if self._callback_style(session.persona_id) == "observed":
                    return self._refuse(session_id, session.persona_id, "cancelled")
                return self._finish(
                    session_id,
                    {"error": inferred.ERROR_USER_CANCELLED, "error_description": "consent refused"},
                )
            code = secrets.token_urlsafe(32)
            self._codes[code] = AuthorizationCode(
                service=session.service,
                redirect_uri=session.service.redirect_uri,
                persona_id=session.persona_id,
                expires_at=self.clock.now() + timedelta(seconds=self.timing.code_lifetime_s),
            )
            return self._finish(session_id, {"code": code})

    # -- IF001-03: token (sp side) -----------------------------------------------------------------

    def token(self, form: Mapping[str, list[str]], *, client_provider: str | None, tls: bool) -> ApiAnswer:
        expected = {"grant_type", "code", "redirect_uri", "client_id"}
        if set(form) != expected or any(len(values) != 1 for values in form.values()):
            missing = sorted(expected - set(form))
            extra = sorted(set(form) - expected)
            detail = "; ".join(
                part
                for part in (f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "")
                if part
            )
            return _oauth_error(400, "invalid_request", detail or "each parameter must appear once")
        values = {name: form[name][0] for name in expected}
        if values["grant_type"] != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be authorization_code")
        service = self.services.get(values["client_id"])
        if service is None:
            return _oauth_error(401, "invalid_client", "unknown client_id")
        if tls and client_provider != service.provider_digits:
            return _oauth_error(401, "invalid_client", "client certificate does not belong to this client_id")
        with self._lock:
            code = self._codes.get(values["code"])
            persona_id = code.persona_id if code else ""
            fault = self._fault(persona_id, "token") if code else None
            if fault:
                return ApiAnswer(503, {"error": "temporarily_unavailable"}, fault)
            if code is None or code.used:
                return _oauth_error(400, "invalid_grant", "code is unknown or already used")
            code.used = True  # single use: consumed by its first presentation, whatever follows
            if self.clock.now() >= code.expires_at:
                return _oauth_error(400, "invalid_grant", "code has expired")
            if code.service.client_id != service.client_id or code.redirect_uri != values["redirect_uri"]:
                return _oauth_error(400, "invalid_grant", "code was issued to another client or redirect_uri")
            token = secrets.token_urlsafe(32)
            self._tokens[token] = AccessToken(
                service=service,
                persona_id=code.persona_id,
                expires_at=self.clock.now() + timedelta(seconds=self.timing.token_lifetime_s),
            )
        return ApiAnswer(
            200,
            {
                "access_token": token,
                "token_type": inferred.TOKEN_TYPE,
                "expires_in": int(self.timing.token_lifetime_s),
            },
        )

    def _fault(self, persona_id: str, step: Step) -> Fault | None:
        persona = self.personas.get(persona_id)
        return self.scenarios.fault(persona_id, persona.scenario if persona else None, step)

    def _bearer(self, authorization: str | None) -> tuple[str, AccessToken] | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization.removeprefix("Bearer ").strip()
        access = self._tokens.get(token)
        if access is None or self.clock.now() >= access.expires_at:
            return None
        return token, access

    # -- IF001-04: request -------------------------------------------------------------------------

    def request(self, authorization: str | None, body: bytes) -> ApiAnswer:
        with self._lock:
            parsed = _parse(RequestTelegram, body)
            header = parsed.commonHeader if isinstance(parsed, RequestTelegram) else None
            bearer = self._bearer(authorization)
            if bearer is None:
                return _telegram_error(header, inferred.ERROR_UNAUTHORIZED, inferred.REQUEST_ANSWER_TELEGRAM)
            token, access = bearer
            if not isinstance(parsed, RequestTelegram) or header is None:
                return _telegram_error(
                    None, inferred.ERROR_MALFORMED_TELEGRAM, inferred.REQUEST_ANSWER_TELEGRAM
                )
            fault = self._fault(access.persona_id, "request")
            if fault:
                return ApiAnswer(503, {}, fault)
            problem = self._check_request_header(header, access)
            if problem:
                return _telegram_error(header, problem, inferred.REQUEST_ANSWER_TELEGRAM)
            inquiry = inferred.INQUIRY_PATTERN.fullmatch(parsed.selfProvisionDataReqInfo.inquiryCondition)
            inquiry_date = _yyyymmdd(inquiry["date"]) if inquiry else None
            if inquiry_date is None or inquiry_date > self.clock.now().astimezone(JST).date():
                return _telegram_error(
                    header, inferred.ERROR_MALFORMED_TELEGRAM, inferred.REQUEST_ANSWER_TELEGRAM
                )
            self._telegram_ids.add(header.telegramId)
            process = self._start_process(header, token, access, inquiry_date)
        return ApiAnswer(
            200,
            {
                "commonHeader": _answer_header(
                    header, inferred.REQUEST_ANSWER_TELEGRAM, process.process_id, ""
                )
            },
        )

    def _check_request_header(self, header: CommonHeader, access: AccessToken) -> str | None:
        if header.telegramType != inferred.REQUEST_TELEGRAM or header.mode not in inferred.ACCEPTED_MODES:
            return inferred.ERROR_MALFORMED_TELEGRAM
        if header.processId or header.errorCode:
            return inferred.ERROR_MALFORMED_TELEGRAM
        match = inferred.TELEGRAM_ID_PATTERN.fullmatch(header.telegramId)
        if match is None or match["provider"] != access.service.provider_digits:
            return inferred.ERROR_MALFORMED_TELEGRAM
        if _yymmddhhmmss(match["stamp"]) is None:
            return inferred.ERROR_MALFORMED_TELEGRAM
        if header.telegramId in self._telegram_ids:
            return inferred.ERROR_DUPLICATE_TELEGRAM
        return None

    def _start_process(
        self, header: CommonHeader, token: str, access: AccessToken, inquiry_date: date
    ) -> Process:
        now = self.clock.now()
        persona = self.personas[access.persona_id]
        scenario = self.scenarios.current(persona.id, persona.scenario)
        delay = (
            self.timing.slow_result_delay_s
            if scenario is Scenario.SLOW_PROVIDER
            else self.timing.result_delay_s
        )
        process = Process(
            process_id=f"{inferred.PROCESS_ID_PREFIX}{secrets.token_hex(10).upper()}",
            telegram_id=header.telegramId,
            mode=header.mode,
            token=token,
            service=access.service,
            persona_id=persona.id,
            inquiry_date=inquiry_date,
            scenario=scenario,
            requested_at=now,
            ready_at=now + timedelta(seconds=delay),
        )
        self._processes[process.process_id] = process
        for item in access.service.items:
            record = ProvisionRecord(
                record_id=f"H{len(self._history) + 1:06d}",
                requester=access.service.name,
                requester_client_id=access.service.client_id,
                provider=_providers(persona, item, inquiry_date),
                item=item,
                item_code=inferred.DATASETS[item],
                requested_at=now,
                provided_at=None,
                outcome="pending",
                withheld=False,
                process_id=process.process_id,
                persona_id=persona.id,
            )
            self._history.append(record)
            process.history_ids.append(record.record_id)
        self._schedule_notices(process)
        return process

    def _schedule_notices(self, process: Process) -> None:
        if process.scenario is Scenario.NEVER_NOTIFIES:
            return
        due = (
            process.requested_at
            if process.scenario is Scenario.NOTIFIES_EARLY
            else process.ready_at + timedelta(seconds=self.timing.notice_delay_s)
        )
        dues = [due]
        if process.scenario is Scenario.DUPLICATE_NOTICES:
            dues.append(due + timedelta(seconds=self.timing.duplicate_notice_gap_s))
        for when in dues:
            self._notices.append(
                Notice(
                    process.process_id, process.telegram_id, process.mode, process.service.notice_url, when
                )
            )

    # -- IF001-06: result --------------------------------------------------------------------------

    def result(self, authorization: str | None, body: bytes) -> ApiAnswer:
        with self._lock:
            parsed = _parse(ResultTelegram, body)
            header = parsed.commonHeader if isinstance(parsed, ResultTelegram) else None
            bearer = self._bearer(authorization)
            if bearer is None:
                return _telegram_error(header, inferred.ERROR_UNAUTHORIZED, inferred.RESULT_ANSWER_TELEGRAM)
            token, access = bearer
            if header is None:
                return _telegram_error(
                    None, inferred.ERROR_MALFORMED_TELEGRAM, inferred.RESULT_ANSWER_TELEGRAM
                )
            fault = self._fault(access.persona_id, "result")
            if fault:
                return ApiAnswer(503, {}, fault)
            if header.telegramType != inferred.RESULT_TELEGRAM or header.errorCode:
                return _telegram_error(
                    header, inferred.ERROR_MALFORMED_TELEGRAM, inferred.RESULT_ANSWER_TELEGRAM
                )
            process = self._processes.get(header.processId)
            if (
                process is None
                or process.token != token
                or process.telegram_id != header.telegramId
                or process.mode != header.mode
            ):
                return _telegram_error(
                    header, inferred.ERROR_UNKNOWN_PROCESS, inferred.RESULT_ANSWER_TELEGRAM
                )
            answer = _answer_header(header, inferred.RESULT_ANSWER_TELEGRAM, process.process_id, "")
            if process.scenario is Scenario.UNKNOWN_ERROR_BEFORE_NOTICE and not self._notice_sent(process):
                return ApiAnswer(200, {"commonHeader": {**answer, "errorCode": inferred.ERROR_UNLISTED}})
            if self.clock.now() < process.ready_at:
                return ApiAnswer(
                    200, {"commonHeader": {**answer, "errorCode": inferred.ERROR_STILL_PROCESSING}}
                )
            if process.scenario is Scenario.ERROR_CODE:
                self._record_outcome(process, "failed")
                return ApiAnswer(
                    200, {"commonHeader": {**answer, "errorCode": inferred.ERROR_PROVIDER_FAILURE}}
                )
            payload = self._payload(process)
        return ApiAnswer(
            200, {"commonHeader": answer, "selfPersonalDataProvisionInfo": {"selfPersonalData": payload}}
        )

    def _notice_sent(self, process: Process) -> bool:
        """Whether a completion notice for this process has been sent (whatever the relay answered)."""
        return any(
            n.process_id == process.process_id and (n.attempts > 0 or n.sending) for n in self._notices
        )

    def _payload(self, process: Process) -> str:
        persona = self.personas[process.persona_id]
        data = build_self_personal_data(persona, process.service.items, process.inquiry_date)
        self._record_outcome(process, "provided" if data else "no_data")
        ascii_only = persona.escape_unicode  # [O] "unicode-escaped": non-ASCII as \uXXXX
        if process.scenario is Scenario.MALFORMED_JSON:
            return json.dumps(data, ensure_ascii=False)[:-7] + '{"'
        if process.scenario is Scenario.OVERSIZED_PAYLOAD:
            filler = [{"神奈川県川崎市": {inferred.LOCAL_TAX: [{"備考": "あ" * 1000}]}}]
            copies = self.timing.oversized_bytes // len(json.dumps(filler, ensure_ascii=False).encode()) + 1
            return json.dumps(data + filler * copies, ensure_ascii=False)
        return json.dumps(data, ensure_ascii=ascii_only)

    def _record_outcome(self, process: Process, outcome: Literal["provided", "no_data", "failed"]) -> None:
        now = self.clock.now()
        for record in self._history:
            if record.record_id in process.history_ids and record.outcome == "pending":
                has_data = record.provider != "該当なし"
                record.outcome = outcome if outcome != "provided" or has_data else "no_data"
                record.provided_at = now if record.outcome == "provided" else None

    # -- IF001-05: completion notices --------------------------------------------------------------

    def due_notices(self) -> list[Notice]:
        now = self.clock.now()
        with self._lock:
            return [n for n in self._notices if not n.delivered and not n.abandoned and n.due_at <= now]

    def deliver_due_notices(self) -> list[Notice]:
        """Send every notice that is due, once; a failure is rescheduled with backoff. Returns what
        was attempted. Network calls happen outside the lock."""
        if self._send_notice is None:
            raise RuntimeError("no notice sender configured")
        attempted = []
        for notice in self.due_notices():
            header = {
                "telegramId": notice.telegram_id,
                "telegramType": inferred.NOTICE_TELEGRAM,
                "mode": notice.mode,
                "processId": notice.process_id,
                "errorCode": "",
            }
            with self._lock:
                notice.sending = True
            try:
                status, answer = self._send_notice(notice.url, {"commonHeader": header})
                error = _notice_answer_problem(status, answer, header)
            except OSError as exc:
                error = f"{type(exc).__name__}"
            with self._lock:
                notice.attempts += 1
                if error is None:
                    notice.delivered = True
                    notice.last_error = None
                else:
                    notice.last_error = error
                    if notice.attempts >= self.timing.notice_max_attempts:
                        notice.abandoned = True
                    else:
                        backoff = self.timing.notice_backoff_base_s * 2 ** (notice.attempts - 1)
                        notice.due_at = self.clock.now() + timedelta(seconds=backoff)
            attempted.append(notice)
        return attempted


# -- data ------------------------------------------------------------------------------------------


def build_self_personal_data(persona: Persona, items: tuple[str, ...], inquiry: date) -> list[dict[str, Any]]:
    """``selfPersonalData`` before string encoding: a list of ``{municipality: {dataset: [records]}}``.

    Local tax: the latest fiscal year already decided on the inquiry date (FY N is decided in June
    of N), from the municipality that levied it (every record of that year, so a duplicate stays a
    duplicate); a persona with ``local_tax_selection="all-decided"`` gets every decided year.
    Vaccination: records of the last 5 years before the inquiry date, since municipalities keep
    them for 5 years. Records are sent as the persona file writes them (JSON values).
    """
    chosen: list[tuple[str, str, dict[str, JsonValue]]] = []
    if inferred.LOCAL_TAX in items:
        label = persona.dataset_labels.get(inferred.LOCAL_TAX, inferred.LOCAL_TAX)
        decided = [
            record
            for record in persona.local_tax
            if inferred.fiscal_year_decided_on(record.fiscal_year_key()) <= inquiry
        ]
        if decided and persona.local_tax_selection == "latest":
            latest = max(record.fiscal_year_key() for record in decided)
            decided = [record for record in decided if record.fiscal_year_key() == latest]
        chosen.extend((record.municipality, label, dict(record.fields)) for record in decided)
    if inferred.VACCINATION in items:
        label = persona.dataset_labels.get(inferred.VACCINATION, inferred.VACCINATION)
        earliest = _years_before(inquiry, inferred.VACCINATION_RETENTION_YEARS)
        for record in persona.vaccination:
            given = record.given_on_key()
            if given is not None and earliest <= given <= inquiry:
                chosen.append((record.municipality, label, dict(record.fields)))
    grouped: dict[str, dict[str, list[dict[str, JsonValue]]]] = {}
    for municipality, dataset, fields in chosen:
        grouped.setdefault(municipality, {}).setdefault(dataset, []).append(fields)
    return [{municipality: datasets} for municipality, datasets in grouped.items()]


def _providers(persona: Persona, item: str, inquiry: date) -> str:
    data = build_self_personal_data(persona, (item,), inquiry)
    names = [next(iter(entry)) for entry in data]
    return "、".join(names) if names else "該当なし"


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _yyyymmdd(value: str) -> date | None:
    try:
        return datetime.strptime(value, "%Y%m%d").date() if len(value) == 8 and value.isdigit() else None
    except ValueError:
        return None


def _yymmddhhmmss(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%y%m%d%H%M%S")
    except ValueError:
        return None


def _with_query(url: str, query: Mapping[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(query)


def _parse(
    model: type[RequestTelegram] | type[ResultTelegram], body: bytes
) -> RequestTelegram | ResultTelegram | None:
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def _answer_header(
    header: CommonHeader, telegram_type: str, process_id: str, error_code: str
) -> dict[str, str]:
    return {
        "telegramId": header.telegramId,
        "telegramType": telegram_type,
        "mode": header.mode,
        "processId": process_id,
        "errorCode": error_code,
    }


def _telegram_error(header: CommonHeader | None, code: str, telegram_type: str) -> ApiAnswer:
    echoed = {
        "telegramId": header.telegramId if header else "",
        "telegramType": telegram_type,
        "mode": header.mode if header else "",
        "processId": header.processId if header else "",
        "errorCode": code,
    }
    return ApiAnswer(inferred.HTTP_STATUS_BY_ERROR.get(code, 500), {"commonHeader": echoed})


def _oauth_error(status: int, error: str, description: str) -> ApiAnswer:
    return ApiAnswer(status, {"error": error, "error_description": description})


def _notice_answer_problem(status: int, answer: Any, sent: dict[str, str]) -> str | None:
    if status != 200:
        return f"HTTP {status}"
    header = answer.get("commonHeader") if isinstance(answer, dict) else None
    if not isinstance(header, dict):
        return "answer has no commonHeader"
    if header.get("telegramType") != inferred.NOTICE_ANSWER_TELEGRAM:
        return f"answer telegramType is not {inferred.NOTICE_ANSWER_TELEGRAM}"
    if header.get("telegramId") != sent["telegramId"] or header.get("processId") != sent["processId"]:
        return "answer does not echo telegramId and processId"
    return None
