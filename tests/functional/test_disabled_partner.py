"""Disabling a partner (``relayctl partners disable``) stops its flows wherever they are: nobody
goes to the portal for it, no code it is owed is exchanged, nothing is sealed to its keys, and no
webhook event reaches it any more, not even a retry of one written before."""

from __future__ import annotations

from typing import Any

from chalicelib import container
from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from chalicelib.settings import PARTNER_CACHE_MAX_TTL_S
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey, location_query
from tests.functional.test_delivery import WebhookReceiver, pick_up, redeemed, run_due


def disable(journey: Journey, dynamodb_client: Any, resources: dict[str, str], clock: ShiftedClock) -> None:
    """What ``relayctl partners disable`` does (another process: the relay's cache is not told),
    then the bound within which every warm container sees it passes."""
    store = DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
    PartnerRegistry(store, SystemClock(), allow_loopback=True).set_enabled(
        journey.partner.client_id, enabled=False
    )
    clock.advance(seconds=PARTNER_CACHE_MAX_TTL_S)


def flow_documents(dynamodb_client: Any, table: str) -> list[dict[str, Any]]:
    return [
        flow_document(item)
        for item in dynamodb_client.scan(TableName=table)["Items"]
        if item["pk"]["S"].startswith("FLOW#")
    ]


def test_disabled_while_the_resident_reads_the_consent_page_nobody_goes_to_the_portal(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a resident on the consent page of a partner the operator then disables
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    disable(journey, dynamodb_client, resources, clock)
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
    disable(journey, dynamodb_client, resources, clock)
    # WHEN the portal sends the resident back
    back = journey.callback()
    # THEN the resident returns to the partner refused, and the portal provided nothing
    assert back.status_code == 303
    assert location_query(back)["error"] == "access_denied"
    assert "code" not in location_query(back)
    assert journey.sandbox.portal.history() == []
    (flow,) = flow_documents(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert (flow["status"], flow["failure_reason"]) == ("failed", "partner.disabled")


def items(dynamodb_client: Any, table: str, prefix: str) -> list[dict[str, Any]]:
    return [i for i in dynamodb_client.scan(TableName=table)["Items"] if i["pk"]["S"].startswith(prefix)]


def test_disabled_before_the_result_is_sealed_nothing_is_sealed_to_its_keys(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a partner with a webhook, holding its token while the portal prepares the result,
    # then disabled
    receiver = WebhookReceiver()
    try:
        container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
        code = journey.to_partner_code()
        assert journey.redeem(code).status_code == 200
        disable(journey, dynamodb_client, resources, clock)
        # WHEN the scheduled run fetches the result
        assert run_due() == {"failed:partner.disabled": 1}
        # THEN the flow failed naming the reason, no sealed payload exists, and the disabled
        # partner is not told (no event in the outbox, nothing received)
        table = resources["RELAY_STATE_TABLE"]
        assert items(dynamodb_client, table, "DELIVERY#") == []
        (flow,) = flow_documents(dynamodb_client, table)
        assert (flow["status"], flow["failure_reason"]) == ("failed", "partner.disabled")
        assert items(dynamodb_client, table, "WEBHOOK#") == []
        assert receiver.bodies == []
    finally:
        receiver.stop()


def test_a_webhook_retry_after_the_partner_is_disabled_is_dropped(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a ready delivery whose webhook failed once and waits for its retry
    receiver = WebhookReceiver(failures=1)
    try:
        container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
        redeemed(journey)
        assert run_due() == {"ready": 1, "webhook.retry": 1}
        # WHEN the operator disables the partner before the retry is due
        disable(journey, dynamodb_client, resources, clock)
        clock.advance(seconds=1)
        # THEN the retry is dropped, not sent, and the event leaves the outbox for good
        assert run_due() == {"webhook.dropped": 1}
        assert len(receiver.bodies) == 1
        (event,) = items(dynamodb_client, resources["RELAY_STATE_TABLE"], "WEBHOOK#")
        assert (event["outcome"]["S"], "due_at" in event) == ("abandoned", False)
        clock.advance(seconds=600)
        assert "webhook.dropped" not in run_due()
        assert len(receiver.bodies) == 1
    finally:
        receiver.stop()


def test_a_webhook_retry_goes_to_the_webhook_url_registered_now(
    journey: Journey, clock: ShiftedClock
) -> None:
    # GIVEN a webhook that failed once at the partner's old endpoint
    old, new = WebhookReceiver(failures=5), WebhookReceiver()
    try:
        container.get_container().partners.update(journey.partner.document(webhook_url=old.url))
        token, _ = redeemed(journey)
        assert run_due() == {"ready": 1, "webhook.retry": 1}
        # WHEN the partner moves its webhook, and the retry is due
        container.get_container().partners.update(journey.partner.document(webhook_url=new.url))
        clock.advance(seconds=31)
        # THEN the retry reaches the new endpoint, and the old one hears nothing more
        assert run_due() == {"webhook.delivered": 1}
        assert (len(old.bodies), len(new.bodies)) == (1, 1)
        assert pick_up(journey, token).status_code == 200
    finally:
        old.stop()
        new.stop()
