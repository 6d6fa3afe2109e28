"""Reading OAuth request parameters to the letter of RFC 6749 section 3.1.

Parameters an endpoint does not recognise are ignored, not refused (RFC 6749 sections 3.1 and
3.2, RFC 9126 section 2.1); a parameter must not repeat, known or not; a parameter sent without a
value is treated as omitted. The HTTP layer bounds how many parameters a request may carry and how
long their names may be, so that ignoring them costs nothing; it logs the names it ignored (as
``parameter_name`` gives them), never their values.

Light on purpose (no JOSE, no AWS): the consent page imports it at cold start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from chalicelib.domain.oauth.errors import InvalidRequest

MAX_PARAMETER_LENGTH = 2048
MAX_ASSERTION_LENGTH = 8192
# The languages of the consent interstitial (``ui_locales_supported`` in the metadata).
UI_LOCALES: tuple[Literal["ja", "en"], ...] = ("ja", "en")


def parameter_name(name: str) -> str:
    """A parameter's name as it may be echoed in an error or logged: at most 40 characters of
    ``[A-Za-z0-9_.:-]`` (anything else becomes ``?``), so it is always valid NQSCHAR text."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "?", name[:40]) or "?"


def single_values(form: Mapping[str, list[str]], accepted: frozenset[str]) -> dict[str, str]:
    """The ``accepted`` parameters of a form, one value each. RFC 6749 section 3.1: no parameter
    may repeat (refused, known or not, naming it); the server ignores parameters it does not
    recognise (left out of the answer, see ``ignored_parameters``). Every value, read or ignored,
    is held to the length limit."""
    for name, values in form.items():
        if len(values) != 1:
            raise InvalidRequest("parameter repeated", check=parameter_name(name))
        limit = MAX_ASSERTION_LENGTH if name == "client_assertion" else MAX_PARAMETER_LENGTH
        if len(values[0]) > limit:
            raise InvalidRequest(f"longer than {limit} characters", check=parameter_name(name))
    return {name: values[0] for name, values in form.items() if name in accepted}


def ignored_parameters(form: Mapping[str, list[str]], accepted: frozenset[str]) -> list[str]:
    """The names (``parameter_name``) of the parameters of ``form`` an endpoint ignores."""
    return sorted(parameter_name(name) for name in form if name not in accepted)


def ui_language(ui_locales: str | None) -> Literal["ja", "en"] | None:
    """OIDC Core 3.1.2.1 ``ui_locales``: space-separated BCP 47 tags in order of preference; the
    first whose primary language subtag we support (``en-US ja`` is en, ``fr ja`` is ja). None
    when no tag is supported: the page then chooses as usual (``lang``, Accept-Language, ja)."""
    for tag in (ui_locales or "").split():
        primary = tag.split("-", 1)[0].lower()
        for supported in UI_LOCALES:
            if primary == supported:
                return supported
    return None
