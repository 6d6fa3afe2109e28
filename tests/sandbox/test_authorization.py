"""IF001-01/02/03 in the sandbox: authorize checks, card sign-in, consent, single-use codes."""

from __future__ import annotations

import pytest

from sandbox.clock import ManualClock
from sandbox.portal import ConsentPage, ErrorPage, LockedPage, Portal, SignInPage
from tests.sandbox.conftest import (
    LOCAL_TAX_SERVICE,
    VACCINATION_SERVICE,
    authorize_params,
    obtain_code,
    query_of,
    sign_in_session,
    token_form,
)


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "SP00000009_AA0001"},
        {"client_id": "not-a-client"},
        {"redirect_uri": LOCAL_TAX_SERVICE.redirect_uri + "/"},
        {"redirect_uri": LOCAL_TAX_SERVICE.redirect_uri.upper()},
        {"redirect_uri": "https://attacker.example/cb"},
    ],
)
def test_unknown_client_or_redirect_uri_gets_an_error_page_never_a_redirect(
    portal: Portal, overrides: dict[str, str]
) -> None:
    outcome = portal.authorize(authorize_params(**overrides))
    assert isinstance(outcome, ErrorPage)
    assert outcome.status == 400


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"login_type": "1"}, "invalid_request"),
        ({"login_type": ""}, "invalid_request"),
        ({"state": "x" * 513}, "invalid_request"),
    ],
)
def test_bad_parameters_redirect_with_an_oauth_error_and_the_state(
    portal: Portal, overrides: dict[str, str], error: str
) -> None:
    query = query_of(portal.authorize(authorize_params(**overrides)))
    assert query["error"] == error


def test_a_missing_state_is_refused(portal: Portal) -> None:
    params = authorize_params()
    del params["state"]
    query = query_of(portal.authorize(params))
    assert query["error"] == "invalid_request"
    assert "state" not in query


def test_a_repeated_parameter_is_refused(portal: Portal) -> None:
    params = authorize_params()
    params["state"] = ["a", "b"]
    assert query_of(portal.authorize(params))["error"] == "invalid_request"


def test_a_valid_request_shows_the_card_sign_in_with_every_persona(portal: Portal) -> None:
    page = portal.authorize(authorize_params())
    assert isinstance(page, SignInPage)
    assert len(page.personas) >= 8
    assert page.service == LOCAL_TAX_SERVICE


def test_the_right_pin_leads_to_consent_for_the_services_fixed_items(portal: Portal) -> None:
    session = sign_in_session(portal, VACCINATION_SERVICE)
    page = portal.sign_in(session, "parent-vaccination", "1234")
    assert isinstance(page, ConsentPage)
    assert page.service.items == ("予防接種関係情報",)


def test_agreement_redirects_with_a_code_and_the_state(portal: Portal) -> None:
    session = sign_in_session(portal)
    portal.sign_in(session, "salaried", "1234")
    outcome = portal.consent(session, agree=True)
    query = query_of(outcome)
    assert outcome.url.startswith(LOCAL_TAX_SERVICE.redirect_uri + "?")  # type: ignore[union-attr]
    assert query["state"] == "relay-state-123"
    assert len(query["code"]) >= 40


def test_a_sign_in_session_is_single_use(portal: Portal) -> None:
    session = sign_in_session(portal)
    portal.sign_in(session, "salaried", "1234")
    portal.consent(session, agree=True)
    assert isinstance(portal.consent(session, agree=True), ErrorPage)


def test_consent_without_sign_in_is_refused(portal: Portal) -> None:
    assert isinstance(portal.consent(sign_in_session(portal), agree=True), ErrorPage)


def test_refusing_consent_redirects_access_denied(portal: Portal) -> None:
    session = sign_in_session(portal)
    portal.sign_in(session, "salaried", "1234")
    query = query_of(portal.consent(session, agree=False))
    # as observed (issue [15]): the refusal comes back as code=access_denied with the state
    assert query == {"code": "access_denied", "state": "relay-state-123"}


def test_cancel_at_sign_in_redirects_access_denied(portal: Portal) -> None:
    session = sign_in_session(portal)
    assert query_of(portal.cancel(session))["code"] == "access_denied"  # as observed (issue [15])
    assert isinstance(portal.cancel(session), ErrorPage)


def test_three_wrong_pins_lock_the_card(portal: Portal) -> None:
    # GIVEN a sign-in session
    session = sign_in_session(portal)
    # WHEN the PIN is wrong twice, the page counts down
    first = portal.sign_in(session, "salaried", "0000")
    second = portal.sign_in(session, "salaried", "9999")
    assert isinstance(first, SignInPage)
    assert first.attempts_left == 2
    assert isinstance(second, SignInPage)
    assert second.attempts_left == 1
    # AND the third wrong PIN locks the card
    assert isinstance(portal.sign_in(session, "salaried", "1111"), LockedPage)
    # THEN even the right PIN, in a new session, meets a locked card
    assert isinstance(portal.sign_in(sign_in_session(portal), "salaried", "1234"), LockedPage)
    # AND leaving the locked page returns to the service with its own error
    query = query_of(portal.leave_locked(session))
    assert (query["error"], query["state"]) == ("card_locked", "relay-state-123")


def test_a_right_pin_resets_the_failure_count(portal: Portal) -> None:
    session = sign_in_session(portal)
    portal.sign_in(session, "salaried", "0000")
    portal.sign_in(session, "salaried", "0000")
    assert isinstance(portal.sign_in(session, "salaried", "1234"), ConsentPage)
    other = sign_in_session(portal)
    assert isinstance(portal.sign_in(other, "salaried", "0000"), SignInPage)
    assert isinstance(portal.sign_in(other, "salaried", "1234"), ConsentPage)


def test_an_already_locked_card_shows_the_locked_page(portal: Portal) -> None:
    assert isinstance(portal.sign_in(sign_in_session(portal), "locked-card", "1234"), LockedPage)


def test_an_expired_certificate_ends_in_its_own_redirect_error(portal: Portal) -> None:
    query = query_of(portal.sign_in(sign_in_session(portal), "expired-certificate", "1234"))
    # as observed (issue [15]): the state itself is replaced by the text
    assert query == {"state": "Certificate expired"}


def test_a_sign_in_session_expires(portal: Portal, clock: ManualClock) -> None:
    session = sign_in_session(portal)
    clock.advance(601)
    assert isinstance(portal.sign_in(session, "salaried", "1234"), ErrorPage)


def test_reset_unlocks_cards(portal: Portal) -> None:
    session = sign_in_session(portal)
    for _ in range(3):
        portal.sign_in(session, "salaried", "0000")
    portal.reset()
    assert isinstance(portal.sign_in(sign_in_session(portal), "salaried", "1234"), ConsentPage)


# -- IF001-03 token ------------------------------------------------------------------------------------


def test_a_code_is_exchanged_once_for_a_bearer_token(portal: Portal) -> None:
    code = obtain_code(portal)
    first = portal.token(token_form(code), client_provider=None, tls=False)
    assert first.status == 200
    assert first.body["token_type"] == "Bearer"
    assert first.body["expires_in"] > 0
    second = portal.token(token_form(code), client_provider=None, tls=False)
    assert (second.status, second.body["error"]) == (400, "invalid_grant")


def test_an_expired_code_is_refused(portal: Portal, clock: ManualClock) -> None:
    code = obtain_code(portal)
    clock.advance(60)
    assert portal.token(token_form(code), client_provider=None, tls=False).body["error"] == "invalid_grant"


def test_a_code_presented_with_another_redirect_uri_is_refused_and_used_up(portal: Portal) -> None:
    code = obtain_code(portal)
    wrong = portal.token(
        token_form(code, redirect_uri="http://127.0.0.1:8000/other"), client_provider=None, tls=False
    )
    assert wrong.body["error"] == "invalid_grant"
    assert portal.token(token_form(code), client_provider=None, tls=False).body["error"] == "invalid_grant"


def test_a_code_is_bound_to_its_service(portal: Portal) -> None:
    code = obtain_code(portal, service=LOCAL_TAX_SERVICE)
    answer = portal.token(token_form(code, VACCINATION_SERVICE), client_provider=None, tls=False)
    assert answer.body["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"code_verifier": "x"}, 400, "invalid_request"),
        ({"client_secret": "x"}, 400, "invalid_request"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"client_id": "SP00000009_AA0009"}, 401, "invalid_client"),
    ],
)
def test_token_requests_outside_the_observed_form_change_nothing(
    portal: Portal, change: dict[str, str], status: int, error: str
) -> None:
    code = obtain_code(portal)
    answer = portal.token(token_form(code, **change), client_provider=None, tls=False)
    assert (answer.status, answer.body["error"]) == (status, error)
    assert portal.token(token_form(code), client_provider=None, tls=False).status == 200


def test_a_missing_field_is_invalid_request(portal: Portal) -> None:
    form = token_form(obtain_code(portal))
    del form["redirect_uri"]
    answer = portal.token(form, client_provider=None, tls=False)
    assert answer.body["error"] == "invalid_request"
    assert "redirect_uri" in answer.body["error_description"]


def test_under_mtls_the_certificate_must_belong_to_the_client(portal: Portal) -> None:
    code = obtain_code(portal)
    refused = portal.token(token_form(code), client_provider="99999999", tls=True)
    assert (refused.status, refused.body["error"]) == (401, "invalid_client")
    assert portal.token(token_form(code), client_provider="00000001", tls=True).status == 200
