"""Strict parsing of compact JOSE parts, shared by the client-assertion and DPoP verifiers.

Strict on purpose: no padding, no duplicate members, no NaN/Infinity, so that no two parsers can
read different values out of the same token (RFC 7515 section 4, RFC 7519 section 4).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def b64url_decode(segment: str) -> bytes:
    """RFC 7515 section 2: base64url without padding. Raises ``ValueError`` when malformed."""
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 7515 section 4 and RFC 7519 section 4: duplicate member names are rejected, so that no
    # two parsers can read different values out of the same token.
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError("duplicate member")
        result[name] = value
    return result


def no_constants(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")  # NaN / Infinity are not JSON (RFC 8259 section 6)


def json_object(segment: str) -> dict[str, Any] | None:
    try:
        value = json.loads(
            b64url_decode(segment).decode("utf-8"),
            object_pairs_hook=no_duplicates,
            parse_constant=no_constants,
        )
    except (ValueError, binascii.Error, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def numeric_date(value: Any) -> float | None:
    """RFC 7519 section 2 NumericDate: a JSON number (not a boolean), finite, as float seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None
