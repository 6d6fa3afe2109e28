"""The fault suite's tools: AWS errors injected through botocore's event hooks, the actors' small
moves (scheduler run, pickup), and the invariants every fault case must leave behind.

Invariants (``assert_consistent``), checked on the tables themselves after every case:

- no partial delivery: a sealed payload exists exactly while its flow is ``ready``, and a flow is
  ``ready`` only with its payload;
- no lost audit record: replaying a flow's audit records through the state machine ends in the
  flow's stored status (a transition without its record, or a record without its transition,
  ends elsewhere);
- no stuck flow: every flow that has not ended is in the due index (``retrieving`` to poll,
  ``ready`` to expire its delivery, ``created`` and ``at_portal`` to be ended as abandoned once
  the resident's window closes, as docs/flow.md says); an ended flow is not;
- the outbox: every state change the partner is told about has its webhook event, each either
  due or settled;
- no personal data: no value of the persona's records, and not its name, in any table.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.models import botocore_stubber
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from chalicelib import container
from chalicelib.adapters.dynamodb_state import DynamoStateStore, flow_document
from chalicelib.adapters.keyring import KeyringEnvelope, KeyringLinkMac, LocalSigner
from chalicelib.adapters.kms_signer import KmsSigner
from chalicelib.adapters.mynaportal import MynaportalClient  # the class (conftest wraps its constructor)
from chalicelib.adapters.webhooks import HttpWebhookSender
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.leakscan import Scanner, item_hits, item_label, load_persona_values

SELF_INFO = f"{ISSUER}/v1/self-info"
DYNAMODB_TARGET_PREFIX = "com.amazonaws.dynamodb.v20120810#"
CONTENT_TYPES = {"dynamodb": "application/x-amz-json-1.0", "kms": "application/x-amz-json-1.1"}


# -- AWS faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsFault:
    """An error answer as DynamoDB or KMS sends it: its code, HTTP status, and for a cancelled
    transaction one cancellation reason per item."""

    code: str
    status: int = 400
    reasons: tuple[str, ...] = ()

    def body(self, service: str) -> bytes:
        error_type = (DYNAMODB_TARGET_PREFIX if service == "dynamodb" else "") + self.code
        document: dict[str, Any] = {"__type": error_type, "message": "injected fault"}
        if self.reasons:
            document["Message"] = f"Transaction cancelled [{', '.join(self.reasons)}]"
            document["CancellationReasons"] = [
                {"Code": reason, "Message": "injected"} if reason != "None" else {"Code": "None"}
                for reason in self.reasons
            ]
        return json.dumps(document).encode()


THROUGHPUT_EXCEEDED = AwsFault("ProvisionedThroughputExceededException")
DYNAMODB_THROTTLED = AwsFault("ThrottlingException")
DYNAMODB_INTERNAL = AwsFault("InternalServerError", status=500)
KMS_INTERNAL = AwsFault("KMSInternalException", status=500)
KMS_THROTTLED = AwsFault("ThrottlingException")
KMS_DISABLED = AwsFault("DisabledException")
KMS_KEY_UNAVAILABLE = AwsFault("KeyUnavailableException", status=500)


def cancelled(*reasons: str) -> AwsFault:
    """TransactionCanceledException, e.g. ``cancelled("ConditionalCheckFailed", "None")``."""
    return AwsFault("TransactionCanceledException", reasons=reasons)


class _Body(io.BytesIO):
    """The raw body botocore reads an answer from."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


@dataclass
class _Plan:
    fault: AwsFault
    remaining: int | None  # None: every attempt
    passing: int = 0  # attempts let through before the fault starts


@dataclass
class AwsFaults:
    """Fabricated DynamoDB and KMS error answers on the container's own boto3 clients.

    The hook is ``before-send``, below botocore's retry loop: the configured standard-mode retries
    see an injected answer exactly as they would see AWS's, and every HTTP attempt, retried or not,
    is counted in ``attempts`` (``"dynamodb.TransactWriteItems"``, ``"kms.Sign"``, ...).
    """

    attempts: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    _plans: dict[str, _Plan] = field(default_factory=dict)
    _first_attempts: dict[str, tuple[AwsFault, int]] = field(default_factory=dict)
    _lost_answers: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, clients: Any) -> None:
        for service in ("dynamodb", "kms"):
            getattr(clients, service).meta.events.register_first(f"before-send.{service}", self._before_send)

    def fail(self, operation: str, fault: AwsFault, *, times: int | None = None, after: int = 0) -> None:
        """Answer ``fault`` to the next ``times`` attempts of ``operation``, or to all of them,
        once ``after`` attempts have gone through. The counts start again from here."""
        with self._lock:
            self._plans[operation] = _Plan(fault, times, after)
            self.attempts.clear()
            self.injected.clear()

    def fail_first_attempts(self, service: str, fault: AwsFault, attempts: int) -> None:
        """Answer ``fault`` to the first ``attempts`` attempts of every call to ``service``: each
        call succeeds only if botocore retries it that often. The counts start again from here."""
        with self._lock:
            self._first_attempts[service] = (fault, attempts)
            self.attempts.clear()
            self.injected.clear()

    def lose_answers(self, operation: str, *, times: int = 1) -> None:
        """Apply the next ``times`` attempts of ``operation``, then answer each 500
        InternalServerError, which DynamoDB documents as "the request may have succeeded":
        botocore retries, and the retry meets the effect of the attempt it repeats."""
        with self._lock:
            self._lost_answers[operation] = times
            self.attempts.clear()
            self.injected.clear()

    def heal(self) -> None:
        with self._lock:
            self._plans.clear()
            self._first_attempts.clear()
            self._lost_answers.clear()

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        _, service, operation = event_name.split(".")
        key = f"{service}.{operation}"
        with self._lock:
            self.attempts[key] += 1
            lose = self._lost_answers.get(key, 0) > 0
            if lose:
                self._lost_answers[key] -= 1
            fault = DYNAMODB_INTERNAL if lose else self._fault_for(key, service, request)
            if fault is None:
                return None
            self.injected[key] += 1
        if lose:
            botocore_stubber(event_name, request)  # moto applies the request; its answer is lost
        # moto's stubber answers on this same event after this hook, and would apply the request;
        # an address it does not serve makes it stand aside, so a faulted attempt writes nothing,
        # as a throttled or failed request writes nothing in AWS.
        request.url = "https://fault-injected.invalid/"
        headers = {"Content-Type": CONTENT_TYPES[service], "x-amzn-RequestId": "injected"}
        return AWSResponse(request.url, fault.status, headers, _Body(fault.body(service)))  # type: ignore[arg-type]

    def _fault_for(self, key: str, service: str, request: AWSPreparedRequest) -> AwsFault | None:
        plan = self._plans.get(key)
        if plan is not None and plan.passing > 0:
            plan.passing -= 1
            return None
        if plan is not None and plan.remaining != 0:
            if plan.remaining is not None:
                plan.remaining -= 1
            return plan.fault
        if service in self._first_attempts:
            fault, failing = self._first_attempts[service]
            # Standard mode numbers its attempts in this header: "attempt=2; max=3".
            header = request.headers.get("amz-sdk-request", b"")
            text = header.decode() if isinstance(header, bytes) else header
            attempt = int(text.split(";")[0].removeprefix("attempt="))
            return fault if attempt <= failing else None
        return None


# -- the actors' moves -----------------------------------------------------------------------------


def run_due(journey: Journey) -> dict[str, int]:
    """One run of the scheduled Lambda, invoked as EventBridge would; its failure propagates."""
    event = journey.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region="ap-northeast-1"
    )
    payload: dict[str, int] = journey.client.lambda_.invoke("process_due", event).payload
    return payload


def another_container_runs(journey: Journey) -> None:
    """The next call is served by a container that has unwrapped no working key yet (in AWS the
    scheduled function never shares a container with the API): the keyring forgets its keys."""
    container.get_container().keyring._cache.clear()


def pick_up(journey: Journey, token: str) -> Any:
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    return journey.client.http.get("/v1/self-info", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


def to_portal(journey: Journey, persona: str = "salaried") -> None:
    """PAR, consent and the resident's sign-in and agreement at the portal (callback not yet sent)."""
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal(persona)


def redeemed(journey: Journey, persona: str = "salaried") -> str:
    """Through the callback and the token endpoint: the partner's access token."""
    to_portal(journey, persona)
    code = location_query(journey.callback())["code"]
    issued = journey.redeem(code)
    assert issued.status_code == 200, issued.body
    token: str = json.loads(issued.body)["access_token"]
    return token


def problem_of(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.body)
    return body


# -- a partner's webhook endpoint ------------------------------------------------------------------


class WebhookReceiver:
    """Collects the partner's webhook events (JWS bodies); answers 204."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

        @Request.application  # type: ignore[arg-type]
        def app(request: Request) -> Response:
            self.bodies.append(request.get_data(as_text=True))
            return Response("", status=204)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def events(self) -> list[tuple[str, str, str]]:
        """(event id, type, delivery id) of every event received, unverified (the functional
        suite checks the signature)."""
        found = []
        for body in self.bodies:
            payload = body.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            event = claims["event"]
            found.append((event["id"], event["type"], event["delivery_id"]))
        return found

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


# -- invariants ------------------------------------------------------------------------------------

# What each audit event does to the flow's status: the statuses it may follow, and the status it
# leads to (None: the status stays). docs/flow.md and chalicelib/domain/flow.py draw the machine.
AUDIT_MOVES: dict[str, tuple[frozenset[str | None], str | None]] = {
    "request_pushed": (frozenset({None}), "created"),
    "consent_shown": (frozenset({"created"}), None),
    "continued": (frozenset({"created"}), "at_portal"),
    "cancelled": (frozenset({"created"}), "cancelled"),
    "portal_authorised": (frozenset({"at_portal"}), None),
    "retrieval_started": (frozenset({"at_portal"}), "retrieving"),
    "portal_failed": (frozenset({"at_portal"}), "failed"),
    "result_received": (frozenset({"retrieving"}), None),
    "individual_numbers_removed": (frozenset({"retrieving"}), None),
    "sealed": (frozenset({"retrieving"}), "ready"),
    "failed": (frozenset({"retrieving"}), "failed"),
    "picked_up": (frozenset({"ready"}), "picked_up"),
    "expired": (frozenset({"ready"}), "expired"),
    "abandoned": (frozenset({"created", "at_portal"}), "expired"),
    "revoked": (frozenset({"retrieving", "ready"}), "revoked"),
}
TERMINAL = frozenset({"picked_up", "cancelled", "failed", "expired", "revoked"})
# Every flow that has not ended is due: the poller (retrieving), the delivery's expiry (ready), or
# the end of the resident's window (created, at_portal: ended as abandoned).
SERVICE_OWNED = frozenset({"created", "at_portal", "retrieving", "ready"})
# The webhook each audit event announces to a partner with a webhook URL.
ANNOUNCED = {"sealed": "delivery.ready", "failed": "delivery.failed", "expired": "delivery.expired"}


@dataclass
class Tables:
    client: Any
    state: str
    audit: str
    partners: str

    def scan(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = self.client.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def state_items(self, prefix: str) -> list[dict[str, Any]]:
        return [item for item in self.scan(self.state) if item["pk"]["S"].startswith(prefix)]

    def flows(self) -> list[dict[str, Any]]:
        """The flow documents, oldest first."""
        documents = [flow_document(item) for item in self.state_items("FLOW#")]
        return sorted(documents, key=lambda flow: flow["created_at"])

    def statuses(self) -> list[str]:
        return [flow["status"] for flow in self.flows()]

    def audit_events(self, flow_id: str) -> list[str]:
        items = [item for item in self.scan(self.audit) if item["pk"]["S"] == f"FLOW#{flow_id}"]
        return [item["event"]["S"] for item in sorted(items, key=lambda item: item["sk"]["S"])]

    def snapshot(self) -> list[str]:
        """Every item of the state and audit tables, for "nothing changed" comparisons."""
        return sorted(
            json.dumps(item, sort_keys=True, default=bytes.hex)  # audit leaf hashes are binary
            for table in (self.state, self.audit)
            for item in self.scan(table)
        )

    def dump(self) -> str:
        return json.dumps(
            [self.scan(table) for table in (self.state, self.audit, self.partners)], ensure_ascii=False
        )


def replayed_status(events: list[str]) -> str | None:
    status: str | None = None
    for event in events:
        allowed, after = AUDIT_MOVES[event]
        assert status in allowed, f"audit record {event!r} after status {status!r}: {events}"
        status = after or status
    return status


def assert_consistent(
    tables: Tables, *, personas: tuple[str, ...] = ("salaried",), webhooks: bool = False
) -> None:
    """Every invariant of the module docstring; fails naming the flow and what is wrong."""
    state_items = tables.scan(tables.state)
    deliveries = {
        item["pk"]["S"].removeprefix("DELIVERY#")
        for item in state_items
        if item["pk"]["S"].startswith("DELIVERY#")
    }
    flow_items = {
        item["pk"]["S"].removeprefix("FLOW#"): item
        for item in state_items
        if item["pk"]["S"].startswith("FLOW#")
    }
    webhook_items = [item for item in state_items if item["pk"]["S"].startswith("WEBHOOK#")]
    announced = Counter((item["delivery_id"]["S"], item["type"]["S"]) for item in webhook_items)
    assert deliveries <= set(flow_items), f"a delivery without its flow: {deliveries - set(flow_items)}"
    for flow_id, item in flow_items.items():
        flow = flow_document(item)
        status = flow["status"]
        events = tables.audit_events(flow_id)
        # no lost audit record, and none too many
        assert replayed_status(events) == status, f"flow {status} but its audit says {events}"
        # no partial delivery
        assert (flow_id in deliveries) == (status == "ready"), (
            f"flow {status}, payload stored: {flow_id in deliveries}"
        )
        # no stuck flow
        if status in SERVICE_OWNED:
            assert flow["next_due_at"] is not None, f"{status} flow without a due time"
            assert "due_at" in item, f"{status} flow outside the due index"
        else:
            assert "due_at" not in item, f"{status} flow left in the due index"
            assert status in TERMINAL
        if status in {"ready", "picked_up", "expired", "failed", "revoked", "cancelled"}:
            assert flow["portal_token_ciphertext"] is None, f"{status} flow keeps the portal token"
        # the outbox: one event per announced change, never lost, never doubled
        if webhooks:
            expected = Counter((flow_id, ANNOUNCED[event]) for event in events if event in ANNOUNCED)
            actual = Counter({key: n for key, n in announced.items() if key[0] == flow_id})
            assert actual == expected, f"webhook events {dict(actual)} for audit {events}"
    for item in webhook_items:
        settled = item.get("outcome", {}).get("S") in ("delivered", "abandoned")
        assert settled != ("due_at" in item), f"webhook {item['type']['S']} neither due nor settled"
    assert_no_personal_data(tables, personas)


def assert_no_personal_data(tables: Tables, personas: tuple[str, ...]) -> None:
    """The session leak scan's rules (tests/leakscan.py) for this test's personas, on every item in
    the tables now, so a leak fails the test that made it."""
    scanner = Scanner(load_persona_values(only=personas))
    for table in (tables.state, tables.audit, tables.partners):
        for item in tables.scan(table):
            hits = item_hits(scanner, item)
            assert not hits, (table, item_label(item), hits)


# -- an exception between two steps ----------------------------------------------------------------


class StepCrash(Exception):  # named for what it stands for: the process died here
    """Injected right after a step completed: the Lambda died before its next step."""


def _effectful_steps() -> dict[type, tuple[str, ...]]:
    """Every call of the flow that writes, or talks to the portal, KMS or a partner."""
    return {
        DynamoStateStore: (
            "remember",
            "create",
            "update",
            "consume_portal_state",
            "start_retrieval",
            "redeem_code",
            "finish",
            "pick_up",
            "webhook_attempted",
        ),
        MynaportalClient: ("exchange_code", "start_request", "fetch_result"),
        KeyringLinkMac: ("mac",),
        KeyringEnvelope: ("encrypt", "decrypt"),
        KmsSigner: ("sign",),
        LocalSigner: ("sign",),
        HttpWebhookSender: ("send",),
    }


@dataclass
class Steps:
    """Records each completed step (``"DynamoStateStore.finish"``) and, once, raises ``StepCrash``
    right after the chosen occurrence of one (``crash_after = "DynamoStateStore.finish#1"``)."""

    trace: list[str] = field(default_factory=list)
    crash_after: str | None = None
    crashed: bool = False

    def install(self, monkeypatch: Any) -> None:
        for cls, names in _effectful_steps().items():
            for name in names:
                monkeypatch.setattr(cls, name, self._wrapped(cls, name))

    def _wrapped(self, cls: type, name: str) -> Any:
        original = getattr(cls, name)
        label = f"{cls.__name__}.{name}"

        def step(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self.trace.append(label)
            if not self.crashed and self.crash_after == f"{label}#{self.trace.count(label)}":
                self.crashed = True
                raise StepCrash(f"crashed right after {self.crash_after}")
            return result

        return step

    def numbered(self) -> list[str]:
        """The trace with each step's occurrence: ``["DynamoStateStore.remember#1", ...]``."""
        seen: Counter[str] = Counter()
        numbered = []
        for label in self.trace:
            seen[label] += 1
            numbered.append(f"{label}#{seen[label]}")
        return numbered
