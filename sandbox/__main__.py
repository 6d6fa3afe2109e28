"""``python -m sandbox``: run the Mynaportal sandbox on its own (``make run`` starts it in-process)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from sandbox import inferred
from sandbox.personas import CALLBACK_STYLES
from sandbox.scenarios import Scenario
from sandbox.server import SandboxServer, load_services

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Mynaportal sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--app-port", type=int, default=8020)
    parser.add_argument("--sp-port", type=int, default=8021)
    parser.add_argument("--relay", default="http://127.0.0.1:8000", help="the relay's base URL")
    parser.add_argument("--services", type=Path, default=REPO_ROOT / "local" / "sandbox-services.json")
    parser.add_argument("--tls-dir", type=Path, default=REPO_ROOT / ".local" / "sandbox-tls")
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP on the sp side")
    parser.add_argument("--deterministic", action="store_true", help="manual clock, zero delays")
    parser.add_argument("--scenario", choices=[s.value for s in Scenario], default=Scenario.NORMAL.value)
    parser.add_argument(
        "--callback-style",
        choices=CALLBACK_STYLES,
        default=inferred.DEFAULT_CALLBACK_STYLE,
        help="cancel/expired certificate as observed (code=access_denied, state=Certificate expired) "
        "or OAuth-style (error=...)",
    )
    args = parser.parse_args(argv)
    server = SandboxServer(
        load_services(args.services, args.relay),
        host=args.host,
        app_port=args.app_port,
        sp_port=args.sp_port,
        tls_dir=None if args.no_tls else args.tls_dir,
        deterministic=args.deterministic,
        default_scenario=Scenario(args.scenario),
        callback_style=args.callback_style,
    ).start()
    print(f"sandbox app side  {server.app_url}/sandbox/")
    print(
        f"sandbox sp side   {server.sp_url}"
        + (f"  (mTLS; client certificate in {args.tls_dir})" if server.tls else "")
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
