"""The relay's own telegram values for Mynaportal (IF001-04..06) and the portal value types: pure,
no network."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from chalicelib.adapters import mynaportal_inferred as inferred
from chalicelib.adapters.mynaportal import MynaportalClient, PortalClientConfig, PortalEndpoints
from chalicelib.domain.portal import (
    PortalAuthorizationFailed,
    PortalError,
    PortalProtocolError,
    PortalRejected,
    PortalToken,
    PortalUnavailable,
    ResultReady,
)

TELEGRAM_ID = re.compile(r"^TL-\d{8}-\d{12}-\d{4}$")
NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
# Port 9 (discard) on loopback: nothing listens, and a test that reached it would fail loudly.
NOWHERE = "http://127.0.0.1:9"


def unreachable_client() -> MynaportalClient:
    endpoints = PortalEndpoints(
        authorize_url=f"{NOWHERE}/authorize",
        token_url=f"{NOWHERE}/token",
        request_url=f"{NOWHERE}/request",
        result_url=f"{NOWHERE}/result",
    )
    return MynaportalClient(PortalClientConfig(endpoints, client_cert=None, client_key=None, ca_bundle=None))


def test_a_telegram_id_has_the_observed_format() -> None:
    assert TELEGRAM_ID.fullmatch(inferred.new_telegram_id("00000001", NOW))


def test_the_telegram_id_stamp_is_japan_time() -> None:
    # 15:30 UTC on 27 November is 00:30 on 28 November in Japan.
    assert inferred.new_telegram_id("00000001", NOW).split("-")[2] == "261128003000"


def test_the_telegram_id_stamp_does_not_depend_on_the_offset_it_is_given() -> None:
    same_instant = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert inferred.new_telegram_id("00000001", same_instant).split("-")[2] == "261128003000"


def test_a_naive_time_is_refused_for_a_telegram_id() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        inferred.new_telegram_id("00000001", datetime(2026, 11, 27, 15, 30))


def test_the_telegram_id_carries_the_provider_digits_of_the_client_id() -> None:
    provider = inferred.provider_digits("SP12345678_AA0002")
    assert inferred.new_telegram_id(provider, NOW).startswith("TL-12345678-")


@pytest.mark.parametrize(
    "client_id",
    [
        "",
        "SP1234567_AA0001",
        "SP123456789_AA0001",
        "sp12345678_aa0001",
        "SP12345678_AA001",
        "SP12345678-AA0001",
    ],
)
def test_a_malformed_client_id_is_refused(client_id: str) -> None:
    with pytest.raises(ValueError, match="SP########_XX####"):
        inferred.provider_digits(client_id)


def test_a_request_for_a_malformed_client_id_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="SP########_XX####"):
        unreachable_client().start_request(
            client_id="SP1_AA1", access_token="t0ken", inquiry_date=date(2026, 11, 27), now=NOW
        )


def test_a_token_that_could_break_the_authorization_header_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="header-safe") as refused:
        unreachable_client().start_request(
            client_id="SP00000001_AA0001",
            access_token="secret\r\nX-Injected: 1",
            inquiry_date=date(2026, 11, 27),
            now=NOW,
        )
    assert "secret" not in str(refused.value)


def test_the_sequence_of_telegram_ids_is_random() -> None:
    sequences = {inferred.new_telegram_id("00000001", NOW)[-4:] for _ in range(50)}
    assert len(sequences) > 1


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        ("access_denied", "cancelled"),
        ("certificate_expired", "certificate_expired"),
        ("card_locked", "card_locked"),
        ("server_error", "other"),
        ("", "other"),
    ],
)
def test_the_portal_authorization_error_is_classified(error: str, refusal: str) -> None:
    assert inferred.classify_authorization_error(error) == refusal


def test_a_token_repr_does_not_show_the_token() -> None:
    token = PortalToken(access_token="very-secret-token", expires_in=900)
    assert "very-secret-token" not in repr(token)
    assert "very-secret-token" not in str(token)
    assert "900" in repr(token)


def test_a_ready_result_repr_does_not_show_the_data() -> None:
    ready = ResultReady(self_personal_data='[{"神奈川県川崎市": {"地方税関係情報": []}}]')
    assert "川崎" not in repr(ready)
    assert "川崎" not in str(ready)


def test_portal_values_are_frozen() -> None:
    token = PortalToken(access_token="t", expires_in=None)
    with pytest.raises(AttributeError):
        token.access_token = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("error", "code", "category"),
    [
        (PortalUnavailable, "portal-unavailable", "unavailable"),
        (PortalAuthorizationFailed, "portal-authorization-failed", "forbidden"),
        (PortalRejected, "portal-rejected", "unavailable"),
        (PortalProtocolError, "portal-protocol-error", "unavailable"),
    ],
)
def test_each_portal_error_has_a_stable_code_under_one_base(
    error: type[PortalError], code: str, category: str
) -> None:
    assert issubclass(error, PortalError)
    assert (error.code, error.category) == (code, category)


def test_plain_http_is_refused_for_a_portal_endpoint_off_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        PortalEndpoints(
            authorize_url="https://app-test.api.myna.go.jp/online-authorization-web/oauth/authorize",
            token_url="http://sp-test.api.myna.go.jp/online-authorization-web/oauth/token",
            request_url="https://sp-test.api.myna.go.jp/online-resource-web/request",
            result_url="https://sp-test.api.myna.go.jp/online-resource-web/result",
        )


@pytest.mark.parametrize(
    ("error", "code", "refusal"),
    [
        (None, "access_denied", "cancelled"),  # observed: the cancel where the code would be
        ("access_denied", None, "cancelled"),  # the OAuth form
        ("access_denied", "real-code", "cancelled"),  # an error wins over a code
        ("certificate_expired", None, "certificate_expired"),
        ("server_error", None, "other"),
        ("", None, "other"),
        (None, "real-code", None),  # a code to exchange
        (None, None, None),
    ],
)
def test_the_callback_error_is_classified(error: str | None, code: str | None, refusal: str | None) -> None:
    assert inferred.classify_callback_error(error, code) == refusal


@pytest.mark.parametrize(
    ("state", "refusal"),
    [
        ("Certificate expired", "certificate_expired"),  # observed, literally
        ("certificate expired", None),
        ("Certificate expired ", None),
        ("access_denied", None),
        ("AbCdEfGhIjKlMnOpQrStUv.x", None),
    ],
)
def test_a_state_replaced_by_the_portals_error_text_is_classified(state: str, refusal: str | None) -> None:
    assert inferred.classify_callback_state(state) == refusal


@pytest.mark.parametrize("client_id", ["SP12345678_AB1234", "SP00000001_AA0001", "SP99999999_ZZ0000"])
def test_a_real_service_id_is_a_client_id(client_id: str) -> None:
    # the research's form: any two capital letters, not only "AA" (docs/mynaportal.md)
    assert inferred.is_client_id(client_id)
    assert inferred.provider_digits(client_id) == client_id[2:10]


@pytest.mark.parametrize(
    "client_id", ["SP12345678_ab1234", "SP12345678_A11234", "SP12345678_ABC123", "SP12345678_ＡＢ1234"]
)
def test_a_service_id_needs_two_capital_ascii_letters(client_id: str) -> None:
    assert not inferred.is_client_id(client_id)


def test_a_request_for_a_real_service_id_goes_out() -> None:
    # SP12345678_AB1234 passes the client's own check: the call reaches the (unreachable) network
    with pytest.raises(PortalUnavailable):
        unreachable_client().start_request(
            client_id="SP12345678_AB1234", access_token="t0ken", inquiry_date=date(2026, 11, 27), now=NOW
        )
    with pytest.raises(PortalUnavailable):
        unreachable_client().exchange_code(
            client_id="SP12345678_AB1234", code="c0de", redirect_uri="https://relay.example/portal/callback"
        )
