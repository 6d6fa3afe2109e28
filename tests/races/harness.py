"""What the race tests share: the whole local stack on loopback (moto server, sandbox portal, the
relay under ``chalice local``, which serves each connection in its own thread), both sides of a flow
over real HTTP (the partner through ``partner_kit``, the resident's browser through the relay's
interstitial and the sandbox's card sign-in), the moto server's tables read through boto3 (never
through relay internals), and a starting gate that releases many requests at once."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import boto3
import requests

from chalicelib.adapters.dynamodb_state import flow_document
from partner_kit import (
    AuthorizationError,
    Delivery,
    DeliveryGone,
    DeliveryTimeout,
    PartnerKeys,
    RelayClient,
    RelayError,
    SealedDelivery,
)
from tests.conftest import DEMO_PARTNERS
from tests.integration.stack import Launcher

# The scheduler (EventBridge's stand-in) runs the poller every 0.5 s instead of every 2 s, so what
# is measured is the relay and the portal, not the launcher's idle time.
STACK_ARGS = ("--schedule-interval", "0.5")
HTTP_TIMEOUT_S = 60
PICKUP_POLL_S = 1.0

# The audit events each step of a flow writes (chalicelib/domain/audit.py, docs/flow.md), in order.
BEFORE_PORTAL = ("request_pushed", "consent_shown", "continued")
RETRIEVAL_STARTED = (*BEFORE_PORTAL, "portal_authorised", "retrieval_started")
DELIVERED = (*RETRIEVAL_STARTED, "result_received", "sealed", "picked_up")

T = TypeVar("T")
Partner = Literal["bank", "health"]
# client id, purpose, scope of each demo partner (local/partners/*.partner.json)
PARTNERS: dict[Partner, tuple[str, str, str]] = {
    "bank": ("demo-bank", "loan-screening", "local_tax"),
    "health": ("demo-health", "child-vaccination-record", "vaccination"),
}


def loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never through a proxy from the environment
    return session


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# The audit table also holds the checkpoints' bookkeeping (heads, covered keys, tiles, the scan
# watermark) and, in each flow's partition, leaf-index items: a record is a FLOW# item whose sort key
# is a time (leaf-index keys start with "~").
RECORDS_ONLY: dict[str, Any] = {
    "FilterExpression": "begins_with(pk, :flow) AND NOT begins_with(sk, :leaves)",
    "ExpressionAttributeValues": {":flow": {"S": "FLOW#"}, ":leaves": {"S": "~leaves#"}},
}


@dataclass(frozen=True)
class Stack:
    """The launched stack as its record (``stack.json``) describes it."""

    api: str
    aws_endpoint: str
    region: str
    state_table: str
    audit_table: str
    sandbox: str
    demo: dict[Partner, str]

    @classmethod
    def of(cls, launcher: Launcher) -> Stack:
        record = json.loads((launcher.state_dir / "stack.json").read_text(encoding="utf-8"))
        environment = record["environment"]
        return cls(
            api=record["api_url"],
            aws_endpoint=record["aws_endpoint_url"],
            region=record["region"],
            state_table=environment["RELAY_STATE_TABLE"],
            audit_table=environment["RELAY_AUDIT_TABLE"],
            sandbox=record["sandbox"]["app_url"],
            demo={"bank": record["demo"]["bank"], "health": record["demo"]["health"]},
        )

    def redirect_uri(self, partner: Partner) -> str:
        return f"{self.demo[partner].rstrip('/')}/callback"

    def partner(self, partner: Partner, session: requests.Session | None = None) -> RelayClient:
        """The demo partner's client, on ``session`` (by default a new loopback session)."""
        client_id = PARTNERS[partner][0]
        keys = PartnerKeys.load(DEMO_PARTNERS / f"{client_id}.DEMO-ONLY-private-jwks.json")
        return RelayClient(
            self.api, client_id, keys, session=session or loopback_session(), timeout_s=HTTP_TIMEOUT_S
        )

    def sandbox_history(self) -> list[dict[str, Any]]:
        """The portal's provision history: one record per retrieval the portal started (IF001-04)."""
        with loopback_session() as http:
            answer = http.get(f"{self.sandbox}/sandbox/history.json", timeout=10)
        assert answer.status_code == 200, answer.text
        records: list[dict[str, Any]] = answer.json()["records"]
        return records

    def set_portal_scenario(self, scenario: str, persona: str) -> None:
        with loopback_session() as http:
            answer = http.post(
                f"{self.sandbox}/sandbox/scenario",
                json={"scenario": scenario, "persona": persona},
                timeout=10,
            )
        assert answer.status_code == 200, answer.text


@dataclass(frozen=True)
class AuditRow:
    event: str
    record_id: str
    sort_key: str


class Tables:
    """The relay's ``state`` and ``audit`` tables on the moto server, read as an operator would."""

    def __init__(self, stack: Stack) -> None:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=stack.region
        )
        self._dynamodb = session.client("dynamodb", endpoint_url=stack.aws_endpoint)
        self._state = stack.state_table
        self._audit = stack.audit_table

    def _pages(self, operation: Literal["query", "scan"], **kwargs: Any) -> Iterator[dict[str, Any]]:
        for page in self._dynamodb.get_paginator(operation).paginate(**kwargs):
            yield from page.get("Items", [])

    def flow(self, flow_id: str) -> dict[str, Any] | None:
        answer = self._dynamodb.get_item(
            TableName=self._state,
            Key={"pk": {"S": f"FLOW#{flow_id}"}, "sk": {"S": "FLOW"}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return flow_document(item) if item else None

    def flows(self) -> list[dict[str, Any]]:
        """Every flow in the state table."""
        return [
            flow_document(item)
            for item in self._pages(
                "scan",
                TableName=self._state,
                FilterExpression="sk = :flow",
                ExpressionAttributeValues={":flow": {"S": "FLOW"}},
            )
        ]

    def delivery_exists(self, flow_id: str) -> bool:
        answer = self._dynamodb.get_item(
            TableName=self._state,
            Key={"pk": {"S": f"DELIVERY#{flow_id}"}, "sk": {"S": "DELIVERY"}},
            ConsistentRead=True,
        )
        return "Item" in answer

    def audit(self, flow_id: str) -> list[AuditRow]:
        """The flow's audit records in the order they happened (the sort key starts with the time)."""
        items = self._pages(
            "query",
            TableName=self._audit,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"FLOW#{flow_id}"}},
            ConsistentRead=True,
        )
        return [
            AuditRow(item["event"]["S"], json.loads(item["document"]["S"])["record_id"], item["sk"]["S"])
            for item in items
        ]

    def audit_records_outside(self, flow_ids: set[str]) -> list[str]:
        """Audit records (not the checkpoints' bookkeeping) that belong to none of ``flow_ids``: pk,
        sort key, event."""
        return [
            f"{item['pk']['S']} {item['sk']['S']} {item.get('event', {}).get('S')}"
            for item in self._pages(
                "scan",
                TableName=self._audit,
                **RECORDS_ONLY,
            )
            if item["pk"]["S"].removeprefix("FLOW#") not in flow_ids
        ]

    def audit_record_count(self) -> int:
        """The audit records in the table, not counting the checkpoints' bookkeeping (the launcher
        signs a checkpoint every 30 scheduled runs over the records older than a minute, so a long
        race may see one, with its tiles, scan watermark and the flows' leaf-index items)."""
        return sum(
            1
            for _ in self._pages(
                "scan",
                TableName=self._audit,
                ProjectionExpression="pk",
                **RECORDS_ONLY,
            )
        )

    def wait_for_status(self, flow_id: str, status: str, timeout_s: float = 60) -> dict[str, Any]:
        """The flow once the scheduler has moved it to ``status`` (the pickup is not used to wait:
        it would consume the delivery)."""
        deadline = time.monotonic() + timeout_s
        while True:
            flow = self.flow(flow_id)
            if flow is not None and flow["status"] == status:
                return flow
            assert time.monotonic() < deadline, f"flow still {flow and flow['status']} after {timeout_s} s"
            time.sleep(0.2)


def pick_up_when_ready(kit: RelayClient, delivery: Delivery, wait_s: float) -> SealedDelivery:
    """The partner's pickup, asking again every ``PICKUP_POLL_S`` while the relay answers 202 (the
    kit would honour Retry-After, 5 s; the scheduler here runs every 0.5 s)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return kit.pick_up(delivery, wait_s=0)
        except DeliveryTimeout:
            if time.monotonic() >= deadline:
                raise
            time.sleep(PICKUP_POLL_S)


# -- the resident's browser --------------------------------------------------------------------------

Choice = Literal["agree", "cancel_here", "cancel_at_portal"]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SESSION = re.compile(r'name="session" value="([^"]+)"')


def _field(pattern: re.Pattern[str], page: requests.Response) -> str:
    found = pattern.search(page.text)
    assert found is not None, f"{page.url} answered {page.status_code} without the expected form"
    return found.group(1)


def at_portal(browser: requests.Session, authorize_url: str, persona: str, choice: Choice) -> str:
    """The resident opens the relay's interstitial and, unless cancelling there, signs in at the
    sandbox portal as ``persona`` and agrees or cancels. The URL the browser is sent to next: the
    relay's portal callback, or (cancelled at the interstitial) the partner's redirect."""
    page = browser.get(authorize_url, timeout=HTTP_TIMEOUT_S)
    assert page.status_code == 200, page.text
    decision = browser.post(
        f"{origin_of(authorize_url)}/authorize/decision",
        data={
            "request_uri": query_of(authorize_url)["request_uri"],
            "csrf_token": _field(_CSRF, page),
            "action": "cancel" if choice == "cancel_here" else "continue",
        },
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
    )
    assert decision.status_code == 303, decision.text
    if choice == "cancel_here":
        return str(decision.headers["Location"])
    portal = decision.headers["Location"]
    sandbox = origin_of(portal)
    sign_in = browser.get(portal, timeout=HTTP_TIMEOUT_S)
    assert sign_in.status_code == 200, sign_in.text
    session_id = _field(_SESSION, sign_in)
    login = browser.post(
        f"{sandbox}/online-authorization-web/login",
        data={
            "session": session_id,
            "persona": persona,
            "pin": "1234",
            "action": "cancel" if choice == "cancel_at_portal" else "signin",
        },
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
    )
    if login.status_code == 303:  # cancelled, or a card the portal refuses (expired certificate)
        return str(login.headers["Location"])
    if login.status_code == 403:  # a locked card: the portal's page sends the resident back
        back = browser.post(
            f"{sandbox}/online-authorization-web/locked",
            data={"session": session_id},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT_S,
        )
        assert back.status_code == 303, back.text
        return str(back.headers["Location"])
    assert login.status_code == 200, login.text
    agreed = browser.post(
        f"{sandbox}/online-authorization-web/consent",
        data={"session": session_id, "action": "agree"},
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_S,
    )
    assert agreed.status_code == 303, agreed.text
    return str(agreed.headers["Location"])


def resident_journey(
    authorize_url: str, persona: str, choice: Choice = "agree", browser: requests.Session | None = None
) -> str:
    """The whole browser part: the partner redirect URL the relay finally sends the resident to.
    ``browser`` is the resident's session (by default a new one, closed afterwards)."""
    with ExitStack() as owned:
        if browser is None:
            browser = owned.enter_context(loopback_session())
        next_url = at_portal(browser, authorize_url, persona, choice)
        if choice == "cancel_here":
            return next_url
        back = browser.get(next_url, allow_redirects=False, timeout=HTTP_TIMEOUT_S)
        assert back.status_code == 303, back.text
        return str(back.headers["Location"])


def onboarding(
    stack: Stack,
    kit: RelayClient,
    persona: str,
    state: str,
    pickup_wait_s: float,
    choice: Choice = "agree",
    browser: requests.Session | None = None,
) -> str:
    """One onboarding end to end, as the partner (``kit``) and the resident (``browser``) do it;
    what the partner saw: ``delivered:<dataset>``, ``refused:<error>``, ``gone:<check>`` or
    ``broken:<why>``."""
    partner = next(name for name, (client_id, _, _) in PARTNERS.items() if client_id == kit.client_id)
    _, purpose, scope = PARTNERS[partner]
    try:
        pending = kit.start(stack.redirect_uri(partner), purpose, scope, state=state)
        redirect = resident_journey(pending.authorize_url, persona, choice, browser)
        try:
            delivery = kit.finish(pending, query_of(redirect))
        except AuthorizationError as refused:
            return f"refused:{refused.error}"
        try:
            claims = kit.open(pick_up_when_ready(kit, delivery, pickup_wait_s))
        except DeliveryGone as gone:
            return f"gone:{gone.check}"
    except (RelayError, AssertionError) as broken:  # reported with every other flow's outcome
        return f"broken:{type(broken).__name__}:{broken}"
    if claims["aud"] != kit.client_id or claims["purpose"] != purpose:
        return f"broken:sealed for {claims['aud']}/{claims['purpose']}"
    return f"delivered:{claims['data']['dataset']}"


# -- many requests at once ---------------------------------------------------------------------------


@contextmanager
def warmed_sessions(stack: Stack, count: int) -> Iterator[list[requests.Session]]:
    """``count`` sessions, each holding an open keep-alive connection to the relay (``chalice
    local`` gives each connection its own thread), so that the gate releases requests rather than
    TCP handshakes queueing in the listen backlog."""
    sessions = [loopback_session() for _ in range(count)]
    try:
        for session in sessions:
            assert session.get(f"{stack.api}/health", timeout=HTTP_TIMEOUT_S).status_code == 200
        yield sessions
    finally:
        for session in sessions:
            session.close()


def all_at_once(calls: list[Callable[[], T]], timeout_s: float = 60) -> list[T]:
    """Run every call in its own thread, released together by one barrier; their results in order.
    A call that raises fails the test with its exception."""
    gate = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            gate.wait(timeout=timeout_s)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001  # re-raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not any(thread.is_alive() for thread in threads), f"requests still running after {timeout_s} s"
    if errors:
        raise errors[0]
    return results
