"""Concurrency: throughput and errors of N complete onboardings at once against the local stack.

One launched stack (``tests/integration/stack.py``: moto server, sandbox portal with mTLS, the relay
under ``chalice local``, the scheduler every 0.5 s) serves every level, N = 1, 8, 32, 64 in that
order. At each level N worker threads, each with its own partner clients already connected (their
metadata and keys fetched), are released together and each runs its share of ``LEVELS`` complete
onboardings one after another, through the race tests' driver (``tests.races.harness.onboarding``):
PAR, the relay's interstitial, the sandbox's card sign-in and consent, the portal callback, the
token, the pickup (polled every second while the relay answers 202) and opening the sealed payload.
Every persona is a happy path, so every flow must end delivered and picked up.

A flow counts as an error if the partner did not open its delivery, if any answer it got (relay or
portal) was a 5xx or a 4xx (none is expected on the happy path), or if the state table does not
hold it as ``picked_up`` with its delivery gone afterwards."""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from bench.report import Section
from sandbox.portal import Timing
from tests.integration.stack import Launcher
from tests.races.harness import (
    HTTP_TIMEOUT_S,
    PICKUP_POLL_S,
    STACK_ARGS,
    Partner,
    Stack,
    Tables,
    loopback_session,
    onboarding,
)

# (concurrent flows, flows each worker runs one after another); N = 64 last
LEVELS: tuple[tuple[int, int], ...] = ((1, 3), (8, 2), (32, 1), (64, 1))
PICKUP_WAIT_S = 120
# Happy-path personas only (sandbox/personas), cycled: (partner, persona, what the partner must see)
HAPPY: tuple[tuple[Partner, str, str], ...] = (
    ("bank", "salaried", "delivered:local_tax"),
    ("health", "parent-vaccination", "delivered:vaccination"),
    ("bank", "moved", "delivered:local_tax"),
    ("bank", "pensioner", "delivered:local_tax"),
    ("health", "parent-vaccination", "delivered:vaccination"),
    ("bank", "individual-number", "delivered:local_tax"),
    ("bank", "non-taxable", "delivered:local_tax"),
)
PORTAL_RESULT_DELAY_S = Timing().result_delay_s
PORTAL_NOTICE_DELAY_S = Timing().notice_delay_s
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Answer:
    at: float
    server: str  # "relay" or "portal"
    method: str
    path: str
    status: int


@dataclass
class Flow:
    state: str
    partner: Partner
    persona: str
    expected: str
    started: float = 0.0
    ended: float = 0.0
    outcome: str = ""
    answers: list[Answer] = field(default_factory=list)

    def token_at(self) -> float | None:
        """When the token answer arrived: the end of the part the resident waits through."""
        return next((a.at for a in self.answers if a.path == "/token" and a.status == 200), None)

    def bad_answers(self) -> list[Answer]:
        return [a for a in self.answers if a.status >= 400]


class Recorder:
    """Every answer a worker's sessions get, attached to the flow that worker is running."""

    def __init__(self, relay: str) -> None:
        self._relay = urlsplit(relay).netloc
        self._local = threading.local()

    def start(self, flow: Flow | None) -> None:
        self._local.flow = flow

    def session(self) -> requests.Session:
        session: requests.Session = loopback_session()  # tests/ is not type-checked
        session.hooks["response"].append(self._seen)
        return session

    def _seen(self, answer: requests.Response, *args: Any, **kwargs: Any) -> None:
        flow: Flow | None = getattr(self._local, "flow", None)
        if flow is None:
            return
        parts = urlsplit(answer.url)
        flow.answers.append(
            Answer(
                time.monotonic(),
                "relay" if parts.netloc == self._relay else "portal",
                answer.request.method or "",
                parts.path,
                answer.status_code,
            )
        )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a live process (``/proc/<pid>/stat``), 0 if unreadable."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def own_cpu_seconds() -> float:
    """User + system CPU of this process (the load generator: every partner's and browser's thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory_mib(pid: int | None) -> dict[str, float]:
    """Resident memory now and at its peak (``VmRSS``, ``VmHWM``), MiB."""
    found: dict[str, float] = {}
    if pid is None:
        return found
    try:
        lines = Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return found
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[{"VmRSS": "rss_mib", "VmHWM": "peak_rss_mib"}[name]] = round(
                int(value.split()[0]) / 1024, 1
            )
    return found


def run_level(
    stack: Stack, recorder: Recorder, level: int, per_worker: int, first: int
) -> tuple[list[Flow], float]:
    """``level`` workers released together, each running ``per_worker`` flows: every flow, and the
    moment they were released."""
    numbers = [[first + w * per_worker + j for j in range(per_worker)] for w in range(level)]
    flows = [[Flow(f"bench-{n:04d}", *HAPPY[n % len(HAPPY)]) for n in worker] for worker in numbers]
    gate = threading.Barrier(level + 1)
    crashed: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            kits = {partner: stack.partner(partner, recorder.session()) for partner in ("bank", "health")}
            for kit in kits.values():  # connected, metadata and keys cached: what a live partner has
                kit.service_keys()  # fetches the metadata first
            gate.wait(timeout=HTTP_TIMEOUT_S)
            for flow in flows[index]:
                recorder.start(flow)
                flow.started = time.monotonic()
                with recorder.session() as browser:
                    try:
                        flow.outcome = onboarding(
                            stack,
                            kits[flow.partner],
                            flow.persona,
                            flow.state,
                            PICKUP_WAIT_S,
                            browser=browser,
                        )
                    except Exception as exc:  # noqa: BLE001  # a timeout or a reset: the flow's error
                        flow.outcome = f"broken:{type(exc).__name__}:{exc}"
                flow.ended = time.monotonic()
                recorder.start(None)
        except BaseException as exc:  # noqa: BLE001  # reported after the level
            crashed.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(level)]
    for thread in threads:
        thread.start()
    gate.wait(timeout=HTTP_TIMEOUT_S)
    released = time.monotonic()
    for thread in threads:
        thread.join(PICKUP_WAIT_S + 4 * HTTP_TIMEOUT_S)
    if crashed:
        raise crashed[0]
    return [flow for worker_flows in flows for flow in worker_flows], released


def judge(flows: list[Flow], tables: Tables) -> dict[str, str]:
    """Each erroneous flow's state and why."""
    stored = {flow["partner_state"]: flow for flow in tables.flows()}
    errors: dict[str, str] = {}
    for flow in flows:
        why: list[str] = []
        if flow.outcome != flow.expected:
            why.append(f"partner saw {flow.outcome[:200]}")
        why += [f"{a.server} {a.method} {a.path} answered {a.status}" for a in flow.bad_answers()]
        record = stored.get(flow.state)
        if record is None:
            why.append("not in the state table")
        else:
            if record["status"] != "picked_up":
                why.append(f"stored as {record['status']} ({record.get('failure_reason')})")
            if tables.delivery_exists(record["flow_id"]):
                why.append("its delivery is still stored")
        if why:
            errors[flow.state] = "; ".join(why)
    return errors


def summarise(
    level: int, per_worker: int, flows: list[Flow], errors: dict[str, str], wall_s: float
) -> dict[str, Any]:
    latencies = [flow.ended - flow.started for flow in flows]
    to_token = [t - flow.started for flow in flows if (t := flow.token_at()) is not None]
    answers = [answer for flow in flows for answer in flow.answers]
    statuses = Counter(f"{a.server} {a.status}" for a in answers)
    return {
        "concurrent": level,
        "flows": len(flows),
        "flows_per_worker": per_worker,
        "wall_s": round(wall_s, 2),
        "flows_per_s": round(len(flows) / wall_s, 2),
        "latency_p50_s": round(percentile(latencies, 50), 2),
        "latency_p95_s": round(percentile(latencies, 95), 2),
        "to_token_p50_s": round(percentile(to_token, 50), 2),
        "to_token_p95_s": round(percentile(to_token, 95), 2),
        "requests": len(answers),
        "answers": dict(sorted(statuses.items())),
        "answers_5xx": sum(1 for a in answers if a.status >= 500),
        "answers_4xx": sum(1 for a in answers if 400 <= a.status < 500),
        "errors": len(errors),
        "error_flows": dict(list(errors.items())[:10]),
    }


def stack_record(launcher: Launcher) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((launcher.state_dir / "stack.json").read_text(encoding="utf-8"))
    return record


def log_problems(output: str) -> dict[str, int]:
    """What the stack's own output says went wrong: relay 5xx in ``chalice local``'s access log,
    failed scheduled runs, tracebacks, relay error records."""
    problems: Counter[str] = Counter()
    for line in output.splitlines():
        if '" 5' in line and "HTTP/1." in line:
            problems["access log 5xx"] += 1
        if "scheduled handler failed" in line:
            problems["scheduled handler failed"] += 1
        if line.startswith("Traceback"):
            problems["tracebacks"] += 1
        if line.startswith("{") and '"level":"ERROR"' in line.replace(" ", ""):
            problems["relay ERROR records"] += 1
    return dict(problems)


def measure() -> Section:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as directory:
        launcher = Launcher(Path(directory) / "state", *STACK_ARGS)
        launcher.start()
        started_s = time.monotonic() - began
        try:
            stack = Stack.of(launcher)
            relay_pid = stack_record(launcher).get("relay_pid")
            launcher_pid = launcher.process.pid if launcher.process else None
            tables = Tables(stack)
            recorder = Recorder(stack.api)
            results: list[dict[str, Any]] = []
            first = 0
            for level, per_worker in LEVELS:
                relay_cpu, launcher_cpu = cpu_seconds(relay_pid), cpu_seconds(launcher_pid)
                driver_cpu = own_cpu_seconds()
                flows, released = run_level(stack, recorder, level, per_worker, first)
                cpu = {
                    "relay_cpu_s": round(cpu_seconds(relay_pid) - relay_cpu, 2),
                    "launcher_cpu_s": round(cpu_seconds(launcher_pid) - launcher_cpu, 2),
                    "driver_cpu_s": round(own_cpu_seconds() - driver_cpu, 2),
                }
                wall = max(flow.ended for flow in flows) - released
                first += len(flows)
                summary = summarise(level, per_worker, flows, judge(flows, tables), wall) | cpu
                busy = summary["relay_cpu_s"] + summary["launcher_cpu_s"] + summary["driver_cpu_s"]
                summary["cores_busy"] = round(busy / wall, 2)
                summary["relay_memory"] = memory_mib(relay_pid)
                summary["launcher_memory"] = memory_mib(launcher_pid)
                print(
                    f"bench: concurrency N={level}: {summary['flows']} flows in {summary['wall_s']} s, "
                    f"{summary['flows_per_s']} flows/s, p50 {summary['latency_p50_s']} s, "
                    f"p95 {summary['latency_p95_s']} s, errors {summary['errors']}",
                    flush=True,
                )
                results.append(summary)
        finally:
            status = launcher.stop()
        problems = log_problems(launcher.output)
    return section(results, problems, status, started_s, time.monotonic() - began)


def section(
    results: list[dict[str, Any]], problems: dict[str, int], status: int, started_s: float, total_s: float
) -> Section:
    at_64 = next(r for r in results if r["concurrent"] == 64)
    rows = [
        "| N | flows | wall s | flows/s | latency p50 / p95 s | to token p50 / p95 s | requests | 4xx | 5xx "
        "| errors | relay CPU s | relay CPU ms/flow | launcher CPU s | driver CPU s | cores busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['concurrent']} | {r['flows']} | {r['wall_s']} | {r['flows_per_s']} "
            f"| {r['latency_p50_s']} / {r['latency_p95_s']} | {r['to_token_p50_s']} / {r['to_token_p95_s']} "
            f"| {r['requests']} | {r['answers_4xx']} | {r['answers_5xx']} | {r['errors']} "
            f"| {r['relay_cpu_s']} | {1000 * r['relay_cpu_s'] / r['flows']:.0f} | {r['launcher_cpu_s']} "
            f"| {r['driver_cpu_s']} | {r['cores_busy']} |"
        )
    errors = [
        f"- N={r['concurrent']}: {state}: {why}" for r in results for state, why in r["error_flows"].items()
    ]
    top = results[-1]
    relay_memory = results[-1]["relay_memory"]
    launcher_memory = results[-1]["launcher_memory"]
    detail = f"""
N complete onboardings at once against the launched local stack (`make run`'s launcher on free
loopback ports: moto server, sandbox portal with mTLS, the relay under `chalice local`, the scheduler
every 0.5 s). N worker threads, each with its partner clients connected and their metadata and keys
cached, are released together; each runs its flows one after another (N=1: 3 in sequence; N=8: 2
each; N=32 and N=64: 1 each), every persona a happy path (income, vaccination, moved, pensioner,
non-taxable, Individual Number removed). A flow is an error if the partner did not open its sealed
delivery, if any answer it got from the relay or the portal was 4xx or 5xx, or if the state table
does not hold it `picked_up` with its delivery gone. Latency is the partner's, from PAR to the opened
payload; it includes the sandbox portal's own {PORTAL_RESULT_DELAY_S:g} s before a result is ready
(`sandbox.portal.Timing.result_delay_s`, as the launched stack runs it), its completion notice
{PORTAL_NOTICE_DELAY_S:g} s later (the notice's request retrieves and seals the delivery; the scheduler,
every 0.5 s, polls a flow only until then, and seals it only when no notice comes) and the
pickup's {PICKUP_POLL_S:g} s poll, so about {PORTAL_RESULT_DELAY_S + PORTAL_NOTICE_DELAY_S + PICKUP_POLL_S / 2:g} s is the floor of one flow here and throughput
at low N is N over that floor. "To token" is the interactive part (PAR, interstitial,
card sign-in, consent, callback, token) that the resident and partner wait through. "Cores busy"
is the CPU of the relay, the launcher and this load generator together over the wall time.

{chr(10).join(rows)}

Errors at 64 concurrent flows: **{at_64["errors"]}**. {"Erroneous flows:" if errors else "No flow failed at any level."}
{chr(10).join(errors)}

Stack output after the run: {", ".join(f"{k} {v}" for k, v in problems.items()) or "no 5xx in the access log, no failed scheduled run, no traceback, no relay ERROR record"};
launcher exit status {status}. Stack start {started_s:.0f} s, this benchmark {total_s:.0f} s in all.
Memory after N=64: relay (`chalice local`) {relay_memory.get("rss_mib", "?")} MiB resident, peak
{relay_memory.get("peak_rss_mib", "?")} MiB; launcher (moto server, sandbox, demo partners, scheduler
in one process) {launcher_memory.get("rss_mib", "?")} MiB, peak {launcher_memory.get("peak_rss_mib", "?")} MiB.

This is `chalice local` (a threaded development server: one thread per connection, one Python
process, one GIL; the completion notices' retrieval and sealing run there) and, in a second Python
process, the moto server, the sandbox portal and the scheduler (whose scheduled handlers run the
relay's own poller there), all on the
machine's shared cores ({os.cpu_count()} here; see the load average at the top),
with this load generator's {top["concurrent"]} threads beside them. The absolute throughput therefore
says nothing about Lambda, where each concurrent request gets its own container and DynamoDB and KMS
are real services. What matters is zero errors at every level and no cliff: flows/s rising with N
and levelling off while latency grows with the queue is expected, failures or a collapse are not.
At N={top["concurrent"]} the CPU went to the launcher's process
({top["launcher_cpu_s"] / top["wall_s"]:.2f} core, {1000 * top["launcher_cpu_s"] / top["flows"]:.0f} ms
per flow: one GIL for moto's emulated DynamoDB and KMS, the portal's mTLS and the scheduled handlers),
the relay ({top["relay_cpu_s"] / top["wall_s"]:.2f} core, {1000 * top["relay_cpu_s"] / top["flows"]:.0f} ms
per flow) and the load generator ({top["driver_cpu_s"] / top["wall_s"]:.2f} core).
"""
    return Section(
        title="Concurrency",
        figures={"errors_at_64": float(at_64["errors"])},
        detail=detail,
        data={
            "levels": results,
            "stack_output": problems,
            "launcher_exit_status": status,
            "stack_start_s": round(started_s, 1),
            "total_s": round(total_s, 1),
        },
    )
