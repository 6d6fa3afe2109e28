"""Reading requests strictly: form bodies, query strings, single-valued headers, cookies.

Chalice hands us raw bodies; these helpers refuse oversize, undecodable or ambiguous input
before anything reaches the domain.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from chalice.app import Request

from chalicelib.domain.oauth.errors import InvalidRequest

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 30
FORM = "application/x-www-form-urlencoded"


class BodyTooLarge(InvalidRequest):
    status = 413


def form_fields(request: Request) -> dict[str, list[str]]:
    raw = request.raw_body or b""
    body = raw.encode() if isinstance(raw, str) else raw
    if len(body) > MAX_FORM_BYTES:
        raise BodyTooLarge(f"the body is larger than {MAX_FORM_BYTES} bytes", check="body")
    try:
        text = body.decode("utf-8")
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not a valid form encoding", check="body") from None


def query_fields(request: Request) -> dict[str, list[str]]:
    params = request.query_params
    if not params:
        return {}
    return {name: list(params.getlist(name)) for name in params}


def single_header(request: Request, name: str) -> str | None:
    """A header that must appear at most once (API Gateway joins repeats with commas)."""
    value = request.headers.get(name)
    if value is not None and "," in value:
        raise InvalidRequest(f"{name} header repeated", check=name.lower())
    return value


def cookie(request: Request, name: str) -> str:
    try:
        jar = SimpleCookie(request.headers.get("cookie", ""))
    except CookieError:
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""
