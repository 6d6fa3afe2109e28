"""Reading the credentials of an Authorization header (RFC 9110 sections 11.1 and 11.4)."""

from __future__ import annotations

import pytest

from chalicelib.domain.oauth.credentials import credentials


@pytest.mark.parametrize(
    "header", ["DPoP abc.def", "dpop abc.def", "DPOP abc.def", "DPoP   abc.def", "DPoP abc.def "]
)
def test_the_scheme_is_case_insensitive_and_one_or_more_spaces_may_follow_it(header: str) -> None:
    # GIVEN a DPoP credential spelt as RFC 9110 allows  WHEN it is read  THEN the token comes out
    assert credentials(header, "DPoP") == "abc.def"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "DPoP",
        "DPoP ",
        "DPoPabc",
        "Bearer abc",
        "DPoP abc def",
        "DPoP\tabc",
        " DPoP abc",
        "DPoP, abc",
    ],
)
def test_another_scheme_no_credential_or_two_credentials_are_not_read(header: str | None) -> None:
    assert credentials(header, "DPoP") is None
