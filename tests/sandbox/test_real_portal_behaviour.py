"""Behaviours the real portal may show that the sandbox's own guesses hid: callbacks in the observed
forms, an unknown errorCode from /result before the completion notice, and the sandbox's
independence from the relay's code."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.clock import ManualClock
from sandbox.personas import ALL_PERSONA_DIRS, load_personas
from sandbox.portal import ConsentPage, ErrorPage, Portal, Timing
from sandbox.scenarios import Scenario, ScenarioBook
from sandbox.web import create_app_side
from tests.sandbox.conftest import (
    LOCAL_TAX_SERVICE,
    VACCINATION_SERVICE,
    ZERO,
    NoticeReceiver,
    decoded,
    fetch,
    query_of,
    sign_in_session,
    start_retrieval,
)

STATE = "relay-state-123"
SANDBOX = Path(__file__).resolve().parents[2] / "sandbox"


def header_of(answer: object) -> dict[str, str]:
    return answer.body["commonHeader"]  # type: ignore[attr-defined, no-any-return]


# -- callbacks ---------------------------------------------------------------------------------------------


def test_the_default_callback_style_is_the_observed_one(portal: Portal) -> None:
    # (the relay reads both forms since issue [15]: the sandbox answers as the portal is observed to)
    assert query_of(portal.cancel(sign_in_session(portal))) == {"code": "access_denied", "state": STATE}
    expired = query_of(portal.sign_in(sign_in_session(portal), "expired-certificate", "1234"))
    assert expired == {"state": "Certificate expired"}


def test_the_oauth_style_is_still_available(portal: Portal) -> None:
    portal.set_callback_style("oauth")
    assert query_of(portal.cancel(sign_in_session(portal)))["error"] == "access_denied"
    expired = query_of(portal.sign_in(sign_in_session(portal), "expired-certificate", "1234"))
    assert (expired["error"], expired["state"]) == ("certificate_expired", STATE)


def test_observed_cancel_at_sign_in_sends_code_access_denied_and_the_state(portal: Portal) -> None:
    portal.set_callback_style("observed")
    assert query_of(portal.cancel(sign_in_session(portal))) == {"code": "access_denied", "state": STATE}


def test_observed_refused_consent_sends_code_access_denied_and_the_state(portal: Portal) -> None:
    portal.set_callback_style("observed")
    session = sign_in_session(portal)
    assert isinstance(portal.sign_in(session, "salaried", "1234"), ConsentPage)
    assert query_of(portal.consent(session, agree=False)) == {"code": "access_denied", "state": STATE}


def test_observed_expired_certificate_replaces_the_state(portal: Portal) -> None:
    portal.set_callback_style("observed")
    query = query_of(portal.sign_in(sign_in_session(portal), "expired-certificate", "1234"))
    assert query == {"state": "Certificate expired"}


def test_a_locked_card_keeps_its_own_error_in_either_style(portal: Portal) -> None:
    portal.set_callback_style("observed")
    session = sign_in_session(portal)
    portal.sign_in(session, "locked-card", "1234")
    assert query_of(portal.leave_locked(session))["error"] == "card_locked"


def test_the_callback_style_per_persona_beats_the_style_for_everyone(portal: Portal) -> None:
    portal.set_callback_style("observed", persona="expired-certificate")
    expired = query_of(portal.sign_in(sign_in_session(portal), "expired-certificate", "1234"))
    assert expired == {"state": "Certificate expired"}
    # a cancel before any card is chosen has no persona: the style for everyone applies
    portal.set_callback_style("oauth")
    assert query_of(portal.cancel(sign_in_session(portal)))["error"] == "access_denied"
    portal.set_callback_style("oauth", persona="salaried")
    portal.set_callback_style("observed")
    session = sign_in_session(portal)
    portal.sign_in(session, "salaried", "1234")
    assert query_of(portal.consent(session, agree=False))["error"] == "access_denied"
    with pytest.raises(KeyError):
        portal.set_callback_style("observed", persona="nobody")


def test_a_persona_file_or_the_configuration_can_choose_the_observed_style(
    clock: ManualClock, receiver: NoticeReceiver
) -> None:
    personas = load_personas(*ALL_PERSONA_DIRS)
    personas["expired-certificate"] = personas["expired-certificate"].model_copy(
        update={"callback_style": "observed"}
    )
    by_persona = Portal((LOCAL_TAX_SERVICE,), personas, clock, timing=ZERO, send_notice=receiver)
    expired = query_of(by_persona.sign_in(sign_in_session(by_persona), "expired-certificate", "1234"))
    assert expired == {"state": "Certificate expired"}
    configured = Portal(
        (LOCAL_TAX_SERVICE,),
        load_personas(),
        clock,
        timing=ZERO,
        scenarios=ScenarioBook(callback_style="observed"),
        send_notice=receiver,
    )
    assert query_of(configured.cancel(sign_in_session(configured)))["code"] == "access_denied"
    # a test override still wins over the configuration, and reset forgets it
    configured.set_callback_style("oauth")
    assert query_of(configured.cancel(sign_in_session(configured)))["error"] == "access_denied"
    configured.reset()
    assert query_of(configured.cancel(sign_in_session(configured)))["code"] == "access_denied"


def test_reset_restores_the_default_style(portal: Portal) -> None:
    portal.set_callback_style("oauth")
    portal.reset()
    assert isinstance(portal.cancel("gone"), ErrorPage)
    assert query_of(portal.cancel(sign_in_session(portal)))["code"] == "access_denied"


def test_the_callback_style_is_set_over_http(portal: Portal) -> None:
    client = create_app_side(portal).test_client()
    answer = client.post("/sandbox/scenario", json={"callback_style": "observed"})
    assert answer.status_code == 200
    assert answer.get_json()["callback_style"] == "observed"
    assert query_of(portal.cancel(sign_in_session(portal)))["code"] == "access_denied"
    both = client.post(
        "/sandbox/scenario",
        json={"scenario": "unknown-error-before-notice", "callback_style": "oauth", "persona": "salaried"},
    )
    assert both.status_code == 200
    assert client.post("/sandbox/scenario", json={"callback_style": "nope"}).status_code == 400
    assert client.post("/sandbox/scenario", json={"persona": "salaried"}).status_code == 400
    refused = client.post("/sandbox/scenario", json={"callback_style": "observed", "persona": "nobody"})
    assert refused.status_code == 400


# -- /result before the completion notice ----------------------------------------------------------------


def test_result_before_the_notice_answers_an_unknown_error_code_then_the_data(
    portal: Portal, receiver: NoticeReceiver
) -> None:
    # GIVEN the scenario, and a retrieval whose data is ready (zero delays) but not yet notified
    portal.set_scenario(Scenario.UNKNOWN_ERROR_BEFORE_NOTICE)
    retrieval = start_retrieval(portal)
    # WHEN the relay calls /result early, even twice
    for _ in range(2):
        early = fetch(portal, retrieval)
        # THEN it hears an errorCode that is neither success, "still processing" nor any listed code
        assert early.status == 200
        assert header_of(early)["errorCode"] == "EQ0999"
        assert header_of(early)["processId"] == retrieval.process_id
        assert "selfPersonalDataProvisionInfo" not in early.body
    assert [record.outcome for record in portal.history()] == ["pending"]
    # AND once the notice has been sent, /result answers the data
    (notice,) = portal.deliver_due_notices()
    assert notice.delivered
    ready = fetch(portal, retrieval)
    assert header_of(ready)["errorCode"] == ""
    assert decoded(ready)
    assert [record.outcome for record in portal.history()] == ["provided"]


def test_the_data_follows_a_sent_notice_even_if_the_relay_did_not_accept_it(
    portal: Portal, receiver: NoticeReceiver
) -> None:
    portal.set_scenario(Scenario.UNKNOWN_ERROR_BEFORE_NOTICE, persona="real-shapes-vaccination")
    retrieval = start_retrieval(portal, "real-shapes-vaccination", VACCINATION_SERVICE)
    assert header_of(fetch(portal, retrieval))["errorCode"] == "EQ0999"
    receiver.answers = ["down"]
    (notice,) = portal.deliver_due_notices()
    assert not notice.delivered
    assert header_of(fetch(portal, retrieval))["errorCode"] == ""


def test_before_the_data_is_ready_the_scenario_still_answers_the_unknown_code(
    make_portal: Callable[..., Portal], clock: ManualClock
) -> None:
    portal = make_portal(Timing(result_delay_s=30, notice_delay_s=1, hang_s=0))
    portal.set_scenario(Scenario.UNKNOWN_ERROR_BEFORE_NOTICE)
    retrieval = start_retrieval(portal)
    assert header_of(fetch(portal, retrieval))["errorCode"] == "EQ0999"  # not EW0001
    clock.advance(30)
    assert portal.deliver_due_notices() == []  # the notice is due 1 s after the data
    assert header_of(fetch(portal, retrieval))["errorCode"] == "EQ0999"
    clock.advance(1)
    assert len(portal.deliver_due_notices()) == 1
    assert header_of(fetch(portal, retrieval))["errorCode"] == ""


# -- independence ----------------------------------------------------------------------------------------------


def test_the_sandbox_imports_nothing_from_the_relay() -> None:
    """It stands for the portal: field names and guesses are its own, so it catches the relay's
    misreadings instead of repeating them."""
    offending = []
    for path in sorted(SANDBOX.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offending += [
                f"{path.name}: {name}" for name in names if name.split(".")[0] in {"chalicelib", "app"}
            ]
    assert offending == []
