"""What the domain knows of Mynaportal's self-information API (自己情報取得API): values, outcomes,
named errors and the ``PortalGateway`` port.

It exists so that the flow can be written, and unit-tested with a fake, without HTTP: the adapter
(``chalicelib/adapters/mynaportal.py``) turns the portal's telegrams into these types. It must never
import an HTTP library or the sandbox, never decode ``selfPersonalData`` (the parser does that,
after the Individual Number check), and never let a token or personal data reach a ``repr``, an
exception message or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar, Protocol

from chalicelib.domain.errors import ErrorCategory, RelayError

# -- values ------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class PortalToken:
    """IF001-03: the portal's access token for one resident and one approved service.

    ``expires_in`` is what the portal said, if it said anything usable (the lifetime is unpublished).
    """

    access_token: str
    expires_in: int | None

    def __repr__(self) -> str:
        return f"PortalToken(access_token=<redacted>, expires_in={self.expires_in!r})"


@dataclass(frozen=True)
class PortalProcess:
    """IF001-04: a retrieval the portal has started; IF001-06 must repeat these three values."""

    telegram_id: str
    process_id: str
    mode: str


@dataclass(frozen=True)
class ResultPending:
    """IF001-06: the intermediate servers (中間サーバー) have not answered yet; ask again later."""


@dataclass(frozen=True, repr=False)
class ResultReady:
    """IF001-06: the data, still as the portal sent it: a JSON document encoded as a string.

    Deliberately not decoded here: decoding, the Individual Number scrub and field mapping belong to
    the parser, and nothing before it may look into the data.
    """

    self_personal_data: str

    def __repr__(self) -> str:
        return f"ResultReady(self_personal_data=<{len(self.self_personal_data)} characters>)"


RetrievalResult = ResultPending | ResultReady


# -- errors ------------------------------------------------------------------------------------------


class PortalError(RelayError):
    """Base of every failure of a call to the portal. ``detail`` names the interface (IF001-0n) and
    what went wrong; it never carries the code, the token or the data."""

    code: ClassVar[str] = "portal-error"
    category: ClassVar[ErrorCategory] = "unavailable"
    title: ClassVar[str] = "Mynaportal call failed"


class PortalUnavailable(PortalError):
    """The portal could not be reached or did not answer in time: connection failure, TLS failure
    (including a missing or refused client certificate), timeout, or a 5xx, after the retries that
    are safe for that call (IF001-06 only). A definite failed state, never a half answer."""

    code = "portal-unavailable"
    category = "unavailable"
    title = "Mynaportal is unavailable"


class PortalAuthorizationFailed(PortalError):
    """IF001-03: the token endpoint refused the resident's code (RFC 6749 section 5.2 error JSON).

    ``oauth_error`` (and ``check``) is the portal's ``error`` reduced to a log-safe token such as
    ``invalid_grant``; the portal's ``error_description`` is never kept.
    """

    code = "portal-authorization-failed"
    category = "forbidden"
    title = "Mynaportal refused the authorization"

    def __init__(self, detail: str, *, oauth_error: str) -> None:
        super().__init__(detail, check=oauth_error)
        self.oauth_error = oauth_error


class PortalRejected(PortalError):
    """IF001-04/06: the portal answered a telegram with a non-empty ``errorCode`` (or refused the
    Bearer token with 401). ``error_code`` is the portal's code ("" if a 401 carried none); the code
    list is unpublished, so no meaning is attached here beyond the few in the inferred constants.
    ``definite``: False for an errorCode the client does not know, which may only mean "not yet"
    (docs/mynaportal.md): the poller waits and asks again until the deadline."""

    code = "portal-rejected"
    category = "unavailable"
    title = "Mynaportal rejected the request"

    def __init__(
        self,
        detail: str,
        *,
        error_code: str,
        http_status: int,
        check: str | None = None,
        definite: bool = True,
    ) -> None:
        super().__init__(detail, check=check)
        self.error_code = error_code
        self.http_status = http_status
        self.definite = definite


class PortalProtocolError(PortalError):
    """The answer does not follow the interface: not JSON, a missing or mistyped field, our
    telegramId or processId not echoed, an unexpected status, or a body over the size cap."""

    code = "portal-protocol-error"
    category = "unavailable"
    title = "Mynaportal answered outside the interface"


# -- port --------------------------------------------------------------------------------------------


class PortalGateway(Protocol):
    """The three server-to-server calls the flow makes. Every method touches the network and
    raises only ``PortalError`` subclasses (or ``ValueError`` for a malformed argument)."""

    def exchange_code(self, *, client_id: str, code: str, redirect_uri: str) -> PortalToken:
        """IF001-03: the resident's single-use code for an access token. Never retried."""
        ...

    def start_request(
        self, *, client_id: str, access_token: str, inquiry_date: date, now: datetime
    ) -> PortalProcess:
        """IF001-04: start a point-in-time retrieval as of ``inquiry_date`` (a Japanese date)."""
        ...

    def fetch_result(
        self, *, access_token: str, process: PortalProcess, attempts: int | None = None
    ) -> RetrievalResult:
        """IF001-06: the data, or ``ResultPending`` while the portal is still collecting it.
        ``attempts`` caps the client's own retries (None: its configured number)."""
        ...
