"""A result the relay cannot read is a named failure, never a success with fewer records (issue [15]).

The relay runs with a portal mapping whose dataset names are not the ones the sandbox sends (as if
the real portal named its datasets otherwise than inferred): the flow ends ``failed`` with
``result.unreadable``, the partner's webhook says ``unreadable_result``, the pickup answers 410
``delivery.unreadable_result``, and the operator sees ``results_unreadable`` (dataset and path,
never a value)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from chalicelib import container
from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.domain.portal_mapping import DEFAULT_MAPPING_FILE
from chalicelib.settings import get_settings
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_delivery import WebhookReceiver, pick_up, redeemed, run_due
from tests.functional.test_delivery_metrics import EmittedMetrics, named


@pytest.fixture
def portal_env(portal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the shipped mapping, with dataset names the sandbox never sends
    mapping = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    mapping["datasets"]["local_tax"]["names"] = ["課税証明情報"]
    mapping["datasets"]["local_tax"]["code"] = "TM000000000102"
    mapping["datasets"]["vaccination"]["names"] = ["定期予防接種情報"]
    mapping["datasets"]["vaccination"]["code"] = "TM000000000103"
    path = tmp_path / "renamed-mapping.json"
    path.write_text(json.dumps(mapping, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("RELAY_PORTAL_MAPPING_FILE", str(path))
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    live = WebhookReceiver(failures=0)
    yield live
    live.stop()


def test_a_result_with_no_recognised_dataset_fails_by_name_for_partner_and_operator(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    dynamodb_client: object,
    resources: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a partner with a webhook, and a resident whose local tax the sandbox returns
    container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
    token, delivery_id = redeemed(journey)
    metrics = EmittedMetrics(capsys)
    metrics.take()
    # WHEN the scheduled run fetches the result, under a mapping that knows none of its datasets
    assert run_due() == {"failed:result.unreadable": 1, "webhook.delivered": 1}
    # THEN the flow is failed with the named reason, nothing is stored for pickup
    items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]  # type: ignore[attr-defined]
    assert not [item for item in items if item["pk"]["S"].startswith("DELIVERY#")]
    flow = next(flow_document(item) for item in items if item["pk"]["S"].startswith("FLOW#"))
    assert (flow["status"], flow["failure_reason"]) == ("failed", "result.unreadable")
    # AND the webhook says so
    jwks = KeySet.import_key_set(json.loads(journey.client.http.get("/.well-known/jwks.json").body))
    (body,) = receiver.bodies
    event = json.loads(jws.deserialize_compact(body, jwks, algorithms=["ES256"]).payload)["event"]
    assert (event["type"], event["reason"], event["delivery_id"]) == (
        "delivery.failed",
        "unreadable_result",
        delivery_id,
    )
    # AND the pickup answers the named status
    answer = pick_up(journey, token)
    assert answer.status_code == 410
    assert json.loads(answer.body)["check"] == "delivery.unreadable_result"
    # AND the operator has a metric naming the dataset and where reading stopped, and the failure
    emitted = metrics.take()
    assert [
        (m.value, m.dimensions["dataset"], m.dimensions["path"]) for m in named("results_unreadable", emitted)
    ] == [(1, "local_tax", "dataset")]
    assert [m.dimensions["reason"] for m in named("flows_failed", emitted)] == ["result.unreadable"]
