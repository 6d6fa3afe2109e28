"""Every guess the relay makes about Mynaportal's unpublished interface, in one place.

The official interface specification is handed only to approved API users, so docs/mynaportal.md
marks each fact [C]onfirmed, [O]bserved in public integration code, or [I]nferred. The client
(``mynaportal.py``) takes every protocol value from here and invents none, so that the real
spec corrects this file alone. These are the relay's OWN constants: where the sandbox's guess
was the only source, the value is copied and said so, never imported (``chalicelib`` must not
depend on the simulator it is tested against, or the simulator could no longer catch its mistakes).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Final, Literal

# [I] The portal's dates (the inquiry date, the telegramId stamp) are Japanese dates; Japan has no
# daylight saving time, so a fixed +09:00 offset is exact.
JST: Final = timezone(timedelta(hours=9), "JST")

# -- Authorization (IF001-01..03) ------------------------------------------------------------------
# [O] client_id = "SP" + 8 provider digits + "_" + the service id: 2 letters + 4 digits
# (``SP12345678_AB1234``; an earlier reading fixed the letters to "AA", which refused real ids at the
# callback, after the resident had signed in). [I] the letters are capitals, as in every example.
# re.ASCII: \d alone would also match full-width and other scripts' digits, which no portal id carries.
CLIENT_ID_PATTERN: Final = re.compile(r"^SP(?P<provider>\d{8})_(?P<service>[A-Z]{2}\d{4})$", re.ASCII)
CLIENT_ID_FORM: Final = (
    "SP########_XX#### (SP, 8 digits, _, 2 capital letters, 4 digits; e.g. SP12345678_AB1234)"
)
# [O] login_type=0 is what integrations send on IF001-01; its meaning is unknown.
LOGIN_TYPE: Final = "0"
# [O] the IF001-03 form grant type; no PKCE, no client secret (the TLS certificate authenticates).
GRANT_TYPE: Final = "authorization_code"
# The ``error`` of an IF001-02 redirect. [O] a cancel is ``access_denied`` (OAuth-standard); [I] the
# names for an expired user-certificate and a locked card (the sandbox's guesses, copied).
ERROR_USER_CANCELLED: Final = "access_denied"
ERROR_CERTIFICATE_EXPIRED: Final = "certificate_expired"
ERROR_CARD_LOCKED: Final = "card_locked"

AuthorizationRefusal = Literal["cancelled", "certificate_expired", "card_locked", "other"]
_REFUSALS: Final[dict[str, AuthorizationRefusal]] = {
    ERROR_USER_CANCELLED: "cancelled",
    ERROR_CERTIFICATE_EXPIRED: "certificate_expired",
    ERROR_CARD_LOCKED: "card_locked",
}


def classify_authorization_error(error: str) -> AuthorizationRefusal:
    """IF001-02: the portal's redirect ``error`` as one of the outcomes the flow names; anything
    unknown (the list is unpublished) is ``"other"``."""
    return _REFUSALS.get(error, "other")


# [O] What a working integration reads literally at the callback (the parameter names the portal
# really uses are not visible): the resident's cancel comes as ``code=access_denied`` with the
# state, an expired user-certificate as ``state=Certificate expired``: the state REPLACED by that
# text, so the flow cannot be found by it (the callback then finds it by the browser binding).
CODE_USER_CANCELLED: Final = "access_denied"
STATE_CERTIFICATE_EXPIRED: Final = "Certificate expired"
_STATE_REFUSALS: Final[dict[str, AuthorizationRefusal]] = {
    STATE_CERTIFICATE_EXPIRED: "certificate_expired",
}


def classify_callback_error(error: str | None, code: str | None) -> AuthorizationRefusal | None:
    """IF001-02 with a usable state: the refusal the callback reports, or None for a code to
    exchange. An OAuth-style ``error`` (any value: an unknown one is ``"other"``) or the observed
    ``code=access_denied`` (never exchanged as if it were a code)."""
    if error is not None:
        return classify_authorization_error(error)
    if code == CODE_USER_CANCELLED:
        return "cancelled"
    return None


def classify_callback_state(state: str) -> AuthorizationRefusal | None:
    """IF001-02: the refusal a ``state`` replaced by the portal's error text reports (observed:
    ``Certificate expired``), or None for any other value."""
    return _STATE_REFUSALS.get(state)


# -- Telegrams (IF001-04..06) ----------------------------------------------------------------------
# [O] the telegram types we send: request (IF001-04), notice answer (IF001-05), result (IF001-06).
REQUEST_TELEGRAM: Final = "IFA0301-R01"
NOTICE_ANSWER_TELEGRAM: Final = "IFA0302-S01"
RESULT_TELEGRAM: Final = "IFA0303-R01"
# [I] the portal's own telegram types, by the same R(equest)/S(end) pattern (the sandbox's guess,
# copied). The client does not refuse an answer for its telegramType: a wrong guess here must not
# become an outage; it checks the observed echo of telegramId and processId instead.
REQUEST_ANSWER_TELEGRAM: Final = "IFA0301-S01"
NOTICE_TELEGRAM: Final = "IFA0302-R01"
RESULT_ANSWER_TELEGRAM: Final = "IFA0303-S01"
# [O] mode "1" is what integrations send.
MODE: Final = "1"
# [O] point-in-time inquiry; latest and range inquiries exist but their syntax is unknown.
INQUIRY_CONDITION_FORMAT: Final = "Date={:%Y%m%d}"

# [I] errorCode values: the code list is unpublished. Empty means success (observed); the others
# are the sandbox's guesses, copied.
ERROR_NONE: Final = ""
ERROR_STILL_PROCESSING: Final = "EW0001"  # IF001-06: the result is not ready yet; poll again
ERROR_DUPLICATE_TELEGRAM: Final = "EE0003"  # IF001-04: this telegramId was already used
# [I] how many fresh telegramIds IF001-04 tries when the portal says the id was already used (our
# 4-digit random sequence collided within the same second); the portal started nothing then.
DUPLICATE_TELEGRAM_ATTEMPTS: Final = 3

# [O] TL-<8 provider digits>-<YYMMDDhhmmss>-<4-digit sequence>; [I] the stamp is Japan time.
TELEGRAM_ID_PATTERN: Final = re.compile(
    r"^TL-(?P<provider>\d{8})-(?P<stamp>\d{12})-(?P<seq>\d{4})$", re.ASCII
)
_PROVIDER_DIGITS: Final = re.compile(r"^\d{8}$", re.ASCII)


def is_client_id(value: str) -> bool:
    """Whether ``value`` is shaped like a portal client_id (a configured service id)."""
    return CLIENT_ID_PATTERN.fullmatch(value) is not None


def provider_digits(client_id: str) -> str:
    """The 8 provider digits of a ``SP########_XX####`` client_id; ``ValueError`` otherwise."""
    match = CLIENT_ID_PATTERN.fullmatch(client_id)
    if match is None:
        raise ValueError(f"client_id is not of the form {CLIENT_ID_FORM}")
    return match["provider"]


def new_telegram_id(provider_digits: str, now: datetime) -> str:
    """A fresh telegramId for IF001-04: ``TL-<provider>-<YYMMDDhhmmss JST>-<4 random digits>``.

    The sequence is random rather than a counter because Lambda instances share no state; a
    collision is answered ``ERROR_DUPLICATE_TELEGRAM`` and the caller draws again.
    """
    if not _PROVIDER_DIGITS.fullmatch(provider_digits):
        raise ValueError("provider digits must be exactly 8 digits")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    stamp = now.astimezone(JST).strftime("%y%m%d%H%M%S")
    return f"TL-{provider_digits}-{stamp}-{secrets.randbelow(10_000):04d}"
