"""Every [I]nferred choice of the sandbox, in one place.

docs/mynaportal.md marks what is confirmed [C], observed in public integration code [O], or
inferred [I]. The sandbox follows [C]/[O] exactly; wherever the real portal's behaviour is unknown,
the value chosen here is a guess, named and documented, to be corrected when the official
interface specification is in hand. Nothing else in ``sandbox/`` may invent protocol values.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

# -- Authorization (IF001-01..03) ------------------------------------------------------------------
# [O] client_id = provider id + service id; the exact digit counts are from observed ids.
CLIENT_ID_PATTERN: Final = re.compile(r"^SP(?P<provider>\d{8})_AA(?P<service>\d{4})$")
# [O] login_type=0 is what integrations send; its meaning is unknown, so only "0" is accepted.
ACCEPTED_LOGIN_TYPES: Final = frozenset({"0"})
# [I] Authorization errors on the redirect. access_denied for a cancel is OAuth-standard and
# observed; the names for an expired certificate and a locked card are guesses.
ERROR_USER_CANCELLED: Final = "access_denied"
ERROR_CERTIFICATE_EXPIRED: Final = "certificate_expired"
ERROR_CARD_LOCKED: Final = "card_locked"
# [O] the forms a working integration reads at the callback: ``code == "access_denied"`` for a cancel
# and ``state == "Certificate expired"`` (the relay's state replaced by that text) for an expired
# certificate. [I] that the observed cancel carries the state and the observed expiry nothing else;
# a locked card has no observed form, so it keeps error=card_locked in both styles.
OBSERVED_CANCEL_CODE: Final = "access_denied"
OBSERVED_EXPIRED_STATE: Final = "Certificate expired"
# [I] the sandbox's default callback style: "oauth" (error=...), the form the relay and its tests read
# today; "observed" is selectable per persona, per test or for the whole sandbox (--callback-style).
DEFAULT_CALLBACK_STYLE: Final = "observed"
# [C] the card's user-certificate PIN is 4 digits and locks after 3 wrong attempts (JPKI).
PIN_ATTEMPTS_BEFORE_LOCK: Final = 3
# [I] lifetimes: the portal's are unpublished.
AUTHORIZATION_CODE_LIFETIME_S: Final = 60
ACCESS_TOKEN_LIFETIME_S: Final = 900
SIGN_IN_SESSION_LIFETIME_S: Final = 600
# [I] the token answer beyond access_token (observed) follows RFC 6749 section 5.1.
TOKEN_TYPE: Final = "Bearer"  # noqa: S105  # a token type, not a secret

# -- Telegrams (IF001-04..06) ----------------------------------------------------------------------
# [O] telegram types of the request, notice answer and result; [I] those of the portal's answers
# and of the notice itself follow the same R(equest)/S(end) pattern.
REQUEST_TELEGRAM: Final = "IFA0301-R01"
REQUEST_ANSWER_TELEGRAM: Final = "IFA0301-S01"
NOTICE_TELEGRAM: Final = "IFA0302-R01"
NOTICE_ANSWER_TELEGRAM: Final = "IFA0302-S01"
RESULT_TELEGRAM: Final = "IFA0303-R01"
RESULT_ANSWER_TELEGRAM: Final = "IFA0303-S01"
# [O] mode "1" is what integrations send.
ACCEPTED_MODES: Final = frozenset({"1"})
# [O] TL-<provider digits>-<YYMMDDhhmmss>-<4-digit seq>
TELEGRAM_ID_PATTERN: Final = re.compile(r"^TL-(?P<provider>\d{8})-(?P<stamp>\d{12})-(?P<seq>\d{4})$")
# [O] point-in-time inquiry; latest and range inquiries exist but their syntax is unknown.
INQUIRY_PATTERN: Final = re.compile(r"^Date=(?P<date>\d{8})$")
# [I] processId format.
PROCESS_ID_PREFIX: Final = "PR"

# [I] errorCode values: the code list is unpublished. Empty string means success.
ERROR_NONE: Final = ""
ERROR_STILL_PROCESSING: Final = "EW0001"  # result not ready yet; poll again
ERROR_MALFORMED_TELEGRAM: Final = "EE0001"  # header or body does not follow the interface
ERROR_UNAUTHORIZED: Final = "EE0002"  # missing, unknown or expired Bearer token
ERROR_DUPLICATE_TELEGRAM: Final = "EE0003"  # telegramId already used
ERROR_UNKNOWN_PROCESS: Final = "EE0004"  # processId/telegramId pair not known for this token
ERROR_PROVIDER_FAILURE: Final = "EE0100"  # an intermediate server (中間サーバー) answered an error
ERROR_SYSTEM: Final = "EE9999"
# [I] a code the relay cannot know (the list is unpublished): what scenario unknown-error-before-notice
# answers to a /result called before the completion notice. Whether the real portal answers an early
# call at all is unknown [O]; the relay must wait and retry on an unknown code, not fail.
ERROR_UNLISTED: Final = "EQ0999"
# [I] HTTP status accompanying each errorCode: business outcomes ride on 200, protocol errors do not.
HTTP_STATUS_BY_ERROR: Final = {
    ERROR_NONE: 200,
    ERROR_STILL_PROCESSING: 200,
    ERROR_PROVIDER_FAILURE: 200,
    ERROR_UNLISTED: 200,
    ERROR_MALFORMED_TELEGRAM: 400,
    ERROR_UNAUTHORIZED: 401,
    ERROR_UNKNOWN_PROCESS: 404,
    ERROR_DUPLICATE_TELEGRAM: 409,
    ERROR_SYSTEM: 500,
}

# -- Datasets ----------------------------------------------------------------------------------------
# [I] dataset codes: a public relay lists 14-digit TM… codes; these two values are placeholders.
DATASETS: Final = {
    "地方税関係情報": "TM000000000002",
    "予防接種関係情報": "TM000000000003",
}
LOCAL_TAX: Final = "地方税関係情報"
VACCINATION: Final = "予防接種関係情報"
# [C] municipalities keep vaccination records for 5 years (予防接種法施行規則).
VACCINATION_RETENTION_YEARS: Final = 5
# [C] resident tax for fiscal year N is decided in June of N; [I] the exact day.
FISCAL_YEAR_DECIDED_MONTH_DAY: Final = (6, 1)


def fiscal_year_decided_on(fiscal_year: int) -> date:
    month, day = FISCAL_YEAR_DECIDED_MONTH_DAY
    return date(fiscal_year, month, day)


# -- Completion notice (IF001-05) --------------------------------------------------------------------
# [O] observed integrations wait up to about 6 minutes; [I] the portal's retry policy.
NOTICE_MAX_ATTEMPTS: Final = 6
NOTICE_BACKOFF_BASE_S: Final = 2.0
