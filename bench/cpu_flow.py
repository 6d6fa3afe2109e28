"""CPU per complete flow against the JOSE/KMS floor, AWS calls per flow, and the cost of 10,000
onboardings (issue [8], points 3 and 4).

One process: moto in memory (``mock_aws``), the relay through Chalice's test client, the sandbox
portal on loopback threads in deterministic mode (zero delays, notices only when asked), a partner
webhook endpoint on a loopback thread. Each handler invocation of an onboarding is timed with
``time.thread_time()`` inside the Lambda handler, in the calling thread: the sandbox and the
webhook endpoint run in other threads and are not counted; moto runs in the calling thread and is,
and its share is measured apart (CPU inside moto's ``before-send`` stub). Every boto3 call is
counted through ``BaseClient._make_api_call``; DynamoDB read and write units are computed from the
real item sizes, read from moto before and after each write (that reading is excluded from the
timings). The floor (the JOSE and KMS operations the flow cannot avoid) is timed alone in the same
run, interleaved with the flows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench import prices
from bench.report import ROOT, Section, limit, limit_text

FLOWS = 15  # measured flows, after one warm-up flow
ISSUER = "https://myna-relay.test"
CALLBACK = f"{ISSUER}/portal/callback"
SELF_INFO = f"{ISSUER}/v1/self-info"
REGION = "ap-northeast-1"
STAGE = "test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# The handler invocations of one onboarding whose completion notice arrives, in the order they
# happen; each is an API Gateway request. The notice retrieves the result, seals it and sends the
# partner's webhook: no scheduled run is part of the flow.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("par", "POST /par", "partner"),
    ("authorize", "GET /authorize", "browser"),
    ("decision", "POST /authorize/decision", "browser"),
    ("callback", "GET /portal/callback", "browser"),
    ("token", "POST /token", "partner"),
    ("notice", "POST /portal/notice (poll, seal, webhook)", "portal"),
    ("pickup", "GET /v1/self-info", "partner"),
)
STEP_NAMES = tuple(name for name, _, _ in STEPS)
# The scheduled run (EventBridge invokes it every minute, no API Gateway request), measured after
# each flow's notice but not part of the flow: it runs whatever the volume, queries the due index
# and finds nothing of this flow left to do. It seals only the flows whose notice never came.
SCHEDULED_RUN = "scheduled"
SCHEDULED_LABEL = "process_due (every minute; nothing of the flow left)"
SCHEDULED_RUNS_PER_MONTH = 60 * 24 * 30  # Rate(1 minute), a 30-day month
# The steps that wait on something outside AWS: the portal (mutual TLS) or the partner's webhook.
EXTERNAL = frozenset({"callback", "notice"})

# Assumed round trip of one DynamoDB or KMS request from Lambda in the same region (moto answers
# in-process, so the benchmark cannot measure it).
AWS_ROUND_TRIP_MS = 5.0
# Assumed bytes of the platform's START/END/REPORT log lines per invocation.
PLATFORM_LOG_BYTES = 300
# The KMS requests the sealing needs, whatever the design: one asymmetric Sign of the payload JWT
# the sealed JWE carries (the JWE itself is ECDH-ES to the partner's key, no KMS).
SEAL_KMS_SIGNS = 1

KMS_PRICES = {
    "Sign": ("asymmetric", prices.KMS_ASYMMETRIC_USD_PER_REQUEST),
    "GetPublicKey": ("asymmetric", prices.KMS_ASYMMETRIC_USD_PER_REQUEST),
    "Verify": ("asymmetric", prices.KMS_ASYMMETRIC_USD_PER_REQUEST),
    "GenerateMac": ("HMAC", prices.KMS_HMAC_USD_PER_REQUEST),
    "VerifyMac": ("HMAC", prices.KMS_HMAC_USD_PER_REQUEST),
    "Encrypt": ("symmetric", prices.KMS_SYMMETRIC_USD_PER_REQUEST),
    "Decrypt": ("symmetric", prices.KMS_SYMMETRIC_USD_PER_REQUEST),
    "GenerateDataKey": ("symmetric", prices.KMS_SYMMETRIC_USD_PER_REQUEST),
}


# -- DynamoDB item sizes and capacity units ----------------------------------------------------------


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes of one attribute value as DynamoDB counts them (developer guide, "Item sizes")."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = str(inner).lstrip("+-").replace(".", "").split("e")[0].split("E")[0]
        significant = digits.strip("0") or "0"
        return math.ceil(len(significant) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: member}) for member in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_size(member) for member in inner)
    if kind == "M":
        return 3 + sum(len(name.encode()) + 1 + attribute_size(member) for name, member in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # KEYS_ONLY | ALL | INCLUDE


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[Index, ...]


@dataclass
class Write:
    operation: str
    table: str
    kind: str  # Put | Update | Delete | ConditionCheck
    transactional: bool
    old_bytes: int
    new_bytes: int
    units: float  # on the table
    index_units: float  # on its global secondary indexes
    item: str = ""  # what the item is: "FLOW", "PAR" (pointer), "JTI", "audit", ...
    index_by: dict[str, float] = field(default_factory=dict)  # index_units by index name


def item_label(table: str, key: dict[str, Any]) -> str:
    """The kind of item a key names: the state table's key prefix, or the table's own role."""
    role = table.rsplit("-", 1)[-1]
    if role != "state":
        return role
    value = str(next(iter(key.values())).get("S", ""))
    return value.split("#", 1)[0] if "#" in value else role


@dataclass
class Usage:
    """What one handler invocation did."""

    cpu_s: float = 0.0  # handler thread CPU, instrumentation excluded
    wall_s: float = 0.0
    boto_cpu_s: float = 0.0  # CPU inside boto3 calls (moto's backend included)
    moto_cpu_s: defaultdict[str, float] = field(
        default_factory=lambda: defaultdict(float)
    )  # CPU inside moto's backend, by service
    op_cpu_s: defaultdict[str, float] = field(
        default_factory=lambda: defaultdict(float)
    )  # CPU inside boto3 calls, by operation
    op_moto_cpu_s: defaultdict[str, float] = field(
        default_factory=lambda: defaultdict(float)
    )  # of which moto's backend
    calls: Counter[str] = field(default_factory=Counter)
    rru: float = 0.0
    op_rru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    table_rru: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    reads: Counter[str] = field(default_factory=Counter)  # GetItem by item kind ("FLOW", "PAR", ...)
    writes: list[Write] = field(default_factory=list)
    log_bytes: int = 0
    invocations: int = 0
    tls_connects: int = 0  # new TLS connections the relay opened (to the portal)
    tls_cpu_s: float = 0.0

    @property
    def wru(self) -> float:
        return sum(w.units for w in self.writes)

    @property
    def index_wru(self) -> float:
        return sum(w.index_units for w in self.writes)


class Meter:
    """Times handler invocations and accounts every boto3 call made inside one."""

    def __init__(self) -> None:
        self._local = threading.local()
        self.shapes: dict[str, TableShape] = {}
        self.peek_client: Any = None
        self.log = _ByteCounter()

    # -- state of the calling thread ---------------------------------------------------------------

    def active(self) -> Usage | None:
        if getattr(self._local, "suspended", False):
            return None
        usage: Usage | None = getattr(self._local, "usage", None)
        return usage

    def target(self, usage: Usage) -> None:
        """The usage the next handler invocation in this thread is accounted to."""
        self._local.target = usage

    def timed(self, call: Callable[[], Any]) -> Any:
        usage: Usage | None = getattr(self._local, "target", None)
        if usage is None:
            return call()
        self._local.target = None
        self._local.usage = usage
        self._local.overhead_cpu = 0.0
        self._local.overhead_wall = 0.0
        logged = self.log.count
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return call()
        finally:
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            usage.cpu_s += cpu - self._local.overhead_cpu
            usage.wall_s += wall - self._local.overhead_wall
            usage.log_bytes += self.log.count - logged
            usage.invocations += 1
            self._local.usage = None

    def _overhead(self, cpu: float, wall: float) -> None:
        self._local.overhead_cpu += cpu
        self._local.overhead_wall += wall

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        self._local.suspended = True
        try:
            yield
        finally:
            self._local.suspended = False

    # -- the boto3 hook ------------------------------------------------------------------------------

    def api_call(self, original: Callable[..., Any], client: Any, operation: str, params: Any) -> Any:
        usage = self.active()
        if usage is None:
            return original(client, operation, params)
        service = client.meta.service_model.endpoint_prefix
        c0, w0 = time.thread_time(), time.perf_counter()
        targets = self._write_targets(operation, params) if service == "dynamodb" else []
        before = self._peek(targets)
        c1, w1 = time.thread_time(), time.perf_counter()
        result: Any = None
        try:
            result = original(client, operation, params)
            return result
        finally:
            c2, w2 = time.thread_time(), time.perf_counter()
            usage.boto_cpu_s += c2 - c1
            usage.calls[f"{service}.{operation}"] += 1
            usage.op_cpu_s[f"{service}.{operation}"] += c2 - c1
            if service == "dynamodb":
                self._account(usage, operation, params, result, targets, before)
            c3, w3 = time.thread_time(), time.perf_counter()
            self._overhead((c1 - c0) + (c3 - c2), (w1 - w0) + (w3 - w2))

    def moto_call(
        self, original: Callable[..., Any], stub: Any, event_name: str, request: Any, **kw: Any
    ) -> Any:
        usage = self.active()
        if usage is None:
            return original(stub, event_name, request, **kw)
        started = time.thread_time()
        try:
            return original(stub, event_name, request, **kw)
        finally:
            spent = time.thread_time() - started
            _, service, operation = event_name.split(".")
            usage.moto_cpu_s[service] += spent
            usage.op_moto_cpu_s[f"{service}.{operation}"] += spent

    def tls_connect(self, original: Callable[[Any], None], connection: Any) -> None:
        usage = self.active()
        if usage is None:
            return original(connection)
        started = time.thread_time()
        try:
            return original(connection)
        finally:
            usage.tls_connects += 1
            usage.tls_cpu_s += time.thread_time() - started

    # -- DynamoDB units ------------------------------------------------------------------------------

    def _key(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.shapes[table].keys}

    def _write_targets(
        self, operation: str, params: dict[str, Any]
    ) -> list[tuple[str, str, dict[str, Any], bool]]:
        """(table, kind, key, transactional) of every item a write touches."""
        if operation == "PutItem":
            return [(params["TableName"], "Put", self._key(params["TableName"], params["Item"]), False)]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(params["TableName"], operation.removesuffix("Item"), params["Key"], False)]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                key = self._key(body["TableName"], body["Item"]) if kind == "Put" else body["Key"]
                found.append((body["TableName"], kind, key, True))
            return found
        if operation == "BatchWriteItem":
            batch = []
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        batch.append((table, "Put", self._key(table, request["PutRequest"]["Item"]), False))
                    else:
                        batch.append((table, "Delete", request["DeleteRequest"]["Key"], False))
            return batch
        return []

    def _peek(self, targets: list[tuple[str, str, dict[str, Any], bool]]) -> list[dict[str, Any] | None]:
        if not targets:
            return []
        with self.suspended():
            return [
                self.peek_client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
                for table, _, key, _ in targets
            ]

    def _account(
        self,
        usage: Usage,
        operation: str,
        params: dict[str, Any],
        result: Any,
        targets: list[tuple[str, str, dict[str, Any], bool]],
        before: list[dict[str, Any] | None],
    ) -> None:
        if targets:
            after = self._peek(targets)
            for (table, kind, key, transactional), old, new in zip(targets, before, after, strict=True):
                if kind == "ConditionCheck":
                    new = old
                size = max(item_size(old), item_size(new))
                index_by = {} if kind == "ConditionCheck" else self._index_units_by(table, old, new)
                usage.writes.append(
                    Write(
                        operation,
                        table,
                        kind,
                        transactional,
                        item_size(old),
                        item_size(new),
                        write_units(size) * (2 if transactional else 1),
                        sum(index_by.values()),
                        item_label(table, key),
                        index_by,
                    )
                )
            return
        if result is None:
            return
        consistent = 1.0 if params.get("ConsistentRead") else 0.5
        units: float
        if operation == "GetItem":
            units = max(1, math.ceil(item_size(result.get("Item")) / 4096)) * consistent
            usage.reads[item_label(params["TableName"], params["Key"])] += 1
        elif operation in ("Query", "Scan"):
            total = sum(item_size(item) for item in result.get("Items", []))
            units = max(1, math.ceil(total / 4096)) * consistent
        else:
            return
        usage.rru += units
        usage.op_rru[operation] += units
        usage.table_rru[params["TableName"]] += units

    def _index_units_by(
        self, table: str, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> dict[str, float]:
        """Writes to each global secondary index, at the standard rate (assumption: transactions do
        not double them), from whether the old and new item are in each index."""
        shape = self.shapes[table]
        by: dict[str, float] = {}
        for index in shape.indexes:
            units = 0.0

            def projected(item: dict[str, Any] | None, index: Index = index) -> dict[str, Any] | None:
                if item is None or not all(name in item for name in index.keys):
                    return None
                if index.projection == "KEYS_ONLY":
                    return {name: item[name] for name in (*shape.keys, *index.keys)}
                return item

            was, now = projected(old), projected(new)
            if was is None and now is None:
                continue
            if was is None or now is None:
                units += write_units(item_size(was or now))
            elif any(was[name] != now[name] for name in index.keys):
                units += write_units(item_size(was)) + write_units(item_size(now))
            elif was != now:
                units += write_units(max(item_size(was), item_size(now)))
            if units:
                by[index.name] = units
        return by


class _ByteCounter(io.TextIOBase):
    """Stands in for stdout: counts the bytes the relay logs (CloudWatch Logs ingestion)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def write(self, text: str) -> int:
        self.count += len(text.encode())
        return len(text)

    def writable(self) -> bool:
        return True


class _TimedApp:
    """The Chalice app as the local gateway calls it, timed inside: what Lambda would bill."""

    def __init__(self, app: Any, meter: Meter) -> None:
        self._app = app
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def __call__(self, event: Any, context: Any) -> Any:
        return self._meter.timed(lambda: self._app(event, context))


# -- the world: moto, the relay, the sandbox, a partner ---------------------------------------------


@dataclass
class World:
    meter: Meter
    client: Any  # chalice.test.Client
    sandbox: Any  # sandbox.server.SandboxServer
    partner: Any  # tests.partner_helpers.TestPartner
    resources: dict[str, str]
    webhooks: list[str]
    notice_answers: list[int] = field(default_factory=list)
    payload_bytes: int = 0  # the signed JWT the sealed JWE carries
    fingerprints: int = 0


def _stage_environment() -> dict[str, str]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return {**config.get("environment_variables", {}), **config["stages"][STAGE]["environment_variables"]}


def lambda_memory_mb(function: str) -> tuple[int, str]:
    """The prod stage's configured memory for a Lambda function ("api_handler" serves every HTTP
    route, each scheduled handler is its own function), and where it was found."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    prod = config.get("stages", {}).get("prod", {})
    for where, value in (
        (f"stages.prod.lambda_functions.{function}", prod.get("lambda_functions", {}).get(function, {})),
        ("stages.prod", prod),
        (f"lambda_functions.{function}", config.get("lambda_functions", {}).get(function, {})),
        ("top level", config),
    ):
        memory = value.get("lambda_memory_size")
        if isinstance(memory, int):
            return memory, f"{where}.lambda_memory_size"
    return 128, "not configured: Chalice's default"


def _function(step: str) -> str:
    return "process_due" if step == SCHEDULED_RUN else "api_handler"


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def world() -> Iterator[World]:
    import boto3
    import urllib3.connection
    from botocore.client import BaseClient
    from chalice.test import Client
    from moto import mock_aws
    from moto.core.botocore_stubber import BotocoreStubber
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    from chalicelib import container
    from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
    from chalicelib.domain.clock import SystemClock
    from chalicelib.domain.registry import PartnerRegistry
    from chalicelib.telemetry import logger
    from infra.bootstrap import ensure_resources
    from infra.local_aws import make_emulator_faithful
    from sandbox.server import SandboxServer, load_services
    from scripts.dev import SANDBOX_SERVICES
    from tests.partner_helpers import TestPartner

    meter = Meter()
    original_call = BaseClient.__dict__["_make_api_call"]
    original_stub = BotocoreStubber.__dict__["__call__"]

    def api_call(self: Any, operation: str, params: Any) -> Any:
        return meter.api_call(original_call, self, operation, params)

    def stub_call(self: Any, event_name: str, request: Any, **kw: Any) -> Any:
        return meter.moto_call(original_stub, self, event_name, request, **kw)

    original_connect = urllib3.connection.HTTPSConnection.__dict__["connect"]

    def tls_connect(self: Any) -> None:
        meter.tls_connect(original_connect, self)

    saved_environ = dict(os.environ)
    handler = logger.registered_handler
    with contextlib.ExitStack() as stack:

        def restore_environment() -> None:
            os.environ.clear()
            os.environ.update(saved_environ)

        stack.callback(restore_environment)
        stack.callback(container.reset)
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE"):
            os.environ.pop(name, None)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                **_stage_environment(),
            }
        )
        make_emulator_faithful()
        stack.enter_context(mock_aws())
        container.reset()
        session = boto3.session.Session(region_name=REGION)
        dynamodb, kms = session.client("dynamodb"), session.client("kms")
        resources = ensure_resources(STAGE, dynamodb, kms, session.client("s3"))
        for table in (
            resources["RELAY_STATE_TABLE"],
            resources["RELAY_AUDIT_TABLE"],
            resources["RELAY_PARTNERS_TABLE"],
        ):
            described = dynamodb.describe_table(TableName=table)["Table"]
            meter.shapes[table] = TableShape(
                keys=tuple(k["AttributeName"] for k in described["KeySchema"]),
                indexes=tuple(
                    Index(
                        index["IndexName"],
                        tuple(k["AttributeName"] for k in index["KeySchema"]),
                        index["Projection"]["ProjectionType"],
                    )
                    for index in described.get("GlobalSecondaryIndexes", [])
                ),
            )
        meter.peek_client = dynamodb

        # the partner's webhook endpoint
        received: list[str] = []

        @Request.application
        def webhook_app(request: Request) -> Response:
            received.append(request.get_data(as_text=True))
            return Response("", status=204)

        webhook_server = make_server("127.0.0.1", 0, webhook_app, threaded=True)
        webhook_thread = threading.Thread(target=webhook_server.serve_forever, args=(0.05,), daemon=True)
        webhook_thread.start()
        stack.callback(webhook_thread.join, 5)
        stack.callback(webhook_server.server_close)
        stack.callback(webhook_server.shutdown)

        # the sandbox portal, deterministic: zero delays, notices only when asked
        services = load_services(SANDBOX_SERVICES, ISSUER)
        tls_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cpu-flow-")))
        sandbox = SandboxServer(services, tls_dir=tls_dir / "tls", deterministic=True).start()
        stack.callback(sandbox.stop)
        assert sandbox.tls is not None
        endpoints = sandbox.endpoints()
        os.environ.update(
            {
                "RELAY_PORTAL_AUTHORIZE_URL": endpoints["authorize_url"],
                "RELAY_PORTAL_TOKEN_URL": endpoints["token_url"],
                "RELAY_PORTAL_REQUEST_URL": endpoints["request_url"],
                "RELAY_PORTAL_RESULT_URL": endpoints["result_url"],
                "RELAY_PORTAL_CLIENT_CERT": str(sandbox.tls.client_cert),
                "RELAY_PORTAL_CLIENT_KEY": str(sandbox.tls.client_key),
                "RELAY_PORTAL_CA_BUNDLE": str(sandbox.tls.ca_cert),
                "RELAY_PORTAL_SERVICES": json.dumps(
                    {"local_tax": "SP00000001_AA0001", "vaccination": "SP00000001_AA0002"}
                ),
            }
        )

        partner = TestPartner()
        store = DynamoPartnerStore(dynamodb, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
        PartnerRegistry(store, SystemClock(), allow_loopback=True).register(
            partner.document(webhook_url=f"http://127.0.0.1:{webhook_server.server_port}/webhook")
        )

        from app import app

        client = stack.enter_context(Client(app, stage_name=STAGE, project_dir=str(ROOT)))
        gateway = client.http._local_gateway
        setattr(gateway, "_app_object", _TimedApp(app, meter))  # noqa: B010  # typed as Chalice
        stack.callback(setattr, gateway, "_app_object", app)
        scheduled = app.handler_map["process_due"]
        app.handler_map["process_due"] = lambda event, context: meter.timed(lambda: scheduled(event, context))
        stack.callback(app.handler_map.__setitem__, "process_due", scheduled)

        # the relay's logs and metric lines go to the byte counter, as Lambda's stdout would
        stack.enter_context(contextlib.redirect_stdout(meter.log))
        previous_stream = handler.setStream(meter.log)  # type: ignore[attr-defined]
        stack.callback(handler.setStream, previous_stream)  # type: ignore[attr-defined]
        stack.enter_context(_patched(BaseClient, "_make_api_call", api_call))
        stack.enter_context(_patched(BotocoreStubber, "__call__", stub_call))
        stack.enter_context(_patched(urllib3.connection.HTTPSConnection, "connect", tls_connect))

        here = World(
            meter=meter,
            client=client,
            sandbox=sandbox,
            partner=partner,
            resources=resources,
            webhooks=received,
        )

        def send_notice(url: str, body: dict[str, Any]) -> tuple[int, Any]:
            """What the sandbox's notice sender does, to the relay's test client."""
            assert url == f"{ISSUER}/portal/notice", url
            answer = client.http.post(
                "/portal/notice", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            here.notice_answers.append(answer.status_code)
            return answer.status_code, json.loads(answer.body)

        sandbox.portal._send_notice = send_notice
        yield here


# -- one onboarding --------------------------------------------------------------------------------


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _expect(step: str, response: Any, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{step}: expected {status}, got {response.status_code}: {response.body[:300]!r}")
    return response


def one_flow(w: World) -> tuple[dict[str, Usage], Usage]:
    """Every handler invocation of one onboarding, each accounted to its step; and the scheduled
    run that follows its notice (measured apart: it is not part of the flow)."""
    import requests

    from tests.partner_helpers import Pkce

    usage = {name: Usage() for name in STEP_NAMES}
    http, meter, partner = w.client.http, w.meter, w.partner
    pkce, state = Pkce(), secrets.token_urlsafe(12)

    meter.target(usage["par"])
    fields = {
        "response_type": "code",
        "client_id": partner.client_id,
        "redirect_uri": partner.redirect_uri,
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "scope": "local_tax",
        "purpose": "loan-screening",
        **partner.authentication(ISSUER),
    }
    pushed = _expect("par", http.post("/par", body=urlencode(fields), headers=dict(FORM)), 201)
    request_uri = json.loads(pushed.body)["request_uri"]

    meter.target(usage["authorize"])
    query = urlencode({"client_id": partner.client_id, "request_uri": request_uri})
    page = _expect("authorize", http.get(f"/authorize?{query}"), 200)
    csrf_cookie = page.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.body.decode())
    assert found is not None

    meter.target(usage["decision"])
    decided = _expect(
        "decision",
        http.post(
            "/authorize/decision",
            body=urlencode({"request_uri": request_uri, "csrf_token": found.group(1), "action": "continue"}),
            headers={**FORM, "Cookie": f"relay_csrf={csrf_cookie}"},
        ),
        303,
    )

    # the resident at the portal (the sandbox's CPU, in its own threads: not the relay's)
    browser = requests.Session()
    browser.trust_env = False
    portal_page = browser.get(decided.headers["Location"], timeout=10)
    session_field = re.search(r'name="session" value="([^"]+)"', portal_page.text)
    assert session_field is not None, portal_page.text[:300]
    signed = browser.post(
        f"{w.sandbox.app_url}/online-authorization-web/login",
        data={"session": session_field.group(1), "persona": "salaried", "pin": "1234", "action": "signin"},
        allow_redirects=False,
        timeout=10,
    )
    if signed.status_code != 303:
        signed = browser.post(
            f"{w.sandbox.app_url}/online-authorization-web/consent",
            data={"session": session_field.group(1), "action": "agree"},
            allow_redirects=False,
            timeout=10,
        )
    location = signed.headers["Location"]
    assert location.startswith(CALLBACK + "?"), location
    browser.close()

    meter.target(usage["callback"])
    # the browser that left for the portal carries the binding cookie the decision set
    binding = next(
        value.split(";", 1)[0] for value in decided.headers["Set-Cookie"] if value.startswith("relay_portal=")
    )
    called_back = _expect(
        "callback", http.get(f"/portal/callback?{urlsplit(location).query}", headers={"Cookie": binding}), 303
    )
    code = _query(called_back.headers["Location"])["code"]

    meter.target(usage["token"])
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": partner.redirect_uri,
        "code_verifier": pkce.verifier,
        **partner.authentication(ISSUER),
    }
    headers = {**FORM, "DPoP": partner.dpop("POST", f"{ISSUER}/token")}
    issued = _expect("token", http.post("/token", body=urlencode(fields), headers=headers), 200)
    access_token = json.loads(issued.body)["access_token"]

    meter.target(usage["notice"])
    webhooks = len(w.webhooks)
    sent = w.sandbox.portal.deliver_due_notices()
    if len(sent) != 1 or w.notice_answers[-1:] != [200]:
        raise RuntimeError(f"notice: {len(sent)} notices sent, answers {w.notice_answers[-3:]}")
    if len(w.webhooks) != webhooks + 1:  # the notice that seals also tells the partner
        raise RuntimeError(f"notice: {len(w.webhooks) - webhooks} webhook events received, not 1")

    event = w.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region=REGION
    )
    scheduled = Usage()
    meter.target(scheduled)
    outcome = w.client.lambda_.invoke("process_due", event).payload
    if outcome != {}:  # the notice sealed the delivery and told the partner: nothing is left
        raise RuntimeError(f"scheduled: process_due answered {outcome}")

    meter.target(usage["pickup"])
    proof = partner.dpop("GET", SELF_INFO, access_token=access_token)
    picked = _expect(
        "pickup",
        http.get("/v1/self-info", headers={"Authorization": f"DPoP {access_token}", "DPoP": proof}),
        200,
    )
    if not w.payload_bytes:
        from joserfc import jwe

        w.payload_bytes = len(
            jwe.decrypt_compact(picked.body.decode(), partner.encryption_key).plaintext or b""
        )
    for name, used in (*usage.items(), (SCHEDULED_RUN, scheduled)):
        if used.invocations != 1:
            raise RuntimeError(f"{name}: {used.invocations} handler invocations were timed, not 1")
    return usage, scheduled


@contextlib.contextmanager
def _counting_fingerprints(w: World) -> Iterator[None]:
    """Counts the SHA-256 fingerprints a flow computes, plus its one PKCE S256 hash, for the floor."""
    from chalicelib.domain import authorization, delivery, flow

    original = flow.fingerprint

    def counted(secret: str) -> str:
        w.fingerprints += 1
        return original(secret)

    with contextlib.ExitStack() as stack:
        for module in (authorization, delivery):  # they import it by name
            if "fingerprint" in module.__dict__:
                stack.enter_context(_patched(module, "fingerprint", counted))
        yield
    w.fingerprints += 1  # verify_code_verifier hashes the verifier once (chalicelib/domain/oauth/pkce.py)


# -- the floor -------------------------------------------------------------------------------------


@dataclass
class FloorItem:
    name: str
    where: str
    count: int
    run: Callable[[], Any]


def floor_items(w: World) -> list[FloorItem]:
    """The JOSE, KMS and working-key operations a flow cannot avoid, each as cheaply as it can be
    done (since issue [13] one KMS request: the sealed payload's Sign)."""
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from joserfc import jwe, jws
    from joserfc.jwk import ECKey

    from chalicelib import container
    from chalicelib.adapters.keyring import canonical

    partner, kms, resources = w.partner, container.get_container().aws.kms, w.resources
    signing_key = ECKey.import_key(dict(partner.signing_key.as_dict(private=False)))
    assertion = partner.client_assertion(ISSUER)
    token = secrets.token_urlsafe(32)
    proof = partner.dpop("GET", SELF_INFO, access_token=token)
    encryption_key = ECKey.import_key(dict(partner.encryption_key.as_dict(private=False)))
    payload = secrets.token_urlsafe(w.payload_bytes)[: w.payload_bytes].encode()
    signing_input = payload[: max(1, w.payload_bytes - 87)]  # a JWS minus its ".signature"
    portal_token = secrets.token_urlsafe(32).encode()
    context = {"flow_id": secrets.token_urlsafe(16)}
    secret = secrets.token_urlsafe(32)
    # The keyring's working keys (chalicelib/adapters/keyring.py), held in memory once per slot.
    working_key = secrets.token_bytes(32)
    event_key = ec.generate_private_key(ec.SECP256R1())
    header = b"\xa1" + b"20261206"
    nonce = secrets.token_bytes(12)
    sealed_token = AESGCM(working_key).encrypt(nonce, portal_token, header + canonical(context))

    def verify_assertion() -> None:
        jws.deserialize_compact(assertion, signing_key, algorithms=["ES256"])

    def verify_dpop() -> None:
        header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
        key = ECKey.import_key(header["jwk"])
        jws.deserialize_compact(proof, key, algorithms=["ES256"])
        key.thumbprint()
        hashlib.sha256(token.encode()).digest()  # ath

    def link_mac() -> None:
        hmac.new(working_key, secret.encode(), hashlib.sha256).digest()

    def encrypt() -> None:
        AESGCM(working_key).encrypt(secrets.token_bytes(12), portal_token, header + canonical(context))

    def decrypt() -> None:
        AESGCM(working_key).decrypt(nonce, sealed_token, header + canonical(context))

    def sign_event() -> None:
        event_key.sign(signing_input[:600], ec.ECDSA(hashes.SHA256()))

    def sign() -> None:
        kms.sign(
            KeyId=resources["RELAY_SIGNING_KEY_ID"],
            Message=signing_input,
            MessageType="RAW",
            SigningAlgorithm="ECDSA_SHA_256",
        )

    def encrypt_jwe() -> None:
        protected = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": "acme-enc-1", "cty": "JWT"}
        jwe.encrypt_compact(protected, payload, encryption_key)

    def fingerprint() -> None:
        hashlib.sha256(secret.encode()).hexdigest()

    return [
        FloorItem("ES256 verify of the client assertion (registered key)", "PAR, token", 2, verify_assertion),
        FloorItem(
            "DPoP proof: import the header jwk, ES256 verify, RFC 7638 thumbprint, ath",
            "token, pickup",
            2,
            verify_dpop,
        ),
        FloorItem("HMAC-SHA256 under the month's receipt key", "consent page (receipt link)", 1, link_mac),
        FloorItem("AES-256-GCM encrypt under the day's token key (portal token)", "callback", 1, encrypt),
        FloorItem(
            "AES-256-GCM decrypt under the day's token key (portal token)", "notice (poll)", 1, decrypt
        ),
        FloorItem("KMS Sign ES256 via boto3 + moto", "notice (payload JWT)", 1, sign),
        FloorItem("ES256 sign with the hour's event key", "notice (webhook event JWT)", 1, sign_event),
        FloorItem(
            f"JWE ECDH-ES+A256KW / A256GCM to the partner key ({w.payload_bytes} B)",
            "notice (seal)",
            1,
            encrypt_jwe,
        ),
        FloorItem(
            "SHA-256 fingerprint (request_uri, CSRF, state, code, token, jti, PKCE)",
            "every step",
            max(1, w.fingerprints),
            fingerprint,
        ),
    ]


def time_floor(items: list[FloorItem]) -> dict[str, float]:
    """CPU seconds of each item, all its occurrences in one flow, each run alone."""
    spent = {}
    for item in items:
        started = time.thread_time()
        for _ in range(item.count):
            item.run()
        spent[item.name] = time.thread_time() - started
    return spent


# -- the figures -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _calls_total(usage: dict[str, Usage]) -> Counter[str]:
    total: Counter[str] = Counter()
    for used in usage.values():
        total.update(used.calls)
    return total


def _billed_ms(used: Usage, name: str, memory: dict[str, int]) -> int:
    """Modelled billed duration of one invocation (see the text of the report)."""
    relay_cpu = used.cpu_s - sum(used.moto_cpu_s.values())
    waited = max(0.0, used.wall_s - used.cpu_s) if name in EXTERNAL else 0.0
    scale = max(1.0, prices.LAMBDA_MB_PER_VCPU / memory[_function(name)])
    return math.ceil(relay_cpu * 1000 * scale + sum(used.calls.values()) * AWS_ROUND_TRIP_MS + waited * 1000)


def _gb_seconds(billed: dict[str, int], memory: dict[str, int]) -> float:
    return sum(ms / 1000 * memory[_function(step)] / 1024 for step, ms in billed.items())


def _cost(usage: dict[str, Usage], memory: dict[str, int]) -> dict[str, Any]:
    """USD per flow, by service, from one measured flow (its notice arrived: no scheduled run)."""
    billed_model = {name: _billed_ms(usage[name], name, memory) for name in STEP_NAMES}
    billed_wall = {name: math.ceil(usage[name].wall_s * 1000) for name in STEP_NAMES}
    calls = _calls_total(usage)
    rru = sum(usage[name].rru for name in STEP_NAMES)
    invocations = sum(usage[name].invocations for name in STEP_NAMES)
    api_requests = invocations  # every step of the flow is an API Gateway request
    wru = sum(u.wru for u in usage.values())
    index_wru = sum(u.index_wru for u in usage.values())
    kms = {
        op.removeprefix("kms."): n * KMS_PRICES[op.removeprefix("kms.")][1]
        for op, n in calls.items()
        if op.startswith("kms.")
    }
    log_bytes = sum(u.log_bytes for u in usage.values()) + invocations * PLATFORM_LOG_BYTES
    gb_seconds = _gb_seconds(billed_model, memory)
    lines = {
        "lambda_duration": gb_seconds * prices.LAMBDA_X86_USD_PER_GB_SECOND,
        "lambda_requests": invocations * prices.LAMBDA_USD_PER_REQUEST,
        "api_gateway_rest": api_requests * prices.API_GATEWAY_REST_USD_PER_REQUEST,
        "dynamodb_reads": rru * prices.DYNAMODB_USD_PER_RRU,
        "dynamodb_writes": (wru + index_wru) * prices.DYNAMODB_USD_PER_WRU,
        "kms": sum(kms.values()),
        "cloudwatch_logs": log_bytes / 1e9 * prices.CLOUDWATCH_LOGS_USD_PER_GB_INGESTED,
    }
    wall_gb_s = _gb_seconds(billed_wall, memory)
    return {
        "usd_per_10k": {k: v * 10_000 for k, v in lines.items()},
        "total_usd_per_10k": sum(lines.values()) * 10_000,
        "billed_ms_model": billed_model,
        "billed_ms_wall": billed_wall,
        "lambda_duration_usd_per_10k_wall": wall_gb_s * prices.LAMBDA_X86_USD_PER_GB_SECOND * 10_000,
        "api_gateway_http_api_usd_per_10k": api_requests * prices.API_GATEWAY_HTTP_USD_PER_REQUEST * 10_000,
        "kms_requests": {op.removeprefix("kms."): n for op, n in calls.items() if op.startswith("kms.")},
        "rru": rru,
        "wru_table": wru,
        "wru_indexes": index_wru,
        "log_bytes": log_bytes,
        "memory_mb": dict(memory),
        "gb_seconds": gb_seconds,
        "invocations": invocations,
        "api_gateway_requests": api_requests,
    }


def cost_floor(hops: int, state_changes: int, memory_mb: int) -> dict[str, Any]:
    """USD of the cheapest flow these services allow, at the same prices: one REST API request and
    one Lambda request, billed the minimum duration, per hop; one conditional write of 1 WRU (an item
    under 1 KiB, not in a transaction, no index) per state-changing invocation; and the KMS request
    the sealing needs (one asymmetric Sign). No reads, no logs, no audit records."""
    lines = {
        "api_gateway_rest": hops * prices.API_GATEWAY_REST_USD_PER_REQUEST,
        "lambda_requests": hops * prices.LAMBDA_USD_PER_REQUEST,
        "lambda_duration": hops
        * prices.LAMBDA_MIN_BILLED_MS
        / 1000
        * memory_mb
        / 1024
        * prices.LAMBDA_X86_USD_PER_GB_SECOND,
        "dynamodb_writes": state_changes * prices.DYNAMODB_USD_PER_WRU,
        "kms": SEAL_KMS_SIGNS * prices.KMS_ASYMMETRIC_USD_PER_REQUEST,
    }
    return {
        "usd_per_10k": {k: v * 10_000 for k, v in lines.items()},
        "total_usd_per_10k": sum(lines.values()) * 10_000,
        "hops": hops,
        "state_changes": state_changes,
        "memory_mb": memory_mb,
        "kms_signs": SEAL_KMS_SIGNS,
    }


def quota_use(flow: dict[str, Usage], cost: dict[str, Any]) -> dict[str, Any]:
    """What one flow consumes of what the default quotas meter (bench/quotas.py)."""
    table_rru: defaultdict[str, float] = defaultdict(float)
    table_wru: defaultdict[str, float] = defaultdict(float)
    index_wru: defaultdict[str, float] = defaultdict(float)
    for used in flow.values():
        for table, units in used.table_rru.items():
            table_rru[table] += units
        for w in used.writes:
            table_wru[w.table] += w.units
            for index, units in w.index_by.items():
                index_wru[f"{w.table}/{index}"] += units
    return {
        "api_requests": cost["api_gateway_requests"],
        "billed_s": sum(cost["billed_ms_model"].values()) / 1000,
        "calls": dict(sorted(_calls_total(flow).items())),
        "table_rru": dict(sorted(table_rru.items())),
        "table_wru": dict(sorted(table_wru.items())),
        "index_wru": dict(sorted(index_wru.items())),
    }


def _scheduler_cost(run: Usage, memory: dict[str, int]) -> dict[str, Any]:
    """USD of one scheduled run that finds nothing due, and of a month of them (one a minute):
    a fixed cost, whatever the number of onboardings."""
    billed = _billed_ms(run, SCHEDULED_RUN, memory)
    lines = {
        "lambda_duration": _gb_seconds({SCHEDULED_RUN: billed}, memory) * prices.LAMBDA_X86_USD_PER_GB_SECOND,
        "lambda_requests": prices.LAMBDA_USD_PER_REQUEST,
        "dynamodb_reads": run.rru * prices.DYNAMODB_USD_PER_RRU,
        "cloudwatch_logs": (run.log_bytes + PLATFORM_LOG_BYTES)
        / 1e9
        * prices.CLOUDWATCH_LOGS_USD_PER_GB_INGESTED,
        "eventbridge": prices.EVENTBRIDGE_SCHEDULED_USD_PER_INVOCATION,
    }
    per_run = sum(lines.values())
    return {
        "billed_ms_model": billed,
        "aws_calls": dict(sorted(run.calls.items())),
        "rru": run.rru,
        "log_bytes": run.log_bytes,
        "usd_per_run": per_run,
        "usd_per_month": per_run * SCHEDULED_RUNS_PER_MONTH,
        "runs_per_month": SCHEDULED_RUNS_PER_MONTH,
    }


def measure() -> Section:
    import logging

    began = time.monotonic()
    configured = {function: lambda_memory_mb(function) for function in ("api_handler", "process_due")}
    memory = {function: mb for function, (mb, _) in configured.items()}
    memory_source = "; ".join(f"{function} {mb} MB ({where})" for function, (mb, where) in configured.items())
    flows: list[dict[str, Usage]] = []
    runs: list[Usage] = []  # the scheduled run after each flow's notice
    floors: list[dict[str, float]] = []
    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # the sandbox's and the webhook endpoint's access logs
    try:
        with world() as w:
            with _counting_fingerprints(w):
                warm, _ = one_flow(w)  # pays imports, clients, the signing key's public half, TLS
            items = floor_items(w)
            time_floor(items)  # warms the floor's own paths
            for _ in range(FLOWS):
                flow, run = one_flow(w)
                flows.append(flow)
                runs.append(run)
                floors.append(time_floor(items))
            webhooks = len(w.webhooks)
            payload_bytes, fingerprints = w.payload_bytes, w.fingerprints
    finally:
        werkzeug_log.setLevel(werkzeug_level)

    def flow_cpu(flow: dict[str, Usage]) -> float:
        return sum(u.cpu_s for u in flow.values())

    def flow_moto(flow: dict[str, Usage], service: str | None = None) -> float:
        return sum(
            sum(u.moto_cpu_s.values()) if service is None else u.moto_cpu_s[service] for u in flow.values()
        )

    totals = [flow_cpu(f) for f in flows]
    cpu, floor_cpu = _median(totals), _median([sum(f.values()) for f in floors])
    ratio = cpu / floor_cpu
    without_dynamodb = _median([flow_cpu(f) - flow_moto(f, "dynamodb") for f in flows])
    per_step: dict[str, dict[str, float]] = {
        name: {
            "cpu": _median([f[name].cpu_s for f in flows]),
            "wall": _median([f[name].wall_s for f in flows]),
            "boto": _median([f[name].boto_cpu_s for f in flows]),
            "moto_dynamodb": _median([f[name].moto_cpu_s["dynamodb"] for f in flows]),
            "moto_kms": _median([f[name].moto_cpu_s["kms"] for f in flows]),
            "moto": _median([sum(f[name].moto_cpu_s.values()) for f in flows]),
        }
        for name in STEP_NAMES
    }
    costs = sorted(((_cost(f, memory), f) for f in flows), key=lambda pair: pair[0]["total_usd_per_10k"])
    cost, median_flow = costs[len(costs) // 2]
    calls = _calls_total(median_flow)
    aws_calls = sum(calls.values())
    floor_cost = cost_floor(
        hops=sum(used.invocations for used in median_flow.values()),
        state_changes=sum(1 for used in median_flow.values() if used.writes),
        memory_mb=memory["api_handler"],
    )
    floor_ratio = cost["total_usd_per_10k"] / floor_cost["total_usd_per_10k"]
    run_costs = sorted(
        ((_scheduler_cost(run, memory), run) for run in runs), key=lambda pair: pair[0]["usd_per_run"]
    )
    scheduler_cost, median_run = run_costs[len(run_costs) // 2]
    scheduled_run = {
        "cpu": _median([run.cpu_s for run in runs]),
        "wall": _median([run.wall_s for run in runs]),
        "boto": _median([run.boto_cpu_s for run in runs]),
        "moto_dynamodb": _median([run.moto_cpu_s["dynamodb"] for run in runs]),
        "moto_kms": _median([run.moto_cpu_s["kms"] for run in runs]),
        "moto": _median([sum(run.moto_cpu_s.values()) for run in runs]),
    }

    section = Section(
        title="CPU per complete flow, AWS calls and cost",
        figures={
            "cpu_floor_ratio": round(ratio, 2),
            "aws_calls_per_flow": aws_calls,
            "usd_per_10k_flows": round(cost["total_usd_per_10k"], 3),
            "usd_floor_per_10k": round(floor_cost["total_usd_per_10k"], 3),
            "usd_floor_ratio": round(floor_ratio, 2),
        },
    )
    elapsed = time.monotonic() - began
    section.detail = _detail(
        per_step=per_step,
        floors=floors,
        items=items,
        flow_cpu=cpu,
        floor_cpu=floor_cpu,
        ratio=ratio,
        ratio_without_dynamodb=without_dynamodb / floor_cpu,
        moto_all=_median([flow_moto(f) for f in flows]),
        moto_dynamodb=_median([flow_moto(f, "dynamodb") for f in flows]),
        first_flow_cpu=flow_cpu(warm),
        sample=median_flow,
        calls=calls,
        call_counts={sum(_calls_total(f).values()) for f in flows},
        cost=cost,
        floor_cost=floor_cost,
        floor_ratio=floor_ratio,
        scheduled_run=scheduled_run,
        scheduler_cost=scheduler_cost,
        median_run=median_run,
        memory_source=memory_source,
        webhooks=webhooks,
        elapsed=elapsed,
    )
    section.data = {
        "flows": FLOWS,
        "flow_cpu_ms_median": cpu * 1000,
        "floor_cpu_ms_median": floor_cpu * 1000,
        "cpu_floor_ratio_without_moto_dynamodb": round(without_dynamodb / floor_cpu, 2),
        "moto_cpu_ms_median": {
            "all": _median([flow_moto(f) for f in flows]) * 1000,
            "dynamodb": _median([flow_moto(f, "dynamodb") for f in flows]) * 1000,
        },
        "first_flow_cpu_ms": flow_cpu(warm) * 1000,
        "per_step_ms_median": {
            name: {k: v * 1000 for k, v in step.items()} for name, step in per_step.items()
        },
        "floor": {
            item.name: {
                "needed_at": item.where,
                "per_flow": item.count,
                "us_per_flow": _median([f[item.name] for f in floors]) * 1e6,
            }
            for item in items
        },
        "portal_tls_handshakes_per_flow": sum(u.tls_connects for u in median_flow.values()),
        "portal_tls_cpu_ms_median": _median([sum(u.tls_cpu_s for u in f.values()) for f in flows]) * 1000,
        "payload_bytes": payload_bytes,
        "fingerprints_per_flow": fingerprints,
        "aws_calls_per_flow": aws_calls,
        "aws_calls_by_operation": dict(sorted(calls.items())),
        "aws_calls_by_step": {name: dict(sorted(median_flow[name].calls.items())) for name in STEP_NAMES},
        "dynamodb_writes": [
            {"step": name, **vars(w)} for name in STEP_NAMES for w in median_flow[name].writes
        ],
        "dynamodb_rru_by_step": {name: median_flow[name].rru for name in STEP_NAMES},
        "cost": cost,
        "cost_floor": floor_cost,
        "quota_use": quota_use(median_flow, cost),
        "scheduled_run": {
            "per_flow": False,
            "runs_per_month": SCHEDULED_RUNS_PER_MONTH,
            "cpu_ms_median": {k: v * 1000 for k, v in scheduled_run.items()},
            "aws_calls": scheduler_cost["aws_calls"],
            "rru": scheduler_cost["rru"],
            "billed_ms_model": scheduler_cost["billed_ms_model"],
            "usd_per_run": scheduler_cost["usd_per_run"],
            "usd_per_month": scheduler_cost["usd_per_month"],
        },
        "prices_as_of": prices.AS_OF,
        "prices_source": prices.SOURCES,
        "lambda_memory_mb": memory,
        "lambda_memory_source": memory_source,
        "assumptions": {
            "aws_round_trip_ms": AWS_ROUND_TRIP_MS,
            "platform_log_bytes_per_invocation": PLATFORM_LOG_BYTES,
            "index_writes_not_doubled_in_transactions": True,
        },
        "elapsed_s": round(elapsed, 1),
    }
    return section


def _detail(**m: Any) -> str:
    per_step: dict[str, dict[str, float]] = m["per_step"]
    sample: dict[str, Usage] = m["sample"]
    cost: dict[str, Any] = m["cost"]
    items: list[FloorItem] = m["items"]
    floors: list[dict[str, float]] = m["floors"]
    calls: Counter[str] = m["calls"]
    total_calls = sum(calls.values())
    lines = [
        f"{FLOWS} complete onboardings after one warm-up flow, in one process: moto in memory, the relay "
        "through Chalice's test client, the sandbox portal on loopback threads (deterministic: no delays; its "
        "completion notice is delivered when the flow reaches it, and the notice's request retrieves the "
        "result, seals it and sends the webhook), a partner with a webhook endpoint. A scheduled run after "
        "each notice is measured apart: it is not part of the flow (below). CPU is "
        "`time.thread_time()` inside the Lambda handler, in the calling thread: the sandbox, the webhook "
        "endpoint and Chalice's local gateway (API Gateway's work) are excluded; moto, the stand-in for "
        "DynamoDB's and KMS's servers, is included; the benchmark's own accounting (reading item sizes) is "
        "subtracted. Medians over the flows; the floor is timed alone after each flow. The sandbox, checked: "
        "deterministic timing has zero result and notice delays (its only sleep is the timeout scenarios'), "
        "the default scenario is normal and the persona (salaried) has none of its own.",
        "",
        f"**CPU per flow {_ms(m['flow_cpu'])} ms against a floor of {_ms(m['floor_cpu'])} ms: "
        f"{m['ratio']:.2f}x** (target {limit_text('cpu_floor_ratio')}). moto's backend took {_ms(m['moto_all'])} ms of it (DynamoDB "
        f"{_ms(m['moto_dynamodb'])} ms). Without moto's DynamoDB CPU, which in AWS is DynamoDB's and not the "
        f"Lambda's: {m['ratio_without_dynamodb']:.2f}x (for information; the headline is the total). The "
        f"warm-up flow took {_ms(m['first_flow_cpu'])} ms (imports, boto3 clients, KMS GetPublicKey, which "
        "is then cached per container, TLS contexts).",
        "",
        "| step | invocation | CPU ms | moto DynamoDB | moto KMS | boto3 client side | relay code | wall ms "
        "| AWS calls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label, _ in STEPS:
        s = per_step[name]
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(sample[name].calls.items())) or "—"
        lines.append(
            f"| {name} | {label} | {_ms(s['cpu'])} | {_ms(s['moto_dynamodb'])} | {_ms(s['moto_kms'])} | "
            f"{_ms(s['boto'] - s['moto'])} | {_ms(s['cpu'] - s['boto'])} | {_ms(s['wall'])} | {ops} |"
        )
    run: dict[str, float] = m["scheduled_run"]
    median_run: Usage = m["median_run"]
    scheduler: dict[str, Any] = m["scheduler_cost"]
    run_ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(median_run.calls.items())) or "—"
    lines += [
        "",
        "Not part of the flow, measured apart: the scheduled run after the notice (EventBridge, every minute "
        "whatever the volume). It found nothing of the flow left to do; it is what seals a flow whose notice "
        "never comes (that flow's poll, seal and webhook then cost what the notice step does, plus the run).",
        "",
        "| run | invocation | CPU ms | moto DynamoDB | moto KMS | boto3 client side | relay code | wall ms "
        "| AWS calls |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {SCHEDULED_RUN} | {SCHEDULED_LABEL} | {_ms(run['cpu'])} | {_ms(run['moto_dynamodb'])} | "
        f"{_ms(run['moto_kms'])} | {_ms(run['boto'] - run['moto'])} | {_ms(run['cpu'] - run['boto'])} | "
        f"{_ms(run['wall'])} | {run_ops} |",
    ]
    tls = [used for used in sample.values() if used.tls_connects]
    if tls:
        connects = sum(used.tls_connects for used in tls)
        tls_cpu = sum(used.tls_cpu_s for used in tls)
        lines += [
            "",
            f"The relay's code includes {connects} mutual-TLS handshakes to the portal per flow "
            f"({_ms(tls_cpu / connects)} ms of CPU each): the sandbox's Werkzeug server answers "
            "`Connection: close`, so every portal call connects again; the relay's client keeps connections "
            "alive, so a portal that does too would save them within a warm container.",
        ]
    else:
        lines += [
            "",
            "No mutual-TLS handshake in a measured flow: the relay's client keeps its connection to the "
            "portal alive across invocations of a warm container, and the sandbox keeps it open (HTTP/1.1 "
            "persistent connections, as the portal's hosts); the warm-up flow paid the one handshake.",
        ]
    lines += [
        "",
        "The floor, per flow: each operation timed alone, as cheaply as it can be done (keys already "
        "imported, except the DPoP key that arrives in the proof); the KMS ones through boto3 and moto like "
        "the relay's own calls. The portal's mutual TLS is not in the floor.",
        "",
        "| operation | needed at | per flow | µs each | µs per flow |",
        "|---|---|---|---|---|",
    ]
    for item in items:
        spent = _median([f[item.name] for f in floors])
        lines.append(
            f"| {item.name} | {item.where} | {item.count} | {spent / item.count * 1e6:.0f} | {spent * 1e6:.0f} |"
        )
    lines += [
        "",
        f"**AWS calls per flow: {total_calls}** (target {limit_text('aws_calls_per_flow')}; {sorted(m['call_counts'])} in the measured "
        "flows): " + ", ".join(f"{op} {n}" for op, n in sorted(calls.items())) + ". "
        "The notice retrieves, seals and sends the partner's webhook in its own request, so no scheduled run "
        "is part of the flow; the run every minute (its "
        f"{sum(median_run.calls.values())} due-index queries, one per shard) is a fixed cost shared by every "
        "flow, below.",
        "",
        "DynamoDB units from the real item sizes (attribute names + values, read from moto before and after "
        "each write): 1 WRU per KiB, twice in a transaction, a replacing write counting the larger of the old "
        "and new item; 1 RRU per 4 KiB for the strongly consistent reads, half for the index queries; writes "
        "to global secondary indexes at the standard rate (an assumption: not doubled in transactions). The "
        "portal token's ciphertext is moto's, about 100 bytes shorter than AWS's.",
        "",
        "| step | RRU | writes (item: kind, old → new bytes, WRU) | index WRU |",
        "|---|---|---|---|",
    ]
    for name in STEP_NAMES:
        used = sample[name]
        writes = "; ".join(
            f"{w.item}: {w.kind}{' (tx)' if w.transactional else ''} {w.old_bytes}→{w.new_bytes}, {w.units:g}"
            for w in used.writes
        )
        lines.append(f"| {name} | {used.rru:g} | {writes or '—'} | {used.index_wru:g} |")
    lines += [
        f"| **flow** | **{cost['rru']:g}** | **{cost['wru_table']:g} WRU** | **{cost['wru_indexes']:g}** |",
        "",
        f"**Cost of 10,000 onboardings: USD {cost['total_usd_per_10k']:.3f}** (target "
        f"{limit_text('usd_per_10k_flows')}; the portal "
        f"excluded; free tiers ignored). Prices: ap-northeast-1 on-demand list prices from the public AWS "
        f"price pages as known on {prices.AS_OF}, not re-checked (no internet here): re-check them; each is "
        "a dated constant with its source in bench/prices.py. The median measured flow:",
        "",
        "| line | USD per 10k flows | basis |",
        "|---|---|---|",
    ]
    kms_basis = ", ".join(
        f"{op} {n} ({KMS_PRICES[op][0]})" for op, n in sorted(cost["kms_requests"].items()) if n
    )
    basis = {
        "lambda_duration": (
            f"{cost['invocations']} invocations, {sum(cost['billed_ms_model'].values())} billed ms per flow "
            f"(modelled, below), {cost['gb_seconds']:.4f} GB-s; memory: {m['memory_source']}; x86_64"
        ),
        "lambda_requests": f"{cost['invocations']} invocations",
        "api_gateway_rest": f"{cost['api_gateway_requests']} REST API requests",
        "dynamodb_reads": f"{cost['rru']:g} RRU",
        "dynamodb_writes": f"{cost['wru_table']:g} WRU on tables + {cost['wru_indexes']:g} on indexes",
        "kms": kms_basis,
        "cloudwatch_logs": (
            f"{cost['log_bytes']} B logged per flow (included: the relay's JSON logs and metric lines, "
            f"measured, + {PLATFORM_LOG_BYTES} B of platform lines per invocation, estimated)"
        ),
    }
    for line, usd in cost["usd_per_10k"].items():
        lines.append(f"| {line} | {usd:.4f} | {basis[line]} |")
    lines += [
        "",
        "Billed Lambda duration is a model, not a measurement: per invocation, the relay's own CPU (the "
        "handler's CPU minus moto's backend) times 1,769 MB / the function's memory (Lambda allocates CPU "
        "in proportion to memory, one vCPU at 1,769 MB; a vCPU is assumed as fast as this machine's core), "
        f"plus {AWS_ROUND_TRIP_MS:g} ms per AWS call (an assumed in-region round trip), plus the measured "
        "wait on the portal and the webhook endpoint over loopback (a real portal is slower), rounded up to "
        "1 ms. Billed ms per step: "
        + ", ".join(f"{k} {v}" for k, v in cost["billed_ms_model"].items())
        + ". With the in-process wall time as the billed time instead ("
        + ", ".join(f"{k} {v}" for k, v in cost["billed_ms_wall"].items())
        + f" ms), duration would be USD {cost['lambda_duration_usd_per_10k_wall']:.4f} per 10k. "
        f"The scheduled run is a fixed cost, not a flow's: one a minute ({scheduler['runs_per_month']:,} a "
        f"30-day month), each {scheduler['billed_ms_model']} billed ms (modelled as above) and "
        f"{scheduler['rru']:g} RRU for its {sum(median_run.calls.values())} queries, USD "
        f"{scheduler['usd_per_run'] * 1e6:.2f} per million runs: USD {scheduler['usd_per_month']:.3f} a month "
        "whatever the number of onboardings (EventBridge's scheduled invocations are free). Not included: cold "
        "starts (INIT), fixed monthly charges (the three KMS keys at USD 1 a month each) and storage: the audit "
        "trail keeps "
        f"{_audit_bytes(sample) / 1024:.1f} KiB per flow (the table, by_partner's copy of each document, by_day's "
        "keys and leaf hash) for its "
        "retention period; everything else expires within hours.",
        "",
        *_floor_text(m),
        "",
        *_missed(m),
        "",
        f"{m['webhooks']} webhook events were received; this part took {m['elapsed']:.0f} s.",
    ]
    return "\n".join(lines)


def _missed(m: dict[str, Any]) -> list[str]:
    """Why each missed target is missed, from this run's numbers, and what meeting it would take."""
    per_step: dict[str, dict[str, float]] = m["per_step"]
    sample: dict[str, Usage] = m["sample"]
    cost: dict[str, Any] = m["cost"]
    floor_cost: dict[str, Any] = m["floor_cost"]
    calls: Counter[str] = m["calls"]
    total_calls = sum(calls.values())
    client = sum(s["boto"] - s["moto"] for s in per_step.values())
    relay = sum(s["cpu"] - s["boto"] for s in per_step.values())
    kms_calls = sum(n for op, n in calls.items() if op.startswith("kms."))
    per_call = (client + m["moto_all"]) / total_calls
    writes = [w for used in sample.values() for w in used.writes]
    doubled = sum(w.units / 2 for w in writes if w.transactional)
    audit = sum(w.units + w.index_units for w in writes if w.table.endswith("-audit"))
    audit_index = sum(w.index_units for w in writes if w.table.endswith("-audit"))
    audit_records = sum(1 for w in writes if w.table.endswith("-audit"))
    big_flow = sum(
        1 for w in writes if w.item == "FLOW" and w.transactional and max(w.old_bytes, w.new_bytes) > 1024
    )
    state_changes = sum(1 for used in sample.values() if used.writes)
    usd = cost["usd_per_10k"]
    sign = calls["kms.Sign"] * prices.KMS_ASYMMETRIC_USD_PER_REQUEST * 10_000
    cpu_limit, calls_limit, usd_limit = (
        limit("cpu_floor_ratio"),
        limit("aws_calls_per_flow"),
        limit("usd_per_10k_flows"),
    )
    lines = ["**Targets missed: why, and what meeting them would take.**", ""]
    if m["ratio"] > cpu_limit:
        lines.append(
            f"- CPU ({m['ratio']:.1f}x the floor, target {limit_text('cpu_floor_ratio')}): the floor is "
            f"{kms_calls} KMS requests, 4 ES256 verifications and one JWE; the flow makes {total_calls} AWS "
            f"calls, {total_calls - kms_calls} of them DynamoDB calls the floor does not have. Their boto3 "
            f"client side alone (serialising, signing, parsing) is {_ms(client)} ms per flow, about "
            f"{client / total_calls * 1000:.2f} ms a call, and moto's backend {_ms(m['moto_all'])} ms; the "
            f"relay's own code (routing, pydantic, pages, the portal's mutual TLS, logging) is {_ms(relay)} ms. "
            f"At {cpu_limit:g}x ({_ms(cpu_limit * m['floor_cpu'])} ms), with an AWS call costing "
            f"{per_call * 1000:.2f} ms here (client and moto), there is room for about "
            f"{(cpu_limit - 1) * m['floor_cpu'] / per_call:.0f} calls beyond the floor's own and nothing else. "
            "In AWS, DynamoDB's server "
            f"time is not Lambda CPU, so the ratio Lambda sees is nearer {m['ratio_without_dynamodb']:.1f}x."
        )
    if total_calls > calls_limit:
        reads: Counter[str] = Counter()
        for used in sample.values():
            reads.update(used.reads)
        jti_puts = sum(1 for w in writes if w.item == "JTI" and not w.transactional)
        jti_in_transactions = sum(1 for w in writes if w.item == "JTI" and w.transactional)
        pointer_reads = reads["PAR"] + reads["CODE"] + reads["PROC"]
        left = total_calls - jti_puts - pointer_reads
        replay = (
            f"the replay store takes its own conditional put per client assertion and DPoP proof ({jti_puts}); "
            if jti_puts
            else ""
        )
        least = 2 * state_changes + kms_calls
        apart = [w for w in writes if w.item == "WEBHOOK" and not w.transactional]
        reasons = [
            "every state-changing invocation reads its state and writes it conditionally (single use, replay, "
            "no lost update)",
            replay.removesuffix("; "),
            f"a pointer (request_uri, code, processId) is read before the flow it points to ({pointer_reads})"
            if pointer_reads
            else "",
            f"the partner is read on partner-facing requests and at sealing ({reads['partners']})"
            if reads["partners"]
            else "",
            f"the webhook's attempt is recorded apart from the seal's transaction ({len(apart)})"
            if apart
            else "",
        ]
        lines.append(
            f"- AWS calls ({total_calls}, target {limit_text('aws_calls_per_flow')}): "
            + "; ".join(reason for reason in reasons if reason)
            + ". "
            + (
                f"The {jti_in_transactions} jtis of the client assertions and DPoP proofs are items of their "
                "step's own transaction, no call of their own. "
                if jti_in_transactions
                else ""
            )
            + "Values that carry their flow's id so that a step reads the flow directly (a data-model change) "
            f"would leave {left}. One read and one conditional write for each of the {state_changes} "
            f"state-changing invocations plus this run's {kms_calls} KMS requests make {least}, "
            f"{'above' if least > calls_limit else 'within'} the target: "
            + (
                "meeting it takes fewer KMS requests or writes that need no read first (the condition "
                "checks the state)."
                if least > calls_limit
                else f"the {total_calls - least} calls beyond that are the ones to remove."
            )
        )
    if cost["total_usd_per_10k"] > usd_limit:
        jti_doubled = sum(w.units / 2 for w in writes if w.transactional and w.item == "JTI")
        per_wru = prices.DYNAMODB_USD_PER_WRU * 10_000
        # What each change would save, from this run's counts; "kept" ones stay on purpose.
        kept = {
            "an HTTP API or function URLs instead of the REST API": (
                usd["api_gateway_rest"] - cost["api_gateway_http_api_usd_per_10k"],
                "Chalice deploys only REST APIs, and AWS WAF, which docs/deploy.md puts in front of the relay, "
                "attaches to REST API stages, not to HTTP APIs or function URLs",
            ),
            "no transactions (their doubling)": (
                doubled * per_wru,
                "the audit records must stay inside the step transactions, or a lost record becomes possible",
            ),
        }
        open_ = {
            "no audit indexes (their writes)": audit_index * per_wru,
            "flow items kept under 1 KiB": big_flow * 2 * per_wru,
            f"one KMS Sign per flow (the sealed payload's) instead of {calls['kms.Sign']}": max(
                0, calls["kms.Sign"] - SEAL_KMS_SIGNS
            )
            * prices.KMS_ASYMMETRIC_USD_PER_REQUEST
            * 10_000,
        }
        gap = cost["total_usd_per_10k"] - usd_limit
        together = sum(open_.values())
        lines.append(
            f"- Cost (USD {cost['total_usd_per_10k']:.2f} per 10k, target {limit_text('usd_per_10k_flows')}; "
            f"the floor these services allow is USD {floor_cost['total_usd_per_10k']:.2f}, "
            + (
                "below the target"
                if floor_cost["total_usd_per_10k"] <= usd_limit
                else "above the target: unreachable"
            )
            + f"): DynamoDB "
            f"writes USD {usd['dynamodb_writes']:.2f} ({cost['wru_table']:g} table WRU, of which {doubled:g} "
            f"is the transactions' doubling, {jti_doubled:g} of it the jti items written inside the step "
            f"transactions; the {audit_records} audit records cost {audit:g} WRU with their two indexes "
            f"({audit_index:g} of it the indexes, one entry each however small it is); {big_flow} flow writes pass 1 KiB and cost 4 WRU "
            f"instead of 2), KMS USD {usd['kms']:.2f} (the {calls['kms.Sign']} asymmetric Signs alone USD "
            f"{sign:.2f}), API Gateway USD {usd['api_gateway_rest']:.2f} ({cost['api_gateway_requests']} REST "
            f"requests). The gap is USD {gap:.2f}. What each change would save, from this run's counts: "
            + "; ".join(f"{what} USD {saved:.2f}" for what, saved in open_.items() if saved > 0)
            + f": together USD {together:.2f}, "
            + ("enough." if together >= gap else f"USD {gap - together:.2f} short. ")
            + " ".join(
                f"Not taken: {what} (USD {saved:.2f}): {why}."
                for what, (saved, why) in kept.items()
                if saved > 0
            )
        )
    return lines


def _floor_text(m: dict[str, Any]) -> list[str]:
    floor_cost: dict[str, Any] = m["floor_cost"]
    cost: dict[str, Any] = m["cost"]
    lines = [
        f"**The cost floor: USD {floor_cost['total_usd_per_10k']:.3f} per 10,000 onboardings; this flow costs "
        f"{m['floor_ratio']:.2f}x that** (both reported, no target: the next cost target can be set from "
        "them). The floor is the cheapest flow these services allow, at the same prices and with the same REST "
        "API, derived from the measured flow: "
        f"{floor_cost['hops']} hops (the flow's API requests), each one REST API request and one Lambda "
        f"request billed the minimum {prices.LAMBDA_MIN_BILLED_MS} ms at {floor_cost['memory_mb']} MB; "
        f"{floor_cost['state_changes']} state changes (the invocations that wrote to DynamoDB), each one "
        "conditional write of 1 WRU (an item under 1 KiB, not in a transaction, no index, no read before it); "
        f"and {floor_cost['kms_signs']} asymmetric KMS Sign (the sealed payload's JWT; the JWE to the partner's "
        "key needs no KMS). No reads, no audit records, no logs, no other KMS request.",
        "",
        "| line | floor, USD per 10k | this flow, USD per 10k |",
        "|---|---|---|",
    ]
    for line, usd in floor_cost["usd_per_10k"].items():
        lines.append(f"| {line} | {usd:.4f} | {cost['usd_per_10k'].get(line, 0.0):.4f} |")
    others = [line for line in cost["usd_per_10k"] if line not in floor_cost["usd_per_10k"]]
    lines.append(
        "| " + ", ".join(others) + f" | 0 | {sum(cost['usd_per_10k'][line] for line in others):.4f} |"
    )
    return lines


BY_DAY_ENTRY_BYTES = 150  # an estimate: pk, sk, day_shard and the 32-byte leaf hash, with their names


def _audit_bytes(sample: dict[str, Usage]) -> int:
    """Bytes the audit trail keeps per flow: the table's items, their copy in ``by_partner`` (which
    projects the document, nearly the whole item) and ``by_day``'s small entries (keys and leaf)."""
    written = [w.new_bytes for used in sample.values() for w in used.writes if w.item == "audit"]
    return 2 * sum(written) + BY_DAY_ENTRY_BYTES * len(written)
