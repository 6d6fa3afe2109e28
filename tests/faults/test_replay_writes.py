"""The jti replay store inside the steps' own transactions (issue 8: fewer round trips).

PAR, the token request and a ready pickup write their client assertion's and DPoP proof's jti as
items of the step's one ``TransactWriteItems``, instead of a conditional ``PutItem`` each before
it. What must not change with that: a replayed jti is refused with the error it always had, before
any other conflict of the same transaction, and a refused request writes nothing; a transaction
that botocore retried after its answer was lost is not mistaken for its own replay. Where no
transaction follows (a pickup that is still pending), the jti keeps its own put.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import container
from tests.fakes import ShiftedClock
from tests.faults.harness import AwsFaults, Tables, pick_up, problem_of, redeemed, run_due, to_portal
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.partner_helpers import Pkce

TOKEN_URL = f"{ISSUER}/token"
SELF_INFO = f"{ISSUER}/v1/self-info"


def writes(aws_faults: AwsFaults) -> dict[str, int]:
    """The DynamoDB write calls made since the counts last started again."""
    names = ("dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem", "dynamodb.TransactWriteItems")
    return {name: aws_faults.attempts[name] for name in names if aws_faults.attempts[name]}


def start_counting(aws_faults: AwsFaults) -> None:
    aws_faults.heal()
    aws_faults.attempts.clear()


def jti_items(tables: Tables, namespace: str) -> list[str]:
    return sorted(item["pk"]["S"] for item in tables.state_items(f"JTI#{namespace}"))


def assert_oauth_error(response: Any, status: int, error: str, check: str) -> None:
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert body["error"] == error
    assert body["error_description"].startswith(f"{check}:"), body["error_description"]


def another(journey: Journey) -> Journey:
    return Journey(
        client=journey.client,
        partner=journey.partner,
        sandbox=journey.sandbox,
        pkce=Pkce(),
        state="partner-state-2",
    )


def code_of(journey: Journey) -> str:
    to_portal(journey)
    return location_query(journey.callback())["code"]


def dpop_get(journey: Journey, token: str, proof: str) -> Any:
    return journey.client.http.get("/v1/self-info", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


# -- one write per step -------------------------------------------------------------------------------


def test_par_token_and_a_ready_pickup_each_make_one_write_that_spends_their_jtis(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables
) -> None:
    # GIVEN a partner going through a flow
    # WHEN it pushes its request
    start_counting(aws_faults)
    assert journey.push().status_code == 201
    # THEN PAR made one write, which remembered the assertion's jti
    assert writes(aws_faults) == {"dynamodb.TransactWriteItems": 1}
    assert len(jti_items(tables, "ca:")) == 1
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal("salaried")
    code = location_query(journey.callback())["code"]
    # WHEN it redeems its code
    start_counting(aws_faults)
    issued = journey.redeem(code)
    # THEN the token request made one write, with the assertion's and the proof's jti
    assert issued.status_code == 200, issued.body
    assert writes(aws_faults) == {"dynamodb.TransactWriteItems": 1}
    assert (len(jti_items(tables, "ca:")), len(jti_items(tables, "dpop:"))) == (2, 1)
    # WHEN it picks up the sealed delivery
    assert run_due(journey) == {"ready": 1}
    start_counting(aws_faults)
    picked = pick_up(journey, json.loads(issued.body)["access_token"])
    # THEN the pickup made one write, with the proof's jti
    assert picked.status_code == 200, picked.body
    assert writes(aws_faults) == {"dynamodb.TransactWriteItems": 1}
    assert len(jti_items(tables, "dpop:")) == 2
    assert tables.statuses() == ["picked_up"]


def test_a_pickup_while_the_portal_is_working_remembers_its_proof_with_a_put_of_its_own(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables
) -> None:
    # GIVEN a token for a flow the portal is still working on
    token = redeemed(journey)
    before = jti_items(tables, "dpop:")
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    # WHEN the partner asks for its delivery
    start_counting(aws_faults)
    pending = dpop_get(journey, token, proof)
    # THEN it is told to come back, and the proof's jti is spent by one put (no transaction follows)
    assert pending.status_code == 202
    assert writes(aws_faults) == {"dynamodb.PutItem": 1}
    assert len(jti_items(tables, "dpop:")) == len(before) + 1
    # AND the same proof sent again is a replay
    assert dpop_get(journey, token, proof).status_code == 401


# -- a replay is refused as before, and writes nothing ----------------------------------------------


def test_a_replayed_assertion_at_par_is_refused_as_a_replay_and_writes_nothing(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN an assertion already used at PAR
    authentication = journey.partner.authentication(ISSUER)
    assert journey.push(**authentication).status_code == 201
    before = tables.snapshot()
    # WHEN another request is pushed with it
    again = another(journey).push(**authentication)
    # THEN it is refused naming the assertion's jti, and neither table changed
    assert_oauth_error(again, 401, "invalid_client", "client_assertion.jti")
    assert tables.snapshot() == before


def test_a_replayed_assertion_at_the_token_endpoint_is_refused_and_the_code_still_works(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN a fresh code, and an assertion the partner already used at PAR
    authentication = journey.partner.authentication(ISSUER)
    assert journey.push(**authentication).status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal("salaried")
    code = location_query(journey.callback())["code"]
    before = tables.snapshot()
    # WHEN the code is redeemed with the used assertion
    refused = journey.redeem(code, **authentication)
    # THEN it is refused naming the assertion's jti; nothing was written, not even the proof's jti
    assert_oauth_error(refused, 401, "invalid_client", "client_assertion.jti")
    assert tables.snapshot() == before
    # AND the code is still unused: a fresh assertion redeems it
    assert journey.redeem(code).status_code == 200


def test_a_replayed_proof_at_the_token_endpoint_is_refused_and_spends_only_the_assertion(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN a proof used to redeem one code, and a second flow's fresh code
    proof = journey.partner.dpop("POST", TOKEN_URL)
    assert journey.redeem(code_of(journey), dpop=proof).status_code == 200
    second = another(journey)
    code = code_of(second)
    before = tables.snapshot()
    spent = jti_items(tables, "ca:")
    # WHEN the second code is redeemed with the used proof
    refused = second.redeem(code, dpop=proof)
    # THEN it is refused naming the proof's jti; no token, the code unused, the flow and the audit
    # trail unchanged; only the request's own valid assertion is spent, as when it was remembered
    # before the proof was checked
    assert_oauth_error(refused, 400, "invalid_dpop_proof", "dpop.jti")
    after = tables.snapshot()
    assert [item for item in before if item not in after] == []
    (added,) = [item for item in after if item not in before]
    assert '"JTI#ca:' in added
    assert len(jti_items(tables, "ca:")) == len(spent) + 1
    assert second.redeem(code).status_code == 200


def test_an_assertion_and_a_proof_both_replayed_are_refused_for_the_assertion_first(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN an assertion and a proof that redeemed one code, and a second flow's fresh code
    authentication = journey.partner.authentication(ISSUER)
    proof = journey.partner.dpop("POST", TOKEN_URL)
    assert journey.redeem(code_of(journey), dpop=proof, **authentication).status_code == 200
    second = another(journey)
    code = code_of(second)
    before = tables.snapshot()
    # WHEN the second code is redeemed with both again (both jti items fail their condition)
    refused = second.redeem(code, dpop=proof, **authentication)
    # THEN the assertion is what is refused, as the checks' order always had it, and nothing changed
    assert_oauth_error(refused, 401, "invalid_client", "client_assertion.jti")
    assert tables.snapshot() == before


@pytest.fixture
def code_read_before_its_redemption(clock: ShiftedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token request reads its code as unused, and another redemption commits before its
    write: the flow's version condition fails inside the transaction. (The code's state lives in
    its flow since issue [13]: the request is handed the flow as it was before the redemption.)"""
    service = container.get_container().authorization
    code_flow = service._code_flow

    def as_before_its_redemption(code: str, *, now: Any) -> Any:
        flow = code_flow(code, now=now)
        if not flow.code_redeemed:
            return flow
        return flow.model_copy(
            update={
                "code_redeemed": False,
                "access_token_hash": None,
                "token_expires_at": None,
                "version": flow.version - 1,
            }
        )

    monkeypatch.setattr(service, "_code_flow", as_before_its_redemption)


def test_a_replayed_proof_meeting_a_code_used_meanwhile_is_refused_as_a_replay_and_revokes_nothing(
    journey: Journey, clock: ShiftedClock, tables: Tables, code_read_before_its_redemption: None
) -> None:
    # GIVEN a code redeemed with a proof, and a request that read the same code as still unused
    proof = journey.partner.dpop("POST", TOKEN_URL)
    code = code_of(journey)
    issued = journey.redeem(code, dpop=proof)
    assert issued.status_code == 200
    # WHEN that request carries the used proof too (its jti and the code both fail)
    refused = journey.redeem(code, dpop=proof)
    # THEN it is refused as a replayed proof, before the code: the code's replay handling (which
    # revokes what the code issued) never runs, and the first token still picks up
    assert_oauth_error(refused, 400, "invalid_dpop_proof", "dpop.jti")
    assert tables.statuses() == ["retrieving"]
    assert run_due(journey) == {"ready": 1}
    assert pick_up(journey, json.loads(issued.body)["access_token"]).status_code == 200


def test_a_code_used_meanwhile_revokes_and_still_spends_the_requests_assertion_and_proof(
    journey: Journey, clock: ShiftedClock, tables: Tables, code_read_before_its_redemption: None
) -> None:
    # GIVEN a redeemed code, and a request with a fresh assertion and proof that read it as unused
    code = code_of(journey)
    assert journey.redeem(code).status_code == 200
    authentication = journey.partner.authentication(ISSUER)
    proof = journey.partner.dpop("POST", TOKEN_URL)
    spent = (len(jti_items(tables, "ca:")), len(jti_items(tables, "dpop:")))
    # WHEN it is redeemed again and the transaction finds the code used
    refused = journey.redeem(code, dpop=proof, **authentication)
    # THEN the code's replay revokes what it issued (RFC 6749 4.1.2), as before; the refused
    # request's assertion and proof are spent all the same, as they were when remembered first
    assert_oauth_error(refused, 400, "invalid_grant", "code")
    assert tables.statuses() == ["revoked"]
    assert (len(jti_items(tables, "ca:")), len(jti_items(tables, "dpop:"))) == (spent[0] + 1, spent[1] + 1)
    assert_oauth_error(another(journey).push(**authentication), 401, "invalid_client", "client_assertion.jti")


def test_a_proof_replayed_at_a_ready_pickup_is_refused_and_the_delivery_waits(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN a proof spent on a pickup while the portal was working, and the delivery sealed since
    token = redeemed(journey)
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    assert dpop_get(journey, token, proof).status_code == 202
    assert run_due(journey) == {"ready": 1}
    before = tables.snapshot()
    # WHEN the proof is sent again for the ready delivery (the pickup's transaction is cancelled)
    refused = dpop_get(journey, token, proof)
    # THEN it is refused naming the proof's jti, and nothing changed: the delivery is still there
    assert refused.status_code == 401
    assert json.loads(refused.body)["error_description"].startswith("dpop.jti:")
    assert tables.snapshot() == before
    assert tables.statuses() == ["ready"]
    # AND a fresh proof picks it up
    assert pick_up(journey, token).status_code == 200


def test_the_proof_of_a_completed_pickup_replayed_is_refused_as_a_replay(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN a delivery picked up with a proof (spent in the pickup's transaction)
    token = redeemed(journey)
    assert run_due(journey) == {"ready": 1}
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    assert dpop_get(journey, token, proof).status_code == 200
    before = tables.snapshot()
    # WHEN the same request is sent again
    refused = dpop_get(journey, token, proof)
    # THEN the replayed proof is what is refused (not the delivery being gone), and nothing changed
    assert refused.status_code == 401
    assert json.loads(refused.body)["error_description"].startswith("dpop.jti:")
    assert tables.snapshot() == before
    # AND a fresh proof learns the delivery is gone
    gone = pick_up(journey, token)
    assert (gone.status_code, problem_of(gone)["check"]) == (410, "delivery.picked_up")
