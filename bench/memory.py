"""Memory: the peak resident set of a fresh relay process that has served one complete onboarding,
and the Lambda memory size configured per stage, with the numbers behind the choice.

Three processes, so that only the relay is measured:

- this one: the moto server (threads, as ``make run`` runs it), the Mynaportal sandbox (threads,
  deterministic: no delays), the partner (``tests.partner_helpers.TestPartner``) and the resident's
  browser (``requests``), driven step by step by ``tests.functional.conftest.Journey``;
- the relay: ``bench/memory_child.py``, a fresh interpreter that imports ``app`` and serves each
  step as a Lambda invocation (an API Gateway proxy event for ``app.app``, a scheduled event for
  ``process_due``), then reports its CPU time, wall time and ``VmHWM``/``VmRSS`` after each;
- nothing else: the moto server's and the sandbox's memory never count.

The flow: PAR, consent page, decision, the resident at the portal (not the relay), callback, token,
the portal's completion notice (retrieval, normalisation, sealing), pickup, and the partner's fetch
of the JWKS to verify what it received; then a scheduled run, which finds nothing left (not part of
the flow, and left out of its estimated cost). Then a second flow in the same process: warm CPU per
step, and whether the resident set keeps growing.

In AWS the API and the scheduled handler are two Lambda functions; here one process serves both,
so the peak is an upper bound for either.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from bench.cold_start import aws_clients, child_environment, moto_server
from bench.report import BENCH, ROOT, Section

STAGE = "test"  # the issuer and callback the sandbox's services are registered with (Journey's)
CHILD = BENCH / "memory_child.py"
MIB = 1024.0
# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB
# (docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
FULL_VCPU_MB = 1769
CANDIDATE_SIZES_MB = (128, 256, 512, 1024, 1769)
NOTICE_STEP = "completion notice: retrieval + sealing (POST /portal/notice)"
# Every minute whatever the volume, so not part of a flow: measured, left out of the flow's cost.
SCHEDULED_STEP = "scheduled run, nothing left (process_due; not part of the flow)"


class RelayProcess:
    """The relay in ``bench/memory_child.py``, looking like the Chalice app to Chalice's test
    client (its routes, its handlers), so that ``chalice.test.Client`` builds the events."""

    def __init__(self, env: dict[str, str], log: Any, memory_mb: int) -> None:
        from app import app  # this process reads the routes; the child serves them

        self.app_name = app.app_name
        self.routes = app.routes
        self.api = app.api
        self.handler_map = {name: functools.partial(self._scheduled, name) for name in app.handler_map}
        self.invocations: list[dict[str, Any]] = []
        self._process = subprocess.Popen(
            [sys.executable, str(CHILD), str(ROOT), str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=ROOT,
            text=True,
        )
        self.imported: dict[str, Any] = self._read()["imported"]

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        body = event.get("body")
        if isinstance(body, bytes):  # API Gateway sends text (or base64), never bytes
            event = {**event, "body": body.decode("utf-8") if body else None}
        return self._invoke("api_handler", event)

    def _scheduled(self, name: str, event: dict[str, Any], context: Any) -> Any:
        return self._invoke(name, event)

    def _invoke(self, handler: str, event: dict[str, Any]) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"handler": handler, "event": event}) + "\n")
        self._process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"the relay failed in {handler}:\n{answer['error']}")
        path = event.get("requestContext", {}).get("resourcePath") if handler == "api_handler" else None
        self.invocations.append({"handler": handler, "route": path, **answer})
        return answer["result"]

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the relay process exited ({self._process.wait()}); see its log")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


@contextmanager
def sandbox_portal(tls_dir: Path) -> Iterator[Any]:
    """The sandbox as the functional tests run it: deterministic, sp side over mutual TLS."""
    from sandbox.server import SandboxServer, load_services
    from scripts.dev import SANDBOX_SERVICES
    from tests.functional.conftest import ISSUER

    services = load_services(SANDBOX_SERVICES, ISSUER)[:1]  # the income service
    server = SandboxServer(services, tls_dir=tls_dir, deterministic=True).start()
    try:
        yield server
    finally:
        server.stop()


def portal_environment(sandbox: Any) -> dict[str, str]:
    endpoints = sandbox.endpoints()
    tls = sandbox.tls
    return {
        "RELAY_PORTAL_AUTHORIZE_URL": endpoints["authorize_url"],
        "RELAY_PORTAL_TOKEN_URL": endpoints["token_url"],
        "RELAY_PORTAL_REQUEST_URL": endpoints["request_url"],
        "RELAY_PORTAL_RESULT_URL": endpoints["result_url"],
        "RELAY_PORTAL_CLIENT_CERT": str(tls.client_cert),
        "RELAY_PORTAL_CLIENT_KEY": str(tls.client_key),
        "RELAY_PORTAL_CA_BUNDLE": str(tls.ca_cert),
        "RELAY_PORTAL_SERVICES": json.dumps({"local_tax": "SP00000001_AA0001"}),
    }


def configured_memory() -> dict[str, int]:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    default = config.get("lambda_memory_size", 128)  # Chalice's default when none is set
    return {
        stage: int(settings.get("lambda_memory_size", default))
        for stage, settings in config["stages"].items()
    }


def one_flow(client: Any, partner: Any, sandbox: Any, relay: RelayProcess) -> list[tuple[str, int]]:
    """One complete onboarding; returns (step, index of its invocation in ``relay.invocations``)."""
    from tests.functional.conftest import ISSUER, Journey, location_query
    from tests.partner_helpers import Pkce

    journey = Journey(client=client, partner=partner, sandbox=sandbox, pkce=Pkce())
    steps: list[tuple[str, int]] = []

    def step(name: str, response: Any, status: int) -> Any:
        if response.status_code != status:
            raise RuntimeError(
                f"{name}: expected {status}, got {response.status_code}: {response.body[:500]!r}"
            )
        steps.append((name, len(relay.invocations) - 1))
        return response

    step("PAR (POST /par)", journey.push(), 201)
    step("consent page (GET /authorize)", journey.show_consent(), 200)
    step("decision (POST /authorize/decision)", journey.decide(), 303)
    journey.at_portal("salaried")  # the resident and the sandbox; not the relay
    callback = step("portal callback (GET /portal/callback)", journey.callback(), 303)
    issued = step("token (POST /token)", journey.redeem(location_query(callback)["code"]), 200)
    token = json.loads(issued.body)["access_token"]

    def send_notice(url: str, body: dict[str, Any]) -> tuple[int, Any]:
        """What the sandbox's notice sender does, to the relay process."""
        answer = client.http.post(
            "/portal/notice", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        return answer.status_code, json.loads(answer.body)

    sandbox.portal._send_notice = send_notice
    sent = sandbox.portal.deliver_due_notices()
    if len(sent) != 1 or not sent[0].delivered:
        raise RuntimeError(f"the portal's completion notice was not answered: {sent}")
    steps.append((NOTICE_STEP, len(relay.invocations) - 1))
    self_info = f"{ISSUER}/v1/self-info"
    proof = partner.dpop("GET", self_info, access_token=token)
    picked = client.http.get("/v1/self-info", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    step("pickup (GET /v1/self-info)", picked, 200)
    if picked.headers.get("Content-Type") != "application/jose":
        raise RuntimeError(f"pickup answered {picked.headers.get('Content-Type')}, not the sealed payload")
    step("partner verifies (GET /.well-known/jwks.json)", client.http.get("/.well-known/jwks.json"), 200)
    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region="ap-northeast-1"
    )
    outcomes = client.lambda_.invoke("process_due", event).payload
    if outcomes:
        raise RuntimeError(f"the scheduled run found work the notice should have done: {outcomes}")
    steps.append((SCHEDULED_STEP, len(relay.invocations) - 1))
    return steps


def measure() -> Section:
    from chalice.test import Client

    from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
    from chalicelib.domain.clock import SystemClock
    from chalicelib.domain.registry import PartnerRegistry
    from infra.bootstrap import ensure_resources
    from infra.resources import PARTNERS_TABLE
    from tests.partner_helpers import TestPartner

    memory_sizes = configured_memory()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch, moto_server() as endpoint:
        dynamodb, kms, s3 = aws_clients(endpoint)
        ensure_resources(STAGE, dynamodb, kms, s3)
        partner = TestPartner()
        store = DynamoPartnerStore(dynamodb, PARTNERS_TABLE.physical_name(STAGE), allow_loopback=True)
        PartnerRegistry(store, SystemClock(), allow_loopback=True).register(partner.document())
        with sandbox_portal(Path(scratch) / "tls") as sandbox:
            env = child_environment(endpoint, STAGE, portal_environment(sandbox))
            log_path = Path(scratch) / "relay.log"
            with log_path.open("w", encoding="utf-8") as log:
                relay = RelayProcess(env, log, memory_sizes.get("prod", 128))
                try:
                    client = Client(cast(Any, relay), stage_name=STAGE, project_dir=str(ROOT))
                    first = one_flow(client, partner, sandbox, relay)
                    peak_after_first = relay.invocations[-1]["memory"]
                    second = one_flow(client, partner, sandbox, relay)
                except Exception as exc:
                    log.flush()
                    tail = log_path.read_text(encoding="utf-8")[-3000:]
                    raise RuntimeError(f"{exc}\n--- relay log (tail) ---\n{tail}") from exc
                finally:
                    relay.close()
    return section(relay, first, second, peak_after_first, memory_sizes)


def peak_kib(snapshot: dict[str, int]) -> int:
    return snapshot.get("VmHWM_kib", snapshot["ru_maxrss_kib"])


def lambda_estimate(steps: list[dict[str, Any]], size_mb: int) -> tuple[float, float]:
    """(ms, GB-s) of the steps at ``size_mb``: CPU time stretched by the CPU share Lambda gives
    that size, plus the time spent waiting (wall minus CPU here: AWS, the portal, on loopback)."""
    share = min(1.0, size_mb / FULL_VCPU_MB)
    total_ms = sum(s["cpu_ms"] / share + max(0.0, s["wall_ms"] - s["cpu_ms"]) for s in steps)
    return total_ms, total_ms / 1000 * size_mb / 1024


def section(
    relay: RelayProcess,
    first: list[tuple[str, int]],
    second: list[tuple[str, int]],
    peak_after_first: dict[str, int],
    memory_sizes: dict[str, int],
) -> Section:
    imported = relay.imported
    peak_mib = round(peak_kib(peak_after_first) / MIB, 1)
    rows = []
    for (name, index), (_, warm_index) in zip(first, second, strict=True):
        cold, warm = relay.invocations[index], relay.invocations[warm_index]
        rows.append(
            {
                "step": name,
                "first_cpu_ms": round(cold["cpu_ms"], 1),
                "first_wall_ms": round(cold["wall_ms"], 1),
                "second_cpu_ms": round(warm["cpu_ms"], 1),
                "second_wall_ms": round(warm["wall_ms"], 1),
                "peak_mib": round(peak_kib(cold["memory"]) / MIB, 1),
                "rss_mib": round(cold["memory"].get("VmRSS_kib", 0) / MIB, 1),
            }
        )
    first_steps = [relay.invocations[index] for name, index in first if name != SCHEDULED_STEP]
    second_steps = [relay.invocations[index] for name, index in second if name != SCHEDULED_STEP]
    cold_start = {"cpu_ms": imported["cpu_ms"], "wall_ms": imported["wall_ms"]}
    estimates = []
    for size in CANDIDATE_SIZES_MB:
        cold_ms, _ = lambda_estimate([cold_start, first_steps[0]], size)
        warm_ms, warm_gbs = lambda_estimate(second_steps, size)
        estimates.append(
            {
                "memory_mb": size,
                "cpu_share": round(min(1.0, size / FULL_VCPU_MB), 3),
                "cold_start_then_par_ms": round(cold_ms),
                "warm_flow_ms": round(warm_ms),
                "warm_flow_gb_s": round(warm_gbs, 4),
            }
        )
    data = {
        "peak_rss_mib": peak_mib,
        "after_interpreter_start_mib": round(peak_kib(imported["memory_at_start"]) / MIB, 1),
        "after_import_mib": round(peak_kib(imported["memory"]) / MIB, 1),
        "after_second_flow_mib": round(peak_kib(relay.invocations[-1]["memory"]) / MIB, 1),
        "rss_after_second_flow_mib": round(relay.invocations[-1]["memory"].get("VmRSS_kib", 0) / MIB, 1),
        "import_cpu_ms": round(imported["cpu_ms"], 1),
        "steps": rows,
        "lambda_memory_size_mb": memory_sizes,
        "lambda_estimates": estimates,
    }
    return Section(
        title="Memory",
        figures={"peak_rss_mib": peak_mib},
        detail=detail(data),
        data=data,
    )


def detail(data: dict[str, Any]) -> str:
    steps = "\n".join(
        f"| {row['step']} | {row['first_cpu_ms']} / {row['first_wall_ms']} ms "
        f"| {row['second_cpu_ms']} / {row['second_wall_ms']} ms | {row['peak_mib']} MiB |"
        for row in data["steps"]
    )
    estimates = "\n".join(
        f"| {e['memory_mb']} MB | {e['cpu_share']:.0%} | {e['cold_start_then_par_ms']} ms "
        f"| {e['warm_flow_ms']} ms | {e['warm_flow_gb_s']} GB-s |"
        for e in data["lambda_estimates"]
    )
    sizes = ", ".join(f"{stage} {size} MB" for stage, size in data["lambda_memory_size_mb"].items())
    return f"""Peak resident set (`VmHWM`) of a fresh relay process (`bench/memory_child.py`) after one
complete onboarding: **{data["peak_rss_mib"]} MiB**. The moto server, the sandbox portal, the
partner and the browser run in the benchmark's own process and are not counted; one process serves
both the API handler and the scheduled handler (two Lambda functions in AWS), so this is an upper
bound for either. After interpreter start-up {data["after_interpreter_start_mib"]} MiB; after
`import app` {data["after_import_mib"]} MiB ({data["import_cpu_ms"]} ms CPU); after a second
flow in the same process {data["after_second_flow_mib"]} MiB peak, {data["rss_after_second_flow_mib"]}
MiB resident.

| step (Lambda invocation) | first flow: CPU / wall | second flow: CPU / wall | peak after the step |
|---|---|---|---|
{steps}

The first flow pays each module's import at the first step that needs it (boto3 at PAR, the
sealing at the completion notice); the second shows warm containers. The warm flow below leaves
the scheduled run out: it runs every minute whatever the volume.

**Lambda memory size: {sizes}** (`lambda_memory_size` in `.chalice/config.json`). Lambda gives a
function CPU in proportion to its memory (one vCPU at {FULL_VCPU_MB} MB) and bills GB-seconds, so
CPU-bound work costs the same at any size below one vCPU (half the memory, twice the time) while
time spent waiting on DynamoDB, KMS or the portal costs in proportion to the memory. Estimated from
the CPU and wall times above (waiting = wall minus CPU, on loopback):

| memory | CPU share | cold start + first PAR | warm flow | warm flow cost |
|---|---|---|---|---|
{estimates}

{choice(data)}
"""


def choice(data: dict[str, Any]) -> str:
    """Why the configured size, in this run's numbers."""
    by_size = {e["memory_mb"]: e for e in data["lambda_estimates"]}
    chosen = data["lambda_memory_size_mb"].get("prod", 128)
    if chosen not in by_size:
        return f"The configured size ({chosen} MB) is not among the estimated sizes."
    at, half, least = by_size[chosen], by_size.get(512, by_size[chosen]), by_size[128]
    return (
        f"Why {chosen} MB: the resident set would fit in 128 MB ({data['peak_rss_mib']} MiB peak), but a "
        f"cold start there runs on {least['cpu_share']:.0%} of a vCPU: about "
        f"{least['cold_start_then_par_ms']} ms before the first answer, against "
        f"{at['cold_start_then_par_ms']} ms at {chosen} MB ({half['cold_start_then_par_ms']} ms at 512 MB). "
        f"Cold starts are what residents feel, so the API gets {chosen} MB. The price is the waiting part "
        f"of each invocation, billed in proportion to memory: a warm flow costs about "
        f"{at['warm_flow_gb_s']} GB-s at {chosen} MB against {half['warm_flow_gb_s']} at 512 MB and "
        f"{least['warm_flow_gb_s']} at 128 MB, a few cents per 10,000 onboardings at Lambda's "
        "GB-second price. Above one vCPU the single-threaded handlers gain nothing. One size for every "
        "stage, so that dev measures what prod runs (local and test only report it in the context)."
    )
