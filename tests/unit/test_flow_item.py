"""The flow's stored item (issue [13]): short keys, every field round-trips, and the fingerprints
of the flow's secrets decide what a made-up secret finds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.adapters.dynamodb_state import (
    _OWN_ATTRIBUTES,
    FLOW_KEYS,
    DynamoStateStore,
    encode_flow,
    flow_document,
    flow_of_item,
)
from chalicelib.domain.flow import (
    Flow,
    FlowStatus,
    PortalProcessRef,
    fingerprint,
    flow_id_of,
    flow_secret,
    new_flow_id,
)

NOW = datetime(2026, 12, 6, 23, 40, 12, 123456, tzinfo=UTC)


def a_flow(**changes: object) -> Flow:
    fields: dict[str, object] = {
        "flow_id": new_flow_id(),
        "partner_id": "demo-bank",
        "partner_name": "デモ銀行",
        "resident_pseudonym": "p" * 43,
        "purpose_id": "loan-income",
        "dataset": "local_tax",
        "scope": "local_tax",
        "redirect_uri": "https://bank.example/callback",
        "partner_state": "s" * 43,
        "code_challenge": "c" * 43,
        "status": FlowStatus.CREATED,
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW + timedelta(hours=2),
        "portal_client_id": "SP00000001_AA0001",
    }
    fields.update(changes)
    return Flow.model_validate(fields)


def test_every_field_of_the_flow_has_one_short_key_or_an_attribute_of_its_own() -> None:
    assert set(FLOW_KEYS) | _OWN_ATTRIBUTES == set(Flow.model_fields)
    assert not set(FLOW_KEYS) & _OWN_ATTRIBUTES
    assert len(set(FLOW_KEYS.values())) == len(FLOW_KEYS)


def test_a_flow_with_every_field_set_reads_back_the_same() -> None:
    flow = a_flow(
        status=FlowStatus.READY,
        version=7,
        portal_process=PortalProcessRef(telegram_id="TL-1-261206234012-0001", process_id="P1", mode="1"),
        portal_token_ciphertext="ciphertext",
        request_uri_hash=fingerprint("r"),
        request_uri_expires_at=NOW,
        csrf_hash=fingerprint("x"),
        portal_state_hash=fingerprint("s"),
        portal_state_expires_at=NOW.replace(microsecond=0),  # an attribute in whole seconds
        browser_binding_hash=fingerprint("b"),
        code_hash=fingerprint("c"),
        code_expires_at=NOW,
        code_redeemed=True,
        access_token_hash=fingerprint("t"),
        token_expires_at=NOW,
        dpop_jkt="j" * 43,
        ui_locale="en",
        retrieval_deadline=NOW,
        failure_reason="portal.other",
        next_due_at=NOW,
        poll_attempts=3,
        ready_at=NOW,
        delivery_expires_at=NOW,
    )
    store = DynamoStateStore(None, "state", audit_table="audit")  # type: ignore[arg-type]
    item = store._flow_item(flow)
    assert flow_of_item(item) == flow
    assert flow_document(item) == flow.model_dump(mode="json")


def test_the_stored_document_keeps_microseconds_and_leaves_defaults_out() -> None:
    flow = a_flow()
    assert "pt" not in encode_flow(flow)  # no portal token yet: not stored as null
    store = DynamoStateStore(None, "state", audit_table="audit")  # type: ignore[arg-type]
    assert flow_of_item(store._flow_item(flow)).created_at == NOW


def test_a_secret_names_its_flow_and_only_its_random_part_is_secret() -> None:
    flow_id = new_flow_id()
    secret = flow_secret(flow_id)
    assert flow_id_of(secret) == flow_id
    assert secret != flow_secret(flow_id)
    # anything not shaped like a flow's secret names no flow: nothing is read for it
    for other in ("", flow_id, f"{flow_id}.", f"{flow_id}.short", "a.b", f"{flow_id}.{'x' * 43}.more"):
        assert flow_id_of(other) is None
