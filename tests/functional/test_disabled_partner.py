"""Disabling a partner (``relayctl partners disable``) stops its flows wherever they are: nobody
goes to the portal for it, no code it is owed is exchanged, and nothing is sealed to its keys."""

from __future__ import annotations

import json
from typing import Any

from chalicelib import container
from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey, location_query


def disable(journey: Journey, dynamodb_client: Any, resources: dict[str, str]) -> None:
    store = DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
    PartnerRegistry(store, SystemClock(), allow_loopback=True).set_enabled(
        journey.partner.client_id, enabled=False
    )


def flow_documents(dynamodb_client: Any, table: str) -> list[dict[str, Any]]:
    return [
        json.loads(item["document"]["S"])
        for item in dynamodb_client.scan(TableName=table)["Items"]
        if item["pk"]["S"].startswith("FLOW#")
    ]


def test_disabled_while_the_resident_reads_the_consent_page_nobody_goes_to_the_portal(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a resident on the consent page of a partner the operator then disables
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    disable(journey, dynamodb_client, resources)
    before = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    # WHEN the resident continues
    refused = journey.decide()
    # THEN the page refuses, naming the client, and nothing changed
    assert refused.status_code == 400, refused.body
    assert "Location" not in refused.headers
    assert dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"] == before


def test_disabled_while_the_resident_is_at_the_portal_no_code_is_exchanged(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a resident who agreed at the portal for a partner disabled meanwhile
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal()
    disable(journey, dynamodb_client, resources)
    # WHEN the portal sends the resident back
    back = journey.callback()
    # THEN the resident returns to the partner refused, and the portal provided nothing
    assert back.status_code == 303
    assert location_query(back)["error"] == "access_denied"
    assert "code" not in location_query(back)
    assert journey.sandbox.portal.history() == []
    (flow,) = flow_documents(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert (flow["status"], flow["failure_reason"]) == ("failed", "partner.disabled")


def test_disabled_before_the_result_is_sealed_nothing_is_sealed_to_its_keys(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a partner holding its token while the portal prepares the result, then disabled
    code = journey.to_partner_code()
    assert journey.redeem(code).status_code == 200
    disable(journey, dynamodb_client, resources)
    # WHEN the scheduled run fetches the result
    container.get_container().delivery.process_due()
    # THEN the flow failed naming the reason, and no sealed payload exists
    table = resources["RELAY_STATE_TABLE"]
    assert not [
        i for i in dynamodb_client.scan(TableName=table)["Items"] if i["pk"]["S"].startswith("DELIVERY#")
    ]
    (flow,) = flow_documents(dynamodb_client, table)
    assert (flow["status"], flow["failure_reason"]) == ("failed", "partner.disabled")
