"""Partner documents are kept per warm container for at most ``PARTNER_CACHE_MAX_TTL_S`` seconds: a
partner disabled by the operator (``relayctl``, another process the relay's cache never hears from)
may still be served until then, and is refused everywhere after (docs/operations.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import container
from chalicelib.domain.errors import PartnerNotFound
from chalicelib.settings import PARTNER_CACHE_MAX_TTL_S
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_authorization_refusals import another_journey, assert_oauth_error, registry
from tests.functional.test_delivery import pick_up, redeemed, run_due
from tests.functional.test_partner_audit import audit
from tests.security.helpers import assert_problem

JUST_BEFORE = PARTNER_CACHE_MAX_TTL_S - 1


def disable_elsewhere(journey: Journey, dynamodb_client: Any, resources: dict[str, str]) -> None:
    """What ``relayctl partners disable`` does: a write to the table, nothing told to the relay."""
    registry(dynamodb_client, resources).set_enabled(journey.partner.client_id, enabled=False)


def test_par_serves_a_just_disabled_partner_until_the_bound_then_refuses_it(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a warm container that has read the partner, which the operator then disables
    assert journey.push().status_code == 201
    disable_elsewhere(journey, dynamodb_client, resources)
    # WHEN it pushes again just before the bound THEN the cached document still serves it
    clock.advance(seconds=JUST_BEFORE)
    assert journey.push().status_code == 201
    # WHEN it pushes at the bound THEN it is refused, naming the client
    clock.advance(seconds=1)
    assert_oauth_error(journey.push(), 401, "invalid_client", "client_id")


def test_the_token_endpoint_refuses_a_disabled_partner_after_the_bound(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN two codes of one partner, which the operator then disables
    first = journey.to_partner_code()
    second_journey = another_journey(journey)
    second = second_journey.to_partner_code()
    disable_elsewhere(journey, dynamodb_client, resources)
    # WHEN the first is redeemed just before the bound THEN it is still exchanged
    clock.advance(seconds=JUST_BEFORE)
    assert journey.redeem(first).status_code == 200
    # WHEN the second is redeemed at the bound THEN the partner is refused
    clock.advance(seconds=1)
    assert_oauth_error(second_journey.redeem(second), 401, "invalid_client", "client_id")


def test_pickup_refuses_a_disabled_partner_after_the_bound(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a ready delivery whose partner's document this container has read, then disabled
    token, _ = redeemed(journey)
    assert run_due() == {"ready": 1}
    disable_elsewhere(journey, dynamodb_client, resources)
    # WHEN it picks up at the bound THEN it is refused, naming the client, and the delivery stays
    clock.advance(seconds=PARTNER_CACHE_MAX_TTL_S)
    assert_problem(pick_up(journey, token), 403, "delivery-forbidden", "client_id")


def test_pickup_serves_a_just_disabled_partner_before_the_bound(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a ready delivery whose partner this container has just read, then disabled
    token, _ = redeemed(journey)
    assert run_due() == {"ready": 1}
    disable_elsewhere(journey, dynamodb_client, resources)
    # WHEN it picks up before the bound THEN the cached document still serves it
    clock.advance(seconds=JUST_BEFORE)
    assert pick_up(journey, token).status_code == 200


def test_the_audit_endpoint_refuses_a_disabled_partner_after_the_bound(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a partner that reads its audit trail, then is disabled by the operator
    assert audit(journey).status_code == 200
    disable_elsewhere(journey, dynamodb_client, resources)
    # WHEN it reads again before the bound THEN it is served; at the bound THEN it is refused
    clock.advance(seconds=JUST_BEFORE)
    assert audit(journey).status_code == 200
    clock.advance(seconds=1)
    refused = audit(journey)
    assert refused.status_code == 401, refused.body
    assert json.loads(refused.body)["error_description"].startswith("client_id")


def test_a_change_made_through_this_containers_registry_is_seen_at_once(
    journey: Journey, clock: ShiftedClock
) -> None:
    # GIVEN a warm container that has read the partner
    assert journey.push().status_code == 201
    # WHEN the partner is disabled through this container's own registry
    container.get_container().partners.set_enabled(journey.partner.client_id, enabled=False)
    # THEN the very next request is refused: the registry forgot its cached entry
    assert_oauth_error(journey.push(), 401, "invalid_client", "client_id")


def test_a_partner_registered_after_an_unknown_id_was_asked_for_works_at_once(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a request naming a partner nobody has registered yet
    document = journey.partner.document()
    newcomer = {**document, "id": "newcomer-bank"}
    with pytest.raises(PartnerNotFound):
        container.get_container().partners.get("newcomer-bank")
    # WHEN the operator registers it (another process)
    registry(dynamodb_client, resources).register(newcomer)
    # THEN this container finds it on the next request: misses are not cached
    assert container.get_container().partners.get("newcomer-bank").partner.id == "newcomer-bank"


def test_a_zero_ttl_reads_the_table_on_every_request(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the cache turned off (RELAY_PARTNER_CACHE_TTL_S=0)
    monkeypatch.setenv("RELAY_PARTNER_CACHE_TTL_S", "0")
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(clock=clock))
    assert journey.push().status_code == 201
    # WHEN the operator disables the partner THEN the next request is refused, with no wait
    disable_elsewhere(journey, dynamodb_client, resources)
    assert_oauth_error(journey.push(), 401, "invalid_client", "client_id")
