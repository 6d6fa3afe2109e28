"""Run the sandbox: the ``app`` side (plain HTTP, for the browser) and the ``sp`` side (mutual TLS
by default), each a threaded WSGI server on loopback, plus the completion-notice sender.

Start it in-process (``SandboxServer(...).start()``; tests and ``make run``) or as
``python -m sandbox``. In deterministic mode the clock is manual, delays are zero and notices
go out only when asked (``deliver_due_notices`` or ``POST /sandbox/notices/deliver``).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.clock import Clock, ManualClock, SystemClock
from sandbox.personas import PERSONAS_DIR, load_personas
from sandbox.portal import Portal, ServiceRegistration, Timing
from sandbox.scenarios import Scenario, ScenarioBook
from sandbox.tls import TlsFiles, browser_server_context, create_test_pki, server_context
from sandbox.web import create_app_side, create_sp_side

NOTICE_TIMEOUT_S = 5.0
DETERMINISTIC_TIMING = Timing(
    result_delay_s=0, slow_result_delay_s=0, notice_delay_s=0, duplicate_notice_gap_s=0, hang_s=2.0
)


def load_services(path: Path, relay_base_url: str) -> tuple[ServiceRegistration, ...]:
    """Service registrations from JSON; ``{relay}`` in a URL is replaced by the relay's base URL."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        ServiceRegistration(
            client_id=entry["client_id"],
            name=entry["name"],
            redirect_uri=entry["redirect_uri"].replace("{relay}", relay_base_url),
            notice_url=entry["notice_url"].replace("{relay}", relay_base_url),
            items=tuple(entry["items"]),
        )
        for entry in document["services"]
    )


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST a notice; (status, parsed JSON or None). Connection failures raise OSError."""
    data = json.dumps(body, ensure_ascii=False).encode()
    request = urllib.request.Request(  # noqa: S310  # the URL is a registered notice URL
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=NOTICE_TIMEOUT_S) as answer:  # noqa: S310
            raw = answer.read(64 * 1024)
            status = answer.status
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


class SandboxServer:
    def __init__(
        self,
        services: tuple[ServiceRegistration, ...],
        *,
        host: str = "127.0.0.1",
        app_port: int = 0,
        sp_port: int = 0,
        tls_dir: Path | None = None,
        app_tls: bool = False,
        deterministic: bool = False,
        timing: Timing | None = None,
        clock: Clock | None = None,
        default_scenario: Scenario = Scenario.NORMAL,
        personas_dir: Path = PERSONAS_DIR,
    ) -> None:
        self.deterministic = deterministic
        self.clock: Clock = clock or (ManualClock() if deterministic else SystemClock())
        provider = services[0].provider_digits if services else "00000000"
        self.tls: TlsFiles | None = create_test_pki(tls_dir, f"SP{provider}") if tls_dir else None
        self.portal = Portal(
            services,
            load_personas(personas_dir),
            self.clock,
            timing=timing or (DETERMINISTIC_TIMING if deterministic else Timing()),
            scenarios=ScenarioBook(default_scenario),
            send_notice=post_json,
        )
        # The browser side is plain HTTP locally (the resident's browser would not trust the test
        # CA); app_tls serves it over TLS too, for stages whose settings accept https only.
        self._app_tls = app_tls and self.tls is not None
        self._app_server: BaseWSGIServer = make_server(
            host,
            app_port,
            create_app_side(self.portal),
            threaded=True,
            ssl_context=browser_server_context(self.tls) if self.tls and app_tls else None,
        )
        self._sp_server: BaseWSGIServer = make_server(
            host,
            sp_port,
            create_sp_side(self.portal, tls=self.tls is not None),
            threaded=True,
            ssl_context=server_context(self.tls) if self.tls else None,
        )
        self._host = host
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def app_url(self) -> str:
        scheme = "https" if self._app_tls else "http"
        return f"{scheme}://{self._host}:{self._app_server.server_port}"

    @property
    def sp_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self._host}:{self._sp_server.server_port}"

    def endpoints(self) -> dict[str, str]:
        """The configured endpoints the relay uses, exactly as for the real portal."""
        return {
            "authorize_url": f"{self.app_url}/online-authorization-web/oauth/authorize",
            "token_url": f"{self.sp_url}/online-authorization-web/oauth/token",
            "request_url": f"{self.sp_url}/online-resource-web/request",
            "result_url": f"{self.sp_url}/online-resource-web/result",
        }

    def start(self) -> SandboxServer:
        for name, server in (("sandbox-app", self._app_server), ("sandbox-sp", self._sp_server)):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self.deterministic:
            notifier = threading.Thread(target=self._send_notices, name="sandbox-notices", daemon=True)
            notifier.start()
            self._threads.append(notifier)
        return self

    def _send_notices(self) -> None:
        while not self._stopping.wait(0.2):
            self.portal.deliver_due_notices()

    def stop(self) -> None:
        self._stopping.set()
        self._app_server.shutdown()
        self._sp_server.shutdown()
        self._app_server.server_close()
        self._sp_server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
