"""The relay's client for Mynaportal's self-information API (自己情報取得API), server to server.

One class, typed values in, typed results or named ``PortalError``s out, in the shape of Chalice's
``awsclient``: IF001-03 (token), IF001-04 (start a retrieval), IF001-06 (fetch the result), over
mutual TLS with the API user's client certificate, with a connect and a read timeout on every call.
Retries are made only where repeating is harmless: IF001-06 is a read and is retried with backoff;
IF001-03 spends a single-use code and IF001-04 starts a process, so a timeout or 5xx there is a
definite ``PortalUnavailable`` at once (the one exception: IF001-04 answered "duplicate telegramId",
which started nothing, is resent under a fresh id).

It must never: follow a redirect, read an unbounded answer, decode ``selfPersonalData``, import the
sandbox, or put a code, a token or personal data into an exception, a log line or a ``repr``
(pydantic's ``ValidationError`` echoes its input, so it is never chained). Every guessed protocol
value comes from ``mynaportal_inferred``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlencode, urlsplit

import urllib3
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator
from urllib3.exceptions import HTTPError as Urllib3Error

from chalicelib.adapters import mynaportal_inferred as inferred
from chalicelib.domain.errors import RelayError
from chalicelib.domain.portal import (
    PortalAuthorizationFailed,
    PortalProcess,
    PortalProtocolError,
    PortalRejected,
    PortalToken,
    PortalUnavailable,
    ResultPending,
    ResultReady,
)
from chalicelib.telemetry import logger

if TYPE_CHECKING:
    from chalicelib.domain.portal import PortalGateway

IF_EXCHANGE: Final = "IF001-03"
IF_REQUEST: Final = "IF001-04"
IF_RESULT: Final = "IF001-06"

# The largest answer read from the portal. The sandbox's oversized payload is about 3 MB; anything
# beyond this is refused rather than buffered in a Lambda's memory.
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024
# Header values are short identifiers; the bound keeps a runaway value out of DynamoDB and logs.
HEADER_VALUE_MAX: Final = 256
# RFC 6750 section 2.1 allows only b64token characters; we accept any visible ASCII so a token is
# never refused after its code was spent, but nothing that could break or inject an HTTP header.
_HEADER_SAFE_TOKEN: Final = re.compile(r"^[\x21-\x7e]{1,4096}$")
# [I] what an IF001-04 answer's mode may be to be reused: observed "1"; a short plain token
_MODE: Final = re.compile(r"[0-9A-Za-z]{1,8}", re.ASCII)
# RFC 6749 section 5.2 error codes are short ASCII words; anything else is not repeated verbatim.
_SAFE_OAUTH_ERROR: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
UNRECOGNIZED_OAUTH_ERROR: Final = "unrecognized_error"
_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PortalEndpoints:
    """Exact, configured URLs (test hosts carry ``-test``). Plain http only on loopback (sandbox)."""

    authorize_url: str  # IF001-01, browser-facing (app.*)
    token_url: str  # IF001-03 (sp.*)
    request_url: str  # IF001-04 (sp.*)
    result_url: str  # IF001-06 (sp.*)

    def __post_init__(self) -> None:
        for name in ("authorize_url", "token_url", "request_url", "result_url"):
            parts = urlsplit(getattr(self, name))
            host = parts.hostname or ""
            if not host or parts.username or parts.password or parts.fragment:
                raise ValueError(f"{name} must be an absolute URL with a host and no credentials")
            if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(host)):
                raise ValueError(f"{name} must be https (plain http only on loopback)")


def _require_verifying(context: ssl.SSLContext) -> ssl.SSLContext:
    if (
        context.verify_mode != ssl.CERT_REQUIRED
        or not context.check_hostname
        or context.minimum_version < ssl.TLSVersion.TLSv1_2
    ):
        raise ValueError("ssl_context must verify the portal (CERT_REQUIRED, hostname check, TLS >= 1.2)")
    return context


@dataclass(frozen=True)
class PortalClientConfig:
    """The portal's endpoints and how we authenticate to it: either PEM file paths (the sandbox's
    test PKI, locally) or a ready ``ssl_context`` holding the client certificate and key (in AWS,
    built from a Secrets Manager secret by ``portal_credentials``), never both."""

    endpoints: PortalEndpoints
    client_cert: str | None  # PEM path (mTLS); None only when the endpoint is plain http (tests)
    client_key: str | None
    ca_bundle: (
        str | None
    )  # PEM path of the CA that signs the portal's server certificate; None = system trust
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    result_attempts: int = 3  # IF001-06 is a read: safe to retry
    backoff_base_s: float = 0.5
    # Client certificate, key and trust already loaded; replaces the three paths above. A callable
    # is called on the first portal call (in AWS it reads the secret: a container that never calls
    # the portal never reads it, and one that cannot read it yet fails only its portal calls).
    ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = dataclass_field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key are configured together or not at all")
        if self.ssl_context is not None:
            if self.client_cert is not None or self.ca_bundle is not None:
                raise ValueError(
                    "ssl_context replaces client_cert, client_key and ca_bundle: give one or the other"
                )
            if isinstance(self.ssl_context, ssl.SSLContext):
                _require_verifying(self.ssl_context)
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.result_attempts < 1:
            raise ValueError("result_attempts must be at least 1")
        if self.backoff_base_s < 0:
            raise ValueError("backoff_base_s must not be negative")


# -- telegrams as the portal sends them (extra="ignore": the portal may add fields) -----------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _TokenAnswer(_Answer):
    """IF001-03 success: RFC 6749 section 5.1; only ``access_token`` is observed."""

    access_token: StrictStr = Field(pattern=_HEADER_SAFE_TOKEN.pattern)
    expires_in: int | None = None

    @field_validator("expires_in", mode="before")
    @classmethod
    def _usable_lifetime(cls, value: object) -> int | None:
        # [I] the lifetime is unpublished; an unreadable one is dropped, not fatal: the code is
        # already spent, and refusing the answer would lose the only token it can buy.
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value > 0 else None
        if isinstance(value, str) and value.isdigit() and len(value) <= 9:
            return int(value) or None
        return None


class _OAuthErrorAnswer(_Answer):
    """IF001-03 refusal: RFC 6749 section 5.2. ``error_description`` is deliberately not read."""

    error: StrictStr = Field(min_length=1, max_length=HEADER_VALUE_MAX)


class _ErrorCodeHeader(_Answer):
    """Just enough of a ``commonHeader`` to classify an answer by its errorCode."""

    errorCode: StrictStr = Field(max_length=32, pattern=r"^[A-Za-z0-9_\-]*$")


class _ErrorCodeEnvelope(_Answer):
    commonHeader: _ErrorCodeHeader


class _CommonHeader(_Answer):
    """[O] every telegram carries these five string fields (the portal's own names)."""

    telegramId: StrictStr = Field(max_length=HEADER_VALUE_MAX)
    telegramType: StrictStr = Field(max_length=HEADER_VALUE_MAX)
    mode: StrictStr = Field(max_length=HEADER_VALUE_MAX)
    processId: StrictStr = Field(max_length=HEADER_VALUE_MAX)
    errorCode: StrictStr = Field(max_length=32)


class _HeaderOnlyAnswer(_Answer):
    """IF001-04 answer, and IF001-06 answer while still processing."""

    commonHeader: _CommonHeader


class _ProvisionInfo(_Answer):
    selfPersonalData: StrictStr  # a JSON document encoded as a string [O]; relayed undecoded


class _ResultAnswer(_Answer):
    """IF001-06 answer with the data."""

    commonHeader: _CommonHeader
    selfPersonalDataProvisionInfo: _ProvisionInfo


_Model = TypeVar("_Model", bound=_Answer)


@dataclass(frozen=True)
class _HttpAnswer:
    status: int
    body: bytes


class MynaportalClient:
    """Talks to the portal's ``sp`` host. Safe to share across invocations of one container: one
    ``PoolManager`` keeps the TLS connections warm."""

    def __init__(self, config: PortalClientConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._config = config
        self._sleep = sleep
        self._timeout = urllib3.Timeout(connect=config.connect_timeout_s, read=config.read_timeout_s)
        self._pool_manager: urllib3.PoolManager | None = None
        self._pool_lock = threading.Lock()

    @property
    def _pool(self) -> urllib3.PoolManager:
        """One pool manager per client, made on the first portal call."""
        if self._pool_manager is None:
            with self._pool_lock:
                if self._pool_manager is None:
                    self._pool_manager = self._make_pool()
        return self._pool_manager

    def _make_pool(self) -> urllib3.PoolManager:
        config = self._config
        context = config.ssl_context() if callable(config.ssl_context) else config.ssl_context
        # retries=False: urllib3 never repeats a call on its own; what is safe to repeat is decided
        # per interface below. The TLS keywords apply to https pools only.
        tls: dict[str, Any] = (
            # The context carries the client certificate, the trust and the TLS floor itself.
            {"ssl_context": _require_verifying(context)}
            if context is not None
            else {
                "ca_certs": config.ca_bundle,
                "cert_file": config.client_cert,
                "key_file": config.client_key,
                "ssl_minimum_version": ssl.TLSVersion.TLSv1_2,
            }
        )
        return urllib3.PoolManager(
            num_pools=4,
            timeout=self._timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            **tls,
        )

    # -- IF001-03 -------------------------------------------------------------------------------------

    def exchange_code(self, *, client_id: str, code: str, redirect_uri: str) -> PortalToken:
        """IF001-03: the resident's code for an access token. Never retried: the code is single-use,
        and a retry after the portal consumed it would fail and hide the first answer."""
        inferred.provider_digits(client_id)  # ValueError before anything leaves
        form = urlencode(
            {
                "grant_type": inferred.GRANT_TYPE,
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
            }
        )
        answer = self._post(
            IF_EXCHANGE,
            self._config.endpoints.token_url,
            form.encode("utf-8"),
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        if answer.status >= 500:
            raise PortalUnavailable(f"{IF_EXCHANGE} answered HTTP {answer.status}", check=IF_EXCHANGE)
        if answer.status == 200:
            token = _parse(IF_EXCHANGE, _TokenAnswer, answer.body)
            return PortalToken(access_token=token.access_token, expires_in=token.expires_in)
        if 400 <= answer.status < 500:
            refusal = _parse(IF_EXCHANGE, _OAuthErrorAnswer, answer.body)
            error = refusal.error if _SAFE_OAUTH_ERROR.fullmatch(refusal.error) else UNRECOGNIZED_OAUTH_ERROR
            raise PortalAuthorizationFailed(
                f"{IF_EXCHANGE} refused the code (HTTP {answer.status}, error {error})", oauth_error=error
            )
        raise _unexpected_status(IF_EXCHANGE, answer.status)

    # -- IF001-04 -------------------------------------------------------------------------------------

    def start_request(
        self, *, client_id: str, access_token: str, inquiry_date: date, now: datetime
    ) -> PortalProcess:
        """IF001-04: start a point-in-time retrieval. Not retried after a timeout or 5xx (the portal
        may have started the process; repeating would start another), only after "duplicate
        telegramId", which started nothing."""
        provider = inferred.provider_digits(client_id)
        headers = _bearer_headers(access_token)
        condition = inferred.INQUIRY_CONDITION_FORMAT.format(inquiry_date)
        for attempt in range(1, inferred.DUPLICATE_TELEGRAM_ATTEMPTS + 1):
            telegram_id = inferred.new_telegram_id(provider, now)
            telegram = {
                "commonHeader": {
                    "telegramId": telegram_id,
                    "telegramType": inferred.REQUEST_TELEGRAM,
                    "mode": inferred.MODE,
                    "processId": "",
                    "errorCode": inferred.ERROR_NONE,
                },
                "selfProvisionDataReqInfo": {"inquiryCondition": condition},
            }
            answer = self._post(IF_REQUEST, self._config.endpoints.request_url, _json(telegram), headers)
            error_code = _error_code(IF_REQUEST, answer)
            if (
                error_code == inferred.ERROR_DUPLICATE_TELEGRAM
                and attempt < inferred.DUPLICATE_TELEGRAM_ATTEMPTS
            ):
                logger.warning(
                    "portal telegramId collided; resending under a fresh id",
                    extra={"interface": IF_REQUEST, "attempt": attempt, "error_code": error_code},
                )
                continue
            if error_code != inferred.ERROR_NONE:
                raise _rejected(IF_REQUEST, error_code, answer.status)
            header = _parse(IF_REQUEST, _HeaderOnlyAnswer, answer.body).commonHeader
            if header.telegramId != telegram_id:
                raise PortalProtocolError(
                    f"{IF_REQUEST} answer does not echo our telegramId",
                    check=f"{IF_REQUEST}.commonHeader.telegramId",
                )
            if not header.processId:
                raise PortalProtocolError(
                    f"{IF_REQUEST} answer carries no processId", check=f"{IF_REQUEST}.commonHeader.processId"
                )
            # [O] the answer's mode is the one to send on IF001-06 (ours only if it returns none);
            # kept in the flow and sent back, so only a short plain token is taken
            if header.mode and not _MODE.fullmatch(header.mode):
                raise PortalProtocolError(
                    f"{IF_REQUEST} answer carries an unusable mode", check=f"{IF_REQUEST}.commonHeader.mode"
                )
            return PortalProcess(
                telegram_id=telegram_id, process_id=header.processId, mode=header.mode or inferred.MODE
            )
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    # -- IF001-06 -------------------------------------------------------------------------------------

    def fetch_result(
        self, *, access_token: str, process: PortalProcess, attempts: int | None = None
    ) -> ResultPending | ResultReady:
        """IF001-06: the data, or ``ResultPending`` (errorCode "still processing"). A read, so a
        connection failure, timeout or 5xx is retried up to ``result_attempts`` times with
        exponential backoff before ``PortalUnavailable``."""
        headers = _bearer_headers(access_token)
        telegram = _json(
            {
                "commonHeader": {
                    "telegramId": process.telegram_id,
                    "telegramType": inferred.RESULT_TELEGRAM,
                    "mode": process.mode,
                    "processId": process.process_id,
                    "errorCode": inferred.ERROR_NONE,
                }
            }
        )
        attempts = min(attempts or self._config.result_attempts, self._config.result_attempts)
        for attempt in range(1, attempts + 1):
            try:
                answer = self._post(IF_RESULT, self._config.endpoints.result_url, telegram, headers)
                return _result(answer, process)
            except PortalUnavailable as exc:
                if attempt == attempts:
                    raise
                delay = self._config.backoff_base_s * 2 ** (attempt - 1)
                logger.warning(
                    "portal result unavailable; retrying",
                    extra={
                        "interface": IF_RESULT,
                        "attempt": attempt,
                        "reason": exc.detail,
                        "delay_s": delay,
                    },
                )
                self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    # -- transport ------------------------------------------------------------------------------------

    def _post(self, interface: str, url: str, body: bytes, headers: Mapping[str, str]) -> _HttpAnswer:
        """One POST, no redirects, the answer read up to ``MAX_ANSWER_BYTES``. Connection, TLS and
        timeout failures become ``PortalUnavailable`` here; statuses are the caller's to judge."""
        try:
            pool = self._pool
        except (RelayError, ValueError) as exc:
            # The mTLS credentials could not be had (the secret missing, unreadable or refused):
            # to the flow that is the portal being unreachable; it names only the failed check.
            check = exc.check if isinstance(exc, RelayError) else "portal_credentials"
            logger.warning(
                "portal call not sent: the mTLS credentials are unavailable",
                extra={"interface": interface, "check": check},
            )
            raise PortalUnavailable(
                f"{interface} not sent: the portal credentials are unavailable ({check})",
                check="portal_credentials",
            ) from None
        try:
            response = pool.request(
                "POST",
                url,
                body=body,
                headers=dict(headers),
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except (Urllib3Error, OSError) as exc:
            raise PortalUnavailable(f"{interface} failed: {type(exc).__name__}", check=interface) from exc
        reusable = False
        try:
            content = response.read(MAX_ANSWER_BYTES + 1)
            reusable = len(content) <= MAX_ANSWER_BYTES
        except (Urllib3Error, OSError) as exc:
            raise PortalUnavailable(
                f"{interface} answer was cut off: {type(exc).__name__}", check=interface
            ) from exc
        finally:
            if not reusable:
                response.close()  # unread bytes would corrupt the next answer on this connection
            response.release_conn()
        if not reusable:
            raise PortalProtocolError(
                f"{interface} answer exceeds {MAX_ANSWER_BYTES} bytes", check=f"{interface}.size"
            )
        return _HttpAnswer(response.status, content)


# -- helpers -----------------------------------------------------------------------------------------


def _json(telegram: dict[str, Any]) -> bytes:
    return json.dumps(telegram, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _bearer_headers(access_token: str) -> dict[str, str]:
    if not _HEADER_SAFE_TOKEN.fullmatch(access_token):
        # http.client would otherwise refuse it with a message that quotes the header value.
        raise ValueError("access_token is not a header-safe Bearer token")
    return {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json",
    }


def _parse(interface: str, model: type[_Model], body: bytes) -> _Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # The error's input may be the token or the data: name only where it failed.
        first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        kind = first["type"]
    # Raised outside the handler: ``from None`` only hides the ValidationError from tracebacks, it
    # still rides along as ``__context__`` (with the token or data as its input).
    raise PortalProtocolError(
        f"{interface} answer does not follow the interface at {where}: {kind}",
        check=f"{interface}.{where}",
    )


def _unexpected_status(interface: str, status: int) -> PortalProtocolError:
    return PortalProtocolError(f"{interface} answered unexpected HTTP {status}", check=f"{interface}.status")


def _rejected(interface: str, error_code: str, status: int) -> PortalRejected:
    shown = error_code or "none"
    return PortalRejected(
        f"{interface} was rejected (HTTP {status}, errorCode {shown})",
        error_code=error_code,
        http_status=status,
        check=f"{interface}.commonHeader.errorCode",
    )


def _error_code(interface: str, answer: _HttpAnswer) -> str:
    """The answer's errorCode, or the named error when the answer cannot carry one.

    200 and 4xx answers are telegrams: their errorCode decides (the portal's business and protocol
    refusals ride on both, [I]). A 5xx is ``PortalUnavailable``; a 401 without a readable errorCode
    is still a rejection of our token; any other answer without one is outside the interface.
    """
    status = answer.status
    if status >= 500:
        raise PortalUnavailable(f"{interface} answered HTTP {status}", check=interface)
    if status != 200 and not 400 <= status < 500:
        raise _unexpected_status(interface, status)
    if status == 200:
        return _parse(interface, _ErrorCodeEnvelope, answer.body).commonHeader.errorCode
    try:
        error_code = _ErrorCodeEnvelope.model_validate_json(answer.body).commonHeader.errorCode
    except ValidationError:
        error_code = inferred.ERROR_NONE
    if error_code:
        return error_code
    if status == 401:
        raise _rejected(interface, error_code, status)
    raise _unexpected_status(interface, status)


# [I] IF001-06 errorCodes taken as a definite failure of the retrieval: the sandbox's guesses (copied;
# malformed telegram, token refused, unknown process, the intermediate server's error). Any other
# code is unknown (the list is unpublished, docs/mynaportal.md): whether an early call is answered
# "not yet" with some code is unknown too, so an unknown code is not definite and the poller asks
# again until the deadline. (To move beside the other errorCodes in mynaportal_inferred.)
RESULT_DEFINITE_ERRORS: Final = frozenset({"EE0001", "EE0002", "EE0004", "EE0100"})


def _result(answer: _HttpAnswer, process: PortalProcess) -> ResultPending | ResultReady:
    """IF001-06: one answer to an outcome or a named error."""
    error_code = _error_code(IF_RESULT, answer)
    if error_code not in (inferred.ERROR_NONE, inferred.ERROR_STILL_PROCESSING):
        rejected = _rejected(IF_RESULT, error_code, answer.status)
        # a 401 without a code is our token refused: definite as well
        rejected.definite = error_code in RESULT_DEFINITE_ERRORS or not error_code
        raise rejected
    if answer.status != 200:
        raise _unexpected_status(IF_RESULT, answer.status)
    if error_code == inferred.ERROR_STILL_PROCESSING:
        _check_echo(_parse(IF_RESULT, _HeaderOnlyAnswer, answer.body).commonHeader, process)
        return ResultPending()
    ready = _parse(IF_RESULT, _ResultAnswer, answer.body)
    _check_echo(ready.commonHeader, process)
    return ResultReady(self_personal_data=ready.selfPersonalDataProvisionInfo.selfPersonalData)


def _check_echo(header: _CommonHeader, process: PortalProcess) -> None:
    for field, ours, theirs in (
        ("telegramId", process.telegram_id, header.telegramId),
        ("processId", process.process_id, header.processId),
    ):
        if theirs != ours:
            raise PortalProtocolError(
                f"{IF_RESULT} answer does not echo our {field}", check=f"{IF_RESULT}.commonHeader.{field}"
            )


if TYPE_CHECKING:
    # mypy proves the client satisfies the domain's port.
    _CONFORMS: type[PortalGateway] = MynaportalClient
