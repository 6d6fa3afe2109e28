"""Cold start: a fresh interpreter imports the app and serves its first request, the relay against a
bare Chalice + boto3 app (``bench/bare_app.py``), interleaved in one run; the ratio of the medians.

Both apps talk to one moto server on loopback, started here, with the relay's tables and keys
created from ``infra/`` (as ``make run`` does). Each cold start is ``bench/cold_child.py`` in a new
process with a clean environment (fake credentials, the ``local`` stage's settings, no proxy or
CA variables from this machine), which imports the handler module and calls ``app(event, context)``
with an API Gateway proxy event, as Lambda's runtime does.

The compared first requests each make exactly one AWS call:

- relay: ``GET /.well-known/jwks.json`` (settings, a KMS client, KMS GetPublicKey, the public key
  as a JWK);
- bare: ``GET /item`` (a DynamoDB client, DynamoDB GetItem).

Beside them, a first request that touches no AWS (relay ``GET /health``, bare ``GET /hello``), and
the relay's import breakdown from ``python -X importtime``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.report import BENCH, ROOT, Section, limit

REGION = "ap-northeast-1"
STAGE = "local"
CHILD = BENCH / "cold_child.py"
RUNS = 15  # per compared case (relay and bare, first request with one AWS call)
NO_AWS_RUNS = 9  # per case of the no-AWS first request
IMPORTTIME_RUNS = 3
MARKER = "BENCH-RESULT "


# -- the emulated AWS, shared with bench/memory.py --------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port in this process (threads); yields its endpoint.
    Its data is reset when it stops, so later benchmarks in this process start clean."""
    import logging

    from moto.server import ThreadedMotoServer

    from infra.local_aws import make_emulator_faithful

    make_emulator_faithful()  # atomic conditional writes, KMS DIGEST signing: as in AWS
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        try:
            import urllib.request

            reset = f"{endpoint}/moto-api/reset"  # our own loopback server
            urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=10).close()  # noqa: S310
        finally:
            server.stop()


def aws_clients(endpoint: str) -> tuple[Any, Any, Any]:
    """DynamoDB, KMS and S3 clients of this process against the moto server."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return tuple(session.client(name, endpoint_url=endpoint) for name in ("dynamodb", "kms", "s3"))  # type: ignore[return-value]


def lambda_memory_size(stage: str = "prod") -> int:
    """What the function's context reports (``.chalice/config.json``; Chalice's default 128)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return int(config["stages"][stage].get("lambda_memory_size", config.get("lambda_memory_size", 128)))


def stage_config(stage: str) -> dict[str, str]:
    """The stage's environment as ``.chalice/config.json`` gives it to the Lambda function."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return {**config.get("environment_variables", {}), **config["stages"][stage]["environment_variables"]}


def child_environment(endpoint: str, stage: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment, as Lambda's: nothing from this machine but PATH and the locale;
    fake credentials, the emulated endpoint, and the stage's settings."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(BENCH),  # botocore looks for ~/.aws: there is none here
        "AWS_CONFIG_FILE": str(BENCH / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(BENCH / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        **stage_config(stage),
    }
    env.update(extra or {})
    return env


# -- one cold start ----------------------------------------------------------------------------------


def api_event(method: str, path: str) -> dict[str, Any]:
    """An API Gateway REST API (v1) proxy event, as Lambda receives it."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"accept": "application/json", "host": "api.example", "user-agent": "bench"},
        "multiValueHeaders": {
            "accept": ["application/json"],
            "host": ["api.example"],
            "user-agent": ["bench"],
        },
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": "bench-request",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


@dataclass(frozen=True)
class Case:
    name: str
    app_dir: str
    module: str
    path: str


RELAY_AWS = Case("relay", str(ROOT), "app", "/.well-known/jwks.json")
BARE_AWS = Case("bare", str(BENCH), "bare_app", "/item")
RELAY_NO_AWS = Case("relay, no AWS", str(ROOT), "app", "/health")
BARE_NO_AWS = Case("bare, no AWS", str(BENCH), "bare_app", "/hello")


def cold_start(case: Case, env: dict[str, str], *, importtime: bool = False) -> dict[str, Any]:
    """One fresh interpreter; its readings in milliseconds (and the raw importtime lines)."""
    command = [sys.executable]
    if importtime:
        command += ["-X", "importtime"]
    command += [
        str(CHILD),
        case.app_dir,
        case.module,
        json.dumps(api_event("GET", case.path)),
        str(lambda_memory_size()),
    ]
    spawned = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=case.app_dir, capture_output=True, text=True, check=False)
    exited = time.perf_counter()
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cold start of {case.name} failed ({done.returncode}): {done.stderr[-2000:]}")
    child = json.loads(lines[-1][len(MARKER) :])
    if child["status"] != 200:
        raise RuntimeError(f"{case.name}: GET {case.path} answered {child['status']}: {done.stdout[-2000:]}")
    ms = 1000.0
    return {
        "startup_ms": (child["top"] - spawned) * ms,  # exec + interpreter + site, before the script
        "import_ms": (child["imported"] - child["import_start"]) * ms,
        "first_request_ms": (child["served"] - child["imported"]) * ms,
        "cold_start_ms": (child["served"] - child["import_start"]) * ms,
        "process_ms": (exited - spawned) * ms,  # the whole process, teardown included
        # CPU time (user + system) of the same span: what the machine's load does not stretch
        "cold_start_cpu_ms": (child["cpu_served"] - child["cpu_import_start"]) * ms,
        "first_request_cpu_ms": (child["cpu_served"] - child["cpu_imported"]) * ms,
        "modules": child["modules"],
        "stderr": done.stderr if importtime else "",
    }


# -- import breakdown --------------------------------------------------------------------------------

IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, nesting depth) for each line of ``-X importtime``."""
    found = []
    for line in stderr.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match:
            found.append(
                (match.group(4), int(match.group(1)), int(match.group(2)), (len(match.group(3)) - 1) // 2)
            )
    return found


def import_breakdown(runs: list[str]) -> dict[str, Any]:
    """Medians over the runs: the top ten modules by cumulative time, and self time per package."""
    cumulative: dict[str, list[int]] = defaultdict(list)
    depth: dict[str, int] = {}
    by_package: dict[str, list[int]] = defaultdict(list)
    for stderr in runs:
        per_package: dict[str, int] = defaultdict(int)
        for module, self_us, cumulative_us, level in parse_importtime(stderr):
            cumulative[module].append(cumulative_us)
            depth.setdefault(module, level)
            per_package[module.split(".")[0]] += self_us
        for package, total in per_package.items():
            by_package[package].append(total)
    top = sorted(
        ((module, statistics.median(values)) for module, values in cumulative.items()),
        key=lambda item: item[1],
        reverse=True,
    )[:10]
    packages = sorted(
        ((package, statistics.median(values)) for package, values in by_package.items()),
        key=lambda item: item[1],
        reverse=True,
    )
    return {
        "top_cumulative_ms": [
            {"module": module, "cumulative_ms": round(us / 1000, 1), "depth": depth[module]}
            for module, us in top
        ],
        "self_ms_by_package": {package: round(us / 1000, 1) for package, us in packages[:12]},
        "self_ms_by_package_all": {package: round(us / 1000, 1) for package, us in packages},
        "total_ms": round(
            statistics.median(
                sum(self_us for _, self_us, _, _ in parse_importtime(stderr)) for stderr in runs
            )
            / 1000,
            1,
        ),
    }


# -- the benchmark -----------------------------------------------------------------------------------


def summary(readings: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(readings), "modules": readings[0]["modules"]}
    for key in (
        "startup_ms",
        "import_ms",
        "first_request_ms",
        "cold_start_ms",
        "process_ms",
        "cold_start_cpu_ms",
        "first_request_cpu_ms",
    ):
        values = [reading[key] for reading in readings]
        out[key] = {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }
    return out


def run_interleaved(pairs: list[tuple[Case, Case]], runs: int, env: dict[str, str]) -> dict[str, Any]:
    """A, B, B, A, A, B, ...: each round alternates which goes first, so drift hits both alike."""
    readings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for round_number in range(runs):
        for first, second in pairs:
            order = (first, second) if round_number % 2 == 0 else (second, first)
            for case in order:
                readings[case.name].append(cold_start(case, env))
    return {name: summary(values) for name, values in readings.items()}


def measure() -> Section:
    from infra.bootstrap import ensure_resources
    from infra.resources import PARTNERS_TABLE

    with moto_server() as endpoint:
        dynamodb, kms, s3 = aws_clients(endpoint)
        ensure_resources(STAGE, dynamodb, kms, s3)
        env = child_environment(
            endpoint,
            STAGE,
            {
                "RELAY_ISSUER": "http://127.0.0.1:8000",  # what make run sets; config.json cannot know it
                "BARE_TABLE": PARTNERS_TABLE.physical_name(STAGE),
            },
        )
        for case in (RELAY_AWS, BARE_AWS):  # warm the file cache and the .pyc files; not counted
            cold_start(case, env)
        compared = run_interleaved([(RELAY_AWS, BARE_AWS)], RUNS, env)
        no_aws = run_interleaved([(RELAY_NO_AWS, BARE_NO_AWS)], NO_AWS_RUNS, env)
        traced: dict[str, list[str]] = defaultdict(list)
        for _ in range(IMPORTTIME_RUNS):
            for case in (RELAY_AWS, BARE_AWS):
                traced[case.name].append(cold_start(case, env, importtime=True)["stderr"])
    relay_imports = import_breakdown(traced[RELAY_AWS.name])
    bare_imports = import_breakdown(traced[BARE_AWS.name])

    def ratio(a: Case, b: Case, key: str, cases: dict[str, Any]) -> float:
        return round(float(cases[a.name][key]["median"] / cases[b.name][key]["median"]), 2)

    data: dict[str, Any] = {
        "first_request": {RELAY_AWS.name: f"GET {RELAY_AWS.path}", BARE_AWS.name: f"GET {BARE_AWS.path}"},
        "cases": {**compared, **no_aws},
        "cold_start_ratio": ratio(RELAY_AWS, BARE_AWS, "cold_start_ms", compared),
        "cpu_ratio": ratio(RELAY_AWS, BARE_AWS, "cold_start_cpu_ms", compared),
        "process_wall_ratio": ratio(RELAY_AWS, BARE_AWS, "process_ms", compared),
        "no_aws_ratio": ratio(RELAY_NO_AWS, BARE_NO_AWS, "cold_start_ms", no_aws),
        "no_aws_cpu_ratio": ratio(RELAY_NO_AWS, BARE_NO_AWS, "cold_start_cpu_ms", no_aws),
        "imports": relay_imports,
        "bare_imports": bare_imports,
        "relay_extra_self_ms_by_package": extra_packages(relay_imports, bare_imports),
    }
    return Section(
        title="Cold start",
        figures={"cold_start_ratio": float(data["cold_start_ratio"])},
        detail=detail(data),
        data=data,
    )


def extra_packages(relay: dict[str, Any], bare: dict[str, Any]) -> dict[str, float]:
    """Self import time (median, ms under importtime) the relay spends per top-level package beyond
    what the bare app spends on it: where the difference between the two comes from."""
    relay_packages: dict[str, float] = relay["self_ms_by_package_all"]
    bare_packages: dict[str, float] = bare["self_ms_by_package_all"]
    extra = {name: round(ms - bare_packages.get(name, 0.0), 1) for name, ms in relay_packages.items()}
    return dict(sorted(((k, v) for k, v in extra.items() if v >= 1.0), key=lambda item: -item[1])[:10])


def detail(data: dict[str, Any]) -> str:
    cases = data["cases"]
    rows = [
        "| app: first request | runs | import | first request | import + first request (min–max) "
        "| CPU: import + first request | whole process |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in (RELAY_AWS, BARE_AWS, RELAY_NO_AWS, BARE_NO_AWS):
        c = cases[case.name]
        rows.append(
            f"| {case.name}: `GET {case.path}` | {c['runs']} | {c['import_ms']['median']} ms "
            f"| {c['first_request_ms']['median']} ms | **{c['cold_start_ms']['median']} ms** "
            f"({c['cold_start_ms']['min']}–{c['cold_start_ms']['max']}) | {c['cold_start_cpu_ms']['median']} ms "
            f"| {c['process_ms']['median']} ms |"
        )
    imports = data["imports"]
    top = "\n".join(
        f"{i}. `{'  ' * entry['depth']}{entry['module']}`: {entry['cumulative_ms']} ms"
        for i, entry in enumerate(imports["top_cumulative_ms"], start=1)
    )
    packages = ", ".join(f"{name} {ms} ms" for name, ms in imports["self_ms_by_package"].items())
    extra = ", ".join(f"{name} +{ms} ms" for name, ms in data["relay_extra_self_ms_by_package"].items())
    target = limit("cold_start_ratio")
    verdict = (
        f"within the target of {target:g}×"
        if data["cold_start_ratio"] <= target
        else f"above the target of {target:g}×: the difference is the relay-only imports listed below"
        " (chiefly pydantic for the validated settings, Powertools for the JSON logs, cryptography"
        " for the signing key); what remains to cut would be settings without pydantic and logging"
        " without Powertools, both used by every request"
    )
    return f"""Each run is a fresh interpreter (`bench/cold_child.py`, clean environment: fake credentials,
the `local` stage's settings, nothing from this machine) that imports the handler module and calls
`app(event, context)` once with an API Gateway proxy event, as Lambda's Init and first Invoke do.
Both apps reach one moto server on loopback. The compared first requests each make one AWS call:
the relay's `GET /.well-known/jwks.json` (settings, a KMS client, GetPublicKey, the key as a JWK)
and the bare app's (`bench/bare_app.py`) `GET /item` (a DynamoDB client, GetItem). Runs alternate
(relay, bare, bare, relay, ...) after one unmeasured warm-up of each; medians.

**Ratio, import + first request (wall): {data["cold_start_ratio"]}×**, {verdict}. The same span
in CPU time (what the machine's load does not stretch): {data["cpu_ratio"]}×; the whole process,
interpreter start-up and exit included: {data["process_wall_ratio"]}×. A first request that
touches no AWS (`GET /health` against `GET /hello`): {data["no_aws_ratio"]}× (CPU
{data["no_aws_cpu_ratio"]}×): the relay imports no AWS SDK until a request needs it, the bare
app imports boto3 at module level.

{chr(10).join(rows)}

Interpreter start-up before the script runs is the same for both (about
{cases[RELAY_AWS.name]["startup_ms"]["median"]} ms).

What the relay keeps off its cold start (issue 8): the route modules import the domain's services,
their JOSE verification, the pages' Jinja2, the pydantic schemas and the OpenAPI document only
in the views that use them; the composition root builds nothing before a request.

What else the relay does not do at cold start that a minimal app does: it builds its AWS clients
from a botocore session, not boto3's (`import boto3` adds s3transfer and the resource factory,
neither used); it pauses the garbage collector while `app.py` builds the app and freezes what that
built (the collections during Init, and the first request's full collections over everything
imported, found almost nothing to free); and its functions set `PYDANTIC_DISABLE_PLUGINS` (the first
pydantic model otherwise scans every installed distribution for plugins). The bare app does none of
these; with the collector paused the same way it would start about as much faster, so the gap in
what is imported is wider than the ratio: pydantic and pydantic-settings (which imports asyncio and
argparse) for the validated settings, Powertools for the JSON logs, and joserfc for the JWKS key,
whose import brings cryptography's X.509 module. All are kept on purpose; Lambda SnapStart for
Python (restores an initialised container from a snapshot; the composition root is lazy and holds
no secrets at init) would remove most of what is left - a deployment option for issue [9].

Relay imports over the whole cold start (`python -X importtime`, median of {IMPORTTIME_RUNS} runs;
importtime inflates times: compare them with each other only). Top ten by cumulative time:

{top}

Self time by top-level package: {packages}.

Beyond what the bare app spends (same runs, per package): {extra}.
"""
