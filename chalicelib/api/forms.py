"""Reading requests strictly: form bodies, query strings, single-valued headers, cookies.

Chalice hands us raw bodies; these helpers refuse oversize, undecodable or ambiguous input
before anything reaches the domain.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

from chalice.app import Request

from chalicelib.domain.oauth.errors import InvalidRequest, OAuthError

MAX_FORM_BYTES = 16 * 1024
# Unknown OAuth parameters are ignored, not refused (RFC 6749 section 3.1): these bounds keep what
# is ignored cheap. A body or query of more parameters, or a parameter name longer than this, is
# refused before anything is read.
MAX_FIELDS = 30
MAX_NAME_LENGTH = 64
FORM = "application/x-www-form-urlencoded"


class BodyTooLarge(InvalidRequest):
    status = 413


class UnsupportedMediaType(InvalidRequest):
    status = 415


def _content_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


def form_fields(request: Request) -> dict[str, list[str]]:
    """The form body of a POST. Routes accept every content type so that a wrong one is refused
    here, in the endpoint's own error format, instead of by Chalice's generic 415."""
    if _content_type(request) != FORM:
        raise UnsupportedMediaType(f"the body must be {FORM}", check="content-type")
    raw = request.raw_body or b""
    body = raw.encode() if isinstance(raw, str) else raw
    if len(body) > MAX_FORM_BYTES:
        raise BodyTooLarge(f"the body is larger than {MAX_FORM_BYTES} bytes", check="body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not a valid form encoding", check="body") from None
    if text.count("&") + 1 > MAX_FIELDS:  # as parse_qs counts them, before it splits anything
        raise InvalidRequest(f"more than {MAX_FIELDS} parameters", check="body")
    try:
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS)
    except ValueError:
        raise InvalidRequest("the body is not a valid form encoding", check="body") from None
    _check_names(fields, "body")
    return fields


def query_fields(request: Request) -> dict[str, list[str]]:
    params = request.query_params
    if not params:
        return {}
    fields = {name: list(params.getlist(name)) for name in params}
    if sum(len(values) for values in fields.values()) > MAX_FIELDS:
        raise InvalidRequest(f"more than {MAX_FIELDS} parameters", check="query")
    _check_names(fields, "query")
    return fields


def _check_names(fields: dict[str, list[str]], where: str) -> None:
    if any(len(name) > MAX_NAME_LENGTH for name in fields):
        raise InvalidRequest(f"a parameter name is longer than {MAX_NAME_LENGTH} characters", check=where)


def single_header(request: Request, name: str, *, error: type[OAuthError] = InvalidRequest) -> str | None:
    """A header that must appear at most once. A repeat shows either as a comma-joined value
    (HTTP APIs, chalice local) or as several entries of the REST API event's multiValueHeaders,
    of which Chalice's ``headers`` keep only the last."""
    value = request.headers.get(name)
    repeated = value is not None and "," in value
    if not repeated:
        original = request.to_original_event() if hasattr(request, "to_original_event") else {}
        multi = original.get("multiValueHeaders") or {}
        repeated = any(key.lower() == name.lower() and len(values or []) > 1 for key, values in multi.items())
    if repeated:
        raise error(f"the {name} header appears more than once", check=name.lower())
    return value


def cookie(request: Request, name: str) -> str:
    try:
        jar = SimpleCookie(request.headers.get("cookie", ""))
    except CookieError:
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""
