"""The credentials of an ``Authorization`` header, read as RFC 9110 section 11 says.

``credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`` (section 11.4), and the scheme is a
case-insensitive token (section 11.1): ``DPoP``, ``dpop`` and ``DPOP`` name one scheme, and one or
more spaces may follow it. Every place that reads a token from ``Authorization`` (pickup's DPoP
access token, the audit endpoints' bearer client assertion) goes through here, so none compares the
scheme case-sensitively or splits on exactly one space.
"""

from __future__ import annotations

import re
from functools import cache


@cache
def _pattern(scheme: str) -> re.Pattern[str]:
    # The credential itself is one run of non-space characters: what follows it may be only the
    # optional whitespace HTTP trims from a field value (RFC 9110 section 5.5).
    return re.compile(rf"{re.escape(scheme)} +(\S+)[ \t]*", re.IGNORECASE)


def credentials(authorization: str | None, scheme: str) -> str | None:
    """The credential after ``scheme`` in ``authorization``; None when the header is absent, names
    another scheme or carries no single credential."""
    if not authorization:
        return None
    match = _pattern(scheme).fullmatch(authorization)
    return match.group(1) if match else None
