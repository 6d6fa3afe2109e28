"""The local launcher behind ``make run``: embedded AWS, resources, demo partners, ``chalice local``.

Design (see shared/reference/chalice-moto-powertools-notes.md, section 5.1): the moto server runs
*in this process*, so Chalice's autoreload (which restarts only its own worker) never loses data.
Tables and keys come from ``infra.resources``; demo partners from ``local/partners/``. The stack is
recorded in ``.local/stack.json`` for ``python -m relayctl --local``. Ctrl-C (or SIGTERM) stops
everything and removes the record; a repeated signal does not cut that short, and the shutdown is
bounded (``SHUTDOWN_LIMIT_S``). If this process is killed outright, chalice local dies with it (its
parent-death signal, ``scripts/chalice_local.py``); everything else is a thread of this process.
Never used in AWS: ``scripts/`` is not shipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.server import SandboxServer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_PARTNERS_DIR = REPO_ROOT / "local" / "partners"
SANDBOX_SERVICES = REPO_ROOT / "local" / "sandbox-services.json"
REGION = "ap-northeast-1"
# The demo partners' apps (partner_kit.demo) and the ports their registration documents name.
DEMO_APPS = {"bank": "demo-bank", "health": "demo-health"}
REGISTERED_DEMO_PORTS = {"demo-bank": 8030, "demo-health": 8031}
STAGE = "local"
# The whole shutdown, after which chalice local is killed and this process exits regardless.
SHUTDOWN_LIMIT_S = 15.0
CHILD_STOP_TIMEOUT_S = 5.0


class LaunchError(RuntimeError):
    """The stack cannot start; the message says what to do."""


class _Stop(Exception):  # control flow for SIGTERM, like KeyboardInterrupt
    pass


class StopSignals:
    """SIGTERM and SIGINT: the first one stops the stack (``_Stop`` raised in the main thread), any
    later one is absorbed, as is any once the shutdown has begun. ``make`` forwards the SIGTERM a
    supervisor sends to the whole process group, so this process receives it twice; Ctrl-C pressed
    again while stopping is the same. Either used to kill the launcher before it stopped its child.

    Installed for SIGINT too even when the launcher was started with SIGINT ignored (a background job
    or a non-interactive shell starts it so; Python then installs no handler)."""

    def __init__(self) -> None:
        self.stopping = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        raise _Stop


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description="Start myna-relay locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="relay API port (default 8000)")
    parser.add_argument("--moto-port", type=int, default=8010, help="embedded AWS port (default 8010)")
    parser.add_argument("--sandbox-app-port", type=int, default=8020, help="sandbox portal, browser side")
    parser.add_argument("--sandbox-sp-port", type=int, default=8021, help="sandbox portal, mTLS server side")
    parser.add_argument(
        "--demo-bank-port", type=int, default=8030, help="demo bank partner app (default 8030)"
    )
    parser.add_argument(
        "--demo-health-port", type=int, default=8031, help="demo health partner app (default 8031)"
    )
    parser.add_argument(
        "--state-dir", default=os.environ.get("MYNA_RELAY_LOCAL_DIR", str(REPO_ROOT / ".local"))
    )
    parser.add_argument("--no-autoreload", action="store_true", help="do not restart on code changes")
    parser.add_argument(
        "--schedule-interval",
        type=float,
        default=2.0,
        help="seconds between runs of the scheduled handler (chalice local runs no schedules)",
    )
    return parser.parse_args(argv)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_not_running(stack_file: Path) -> None:
    try:
        recorded = json.loads(stack_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return
    pid = recorded.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and pid_alive(pid):
        raise LaunchError(
            f"a local stack is already running (pid {pid}, {stack_file}); stop it with Ctrl-C first"
        )


def aws_environment(endpoint: str) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
    return env


def localise_demo_document(document: dict[str, Any], ports: dict[str, int]) -> dict[str, Any]:
    """A demo partner's document with its loopback redirect and webhook URLs on the port its app
    really runs on (tests pass free ports; the documents name 8030 and 8031)."""
    client_id = document.get("id")
    if not isinstance(client_id, str) or client_id not in ports or client_id not in REGISTERED_DEMO_PORTS:
        return document
    registered = f"//127.0.0.1:{REGISTERED_DEMO_PORTS[client_id]}/"
    actual = f"//127.0.0.1:{ports[client_id]}/"
    localised = dict(document)
    localised["redirect_uris"] = [
        uri.replace(registered, actual) for uri in document.get("redirect_uris", [])
    ]
    if isinstance(document.get("webhook_url"), str):
        localised["webhook_url"] = document["webhook_url"].replace(registered, actual)
    return localised


def bootstrap(endpoint: str, demo_ports: dict[str, int] | None = None) -> dict[str, str]:
    """Create tables and keys from infra/ and register the demo partners (on ``demo_ports``)."""
    import boto3

    from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
    from chalicelib.domain.clock import SystemClock
    from chalicelib.domain.registry import PartnerRegistry
    from infra.bootstrap import ensure_resources
    from infra.resources import PARTNERS_TABLE

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    env = ensure_resources(
        STAGE,
        dynamodb,
        session.client("kms", endpoint_url=endpoint),
        session.client("s3", endpoint_url=endpoint),
    )
    store = DynamoPartnerStore(dynamodb, PARTNERS_TABLE.physical_name(STAGE), allow_loopback=True)
    registry = PartnerRegistry(store, SystemClock(), allow_loopback=True)
    for document in sorted(DEMO_PARTNERS_DIR.glob("*.partner.json")):
        content = localise_demo_document(json.loads(document.read_text(encoding="utf-8")), demo_ports or {})
        partner = registry.register(content)
        print(f"  demo partner registered: {partner.id} ({partner.names.en})")
    return env


def start_scheduler(env: dict[str, str], interval_s: float) -> threading.Event:
    """Invoke the scheduled handlers (poller, sweeper, webhooks; audit checkpoints) periodically, as EventBridge would
    in AWS: through Chalice's own invoke path with the local stage's configuration. Code changes
    reach it at the next ``make run`` (it is not autoreloaded)."""
    os.environ.update(env)
    stop = threading.Event()

    def run() -> None:
        from chalice.test import Client

        from app import app

        with Client(app, stage_name=STAGE, project_dir=str(REPO_ROOT)) as client:
            event = client.events.generate_cw_event(
                source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region=REGION
            )
            runs = 0
            while not stop.wait(interval_s):
                runs += 1
                try:
                    client.lambda_.invoke("process_due", event)
                    if runs % 30 == 0:  # about once a minute with the default interval
                        client.lambda_.invoke("audit_checkpoint", event)
                except Exception as exc:  # noqa: BLE001  # keep scheduling; the handler logged it
                    print(f"scheduled handler failed: {type(exc).__name__}", file=sys.stderr)

    threading.Thread(target=run, name="scheduler", daemon=True).start()
    return stop


def wait_for_health(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise LaunchError(f"chalice local exited with status {child.returncode}; see the output above")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310  # our own loopback URL
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise LaunchError(f"{url} did not answer within {timeout_s:.0f} s")


def wait_for_exit(child: subprocess.Popen[bytes], poll_s: float = 0.25) -> int:
    """Wait for chalice local to exit, in short sleeps: Python runs a signal handler in the main thread
    only, when it runs; a main thread blocked in waitpid() would not notice a SIGTERM the kernel gave
    to another thread (moto's, the sandbox's, the demo apps')."""
    while (status := child.poll()) is None:
        time.sleep(poll_s)
    return status


def stop_child(child: subprocess.Popen[bytes], timeout_s: float = CHILD_STOP_TIMEOUT_S) -> None:
    """Stop chalice local and its autoreload worker (its own process group)."""
    if child.poll() is not None:
        kill_group(child.pid)  # a worker outliving its reloader
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=timeout_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        child.wait()


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def remove_record(stack_file: Path) -> None:
    """Remove the stack record if it is this launcher's."""
    try:
        if json.loads(stack_file.read_text(encoding="utf-8")).get("pid") == os.getpid():
            stack_file.unlink()
    except (FileNotFoundError, ValueError):
        pass


def exit_after(limit_s: float, child: subprocess.Popen[bytes] | None, stack_file: Path) -> threading.Timer:
    """The shutdown's bound: past ``limit_s``, chalice local is killed and this process exits."""

    def give_up() -> None:
        print(
            f"make run: not stopped within {limit_s:.0f} s; killing what is left", file=sys.stderr, flush=True
        )
        if child is not None:
            kill_group(child.pid)
        remove_record(stack_file)
        os._exit(1)

    timer = threading.Timer(limit_s, give_up)
    timer.daemon = True
    timer.start()
    return timer


def start_sandbox(args: argparse.Namespace, relay_url: str, tls_dir: Path) -> SandboxServer:
    """The Mynaportal sandbox, in this process: app side on HTTP, sp side on mutual TLS."""
    from sandbox.server import SandboxServer, load_services

    return SandboxServer(
        load_services(SANDBOX_SERVICES, relay_url),
        host=args.host,
        app_port=args.sandbox_app_port,
        sp_port=args.sandbox_sp_port,
        tls_dir=tls_dir,
    ).start()


def portal_environment(sandbox: SandboxServer) -> dict[str, str]:
    """How the relay reaches the portal: configured endpoints and its mTLS client identity."""
    endpoints = sandbox.endpoints()
    tls = sandbox.tls
    if tls is None:
        raise LaunchError("the sandbox must run its sp side with mutual TLS")
    # The relay keys its portal services by our dataset ids; the sandbox by the portal's item names.
    dataset_of_item = {"地方税関係情報": "local_tax", "予防接種関係情報": "vaccination"}
    services = {dataset_of_item[s.items[0]]: s.client_id for s in sandbox.portal.services.values()}
    return {
        "RELAY_PORTAL_AUTHORIZE_URL": endpoints["authorize_url"],
        "RELAY_PORTAL_TOKEN_URL": endpoints["token_url"],
        "RELAY_PORTAL_REQUEST_URL": endpoints["request_url"],
        "RELAY_PORTAL_RESULT_URL": endpoints["result_url"],
        "RELAY_PORTAL_CLIENT_CERT": str(tls.client_cert),
        "RELAY_PORTAL_CLIENT_KEY": str(tls.client_key),
        "RELAY_PORTAL_CA_BUNDLE": str(tls.ca_cert),
        "RELAY_PORTAL_SERVICES": json.dumps(services, ensure_ascii=False),
    }


def demo_authorize_url(sandbox: SandboxServer) -> str:
    """The portal authorize URL for the demo (local tax) service, as the relay will build it."""
    from urllib.parse import urlencode

    service = next(iter(sandbox.portal.services.values()))
    query = {
        "response_type": "code",
        "client_id": service.client_id,
        "redirect_uri": service.redirect_uri,
        "state": "demo",
        "login_type": "0",
    }
    return f"{sandbox.endpoints()['authorize_url']}?{urlencode(query)}"


class DemoApps:
    """The two demo partner apps (``partner_kit.demo``), each a threaded werkzeug server in a daemon
    thread of this process, acting against the relay at ``issuer``."""

    def __init__(self, host: str, ports: dict[str, int], issuer: str) -> None:
        import secrets

        import requests
        from werkzeug.serving import make_server

        from partner_kit.demo import create_demo_app
        from partner_kit.keys import PartnerKeys

        self.urls: dict[str, str] = {}
        self._servers: list[Any] = []
        http = requests.Session()
        http.trust_env = False  # loopback only: never through a proxy from the environment
        for kind, client_id in DEMO_APPS.items():
            port = ports[client_id]
            base_url = f"http://127.0.0.1:{port}"
            app = create_demo_app(
                kind,  # type: ignore[arg-type]  # the keys of DEMO_APPS are the demo kinds
                issuer=issuer,
                client_id=client_id,
                keys=PartnerKeys.load(DEMO_PARTNERS_DIR / f"{client_id}.DEMO-ONLY-private-jwks.json"),
                base_url=base_url,
                secret_key=secrets.token_bytes(32),
                http=http,
            )
            server = make_server(host, port, app, threaded=True)
            threading.Thread(target=server.serve_forever, name=f"demo-{kind}", daemon=True).start()
            self._servers.append(server)
            self.urls[kind] = f"{base_url}/"

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()


def banner(
    api: str, endpoint: str, stack_file: Path, sandbox: SandboxServer, demo: dict[str, str] | None = None
) -> str:
    demo = demo or {}
    return "\n".join(
        [
            "",
            "myna-relay is running (stage local; all AWS is the embedded moto server).",
            f"  relay API         {api}",
            f"  health            {api}/health",
            f"  JWKS              {api}/.well-known/jwks.json",
            f"  embedded AWS      {endpoint}  (DynamoDB, KMS)",
            f"  sandbox portal    {sandbox.app_url}/sandbox/  (personas, scenarios; sp side {sandbox.sp_url}, mTLS)",
            f"  portal sign-in    {demo_authorize_url(sandbox)}",
            f"  provision history {sandbox.app_url}/sandbox/history",
            *([f"  demo bank         {demo['bank']}"] if "bank" in demo else []),
            *([f"  demo health       {demo['health']}"] if "health" in demo else []),
            f"  stack record      {stack_file}",
            "  operator CLI      .venv/bin/python -m relayctl --local partners list",
            "Press Ctrl-C to stop everything.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir = Path(args.state_dir)
    stack_file = state_dir / "stack.json"

    stop_signals = StopSignals()
    stop_signals.install()
    server: Any = None
    sandbox: SandboxServer | None = None
    scheduler: threading.Event | None = None
    child: subprocess.Popen[bytes] | None = None
    demo_apps: DemoApps | None = None
    demo_ports = {"demo-bank": args.demo_bank_port, "demo-health": args.demo_health_port}
    try:
        check_not_running(stack_file)
        ports = (
            ("relay API", args.port),
            ("embedded AWS", args.moto_port),
            ("sandbox portal app side", args.sandbox_app_port),
            ("sandbox portal sp side", args.sandbox_sp_port),
            ("demo bank", args.demo_bank_port),
            ("demo health", args.demo_health_port),
        )
        for name, port in ports:
            if not port_is_free(args.host, port):
                raise LaunchError(
                    f"port {port} ({name}) on {args.host} is in use; free it or pass another port"
                )

        from moto.server import ThreadedMotoServer

        from infra.local_aws import make_emulator_faithful

        make_emulator_faithful()  # atomic conditional writes, KMS DIGEST signing: as in AWS

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call is noise here

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.moto_port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{args.moto_port}"
        print(f"embedded AWS (moto) on {endpoint}; creating tables and keys from infra/")
        env = {**os.environ, **aws_environment(endpoint)}
        for name in ("AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
        resource_env = bootstrap(endpoint, demo_ports)

        api = f"http://{args.host}:{args.port}"
        sandbox = start_sandbox(args, api, state_dir / "sandbox-tls")
        portal_env = portal_environment(sandbox)
        # chalice local with the service's answers for unknown paths and methods (scripts/chalice_local.py).
        command = [
            sys.executable,
            "-m",
            "scripts.chalice_local",
            "local",
            "--stage",
            STAGE,
            "--host",
            args.host,
            "--port",
            str(args.port),
        ]
        if args.no_autoreload:
            command.append("--no-autoreload")
        # The issuer is the URL the relay is really served on (config.json cannot know the port).
        relay_env = {**resource_env, **portal_env, "RELAY_ISSUER": api}
        from scripts.chalice_local import PARENT_PID_ENV

        # Its own session: Ctrl-C reaches this launcher only, which stops chalice local (and its worker)
        # as a group. With PARENT_PID_ENV it dies with this process if this one is killed outright.
        child = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**env, **relay_env, PARENT_PID_ENV: str(os.getpid())},
            start_new_session=True,
        )
        wait_for_health(f"{api}/health", child)
        scheduler = start_scheduler({**env, **relay_env}, args.schedule_interval)
        demo_apps = DemoApps(args.host, demo_ports, api)

        state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "relay_pid": child.pid,  # its own process group: for cleanup if this launcher is killed
            "stage": STAGE,
            "region": REGION,
            "aws_endpoint_url": endpoint,
            "api_url": api,
            "environment": relay_env,
            "sandbox": {
                "app_url": sandbox.app_url,
                "sp_url": sandbox.sp_url,
                "endpoints": sandbox.endpoints(),
                "demo_authorize_url": demo_authorize_url(sandbox),
            },
            "demo": dict(demo_apps.urls),
        }
        # Written aside, then renamed: whoever waits for the record (tests, relayctl --local) never
        # reads half of it.
        pending_record = stack_file.with_name(stack_file.name + ".tmp")
        pending_record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        pending_record.replace(stack_file)
        print(banner(api, endpoint, stack_file, sandbox, demo_apps.urls), flush=True)
        status = wait_for_exit(child)
        print(f"chalice local exited with status {status}", file=sys.stderr)
        return status or 1
    except (KeyboardInterrupt, _Stop):
        print("\nstopping myna-relay", flush=True)
        return 0
    except LaunchError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_signals.stopping = True  # from here on a signal is absorbed: it must not cut this short
        deadline = exit_after(SHUTDOWN_LIMIT_S, child, stack_file)
        if child is not None:  # first: the one other process
            stop_child(child)
        if scheduler is not None:
            scheduler.set()
        if demo_apps is not None:
            demo_apps.stop()
        if sandbox is not None:
            sandbox.stop()
        if server is not None:
            server.stop()
        remove_record(stack_file)
        deadline.cancel()


if __name__ == "__main__":
    sys.exit(main())
