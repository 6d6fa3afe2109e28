"""Run the sandbox: the ``app`` side (plain HTTP, for the browser) and the ``sp`` side (mutual TLS
by default), each a threaded WSGI server on loopback, plus the completion-notice sender.

Start it in-process (``SandboxServer(...).start()``; tests and ``make run``) or as
``python -m sandbox``. In deterministic mode the clock is manual, delays are zero and notices
go out only when asked (``deliver_due_notices`` or ``POST /sandbox/notices/deliver``).
"""

from __future__ import annotations

import io
import json
import threading
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.clock import Clock, ManualClock, SystemClock
from sandbox.personas import ALL_PERSONA_DIRS, CallbackStyle, load_personas
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


# A persistent connection left idle this long is closed, as a real front end's idle timeout does.
IDLE_CONNECTION_TIMEOUT_S = 60.0
# Bodies up to this size are read whole before the application runs (the telegrams are a few KiB).
PERSISTENT_BODY_LIMIT = 1024 * 1024


class PersistentConnectionHandler(WSGIRequestHandler):
    """HTTP/1.1 with persistent connections, as the real portal's hosts speak it.

    Werkzeug's development handler answers every request with ``Connection: close``: it cannot
    tell where a request body ends if the application leaves part of it unread, so it drains the
    socket and hangs up. Here the body is read to its declared ``Content-Length`` before the
    application runs (the application reads it from memory), and the answer carries its own
    ``Content-Length``, so the connection stays in step and the client may send its next request
    on it. Anything this cannot frame (a chunked or oversized body, ``Expect: 100-continue``, HEAD)
    is left to Werkzeug's handler, which closes the connection as before; so does a client asking
    for ``Connection: close``, and so does an application error."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT_S

    def _body_length(self) -> int | None:
        """The request body's length if this handler can frame it, else None."""
        if self.command == "HEAD" or "Transfer-Encoding" in self.headers or "Expect" in self.headers:
            return None
        declared = self.headers.get("Content-Length", "0").strip()
        if not declared.isdigit() or int(declared) > PERSISTENT_BODY_LIMIT:
            return None
        return int(declared)

    def run_wsgi(self) -> None:
        length = self._body_length()
        if length is None:
            super().run_wsgi()  # Werkzeug's own path: it sends Connection: close
            return
        body = self.rfile.read(length) if length else b""
        if len(body) != length:  # the client went away mid-body
            self.close_connection = True
            return
        self.environ = environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        answer: dict[str, Any] = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return written.append  # the WSGI write() callable: nothing is sent before the end

        try:
            iterable = self.server.app(environ, start_response)
            try:
                written.extend(iterable)
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        except Exception:
            if self.server.passthrough_errors:
                raise
            self.server.log("error", "Error on request:\n%s", traceback.format_exc())
            answer = {"status": "500 INTERNAL SERVER ERROR", "headers": [("Content-Type", "text/plain")]}
            written = [b"Internal Server Error"]
            self.close_connection = True
        content = b"".join(written)
        code, _, reason = str(answer["status"]).partition(" ")
        self.send_response(int(code), reason)
        for key, value in answer["headers"]:
            if key.lower() not in {"content-length", "connection", "transfer-encoding", "keep-alive"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        if self.close_connection:  # the client asked for it (parse_request), or the answer failed
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(content)
        self.wfile.flush()

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out"):
            return  # an idle persistent connection reaching its timeout: not an error
        super().log_error(format, *args)


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
        callback_style: CallbackStyle | None = None,
        personas_dirs: tuple[Path, ...] = ALL_PERSONA_DIRS,
    ) -> None:
        self.deterministic = deterministic
        self.clock: Clock = clock or (ManualClock() if deterministic else SystemClock())
        provider = services[0].provider_digits if services else "00000000"
        self.tls: TlsFiles | None = create_test_pki(tls_dir, f"SP{provider}") if tls_dir else None
        self.portal = Portal(
            services,
            load_personas(*personas_dirs),
            self.clock,
            timing=timing or (DETERMINISTIC_TIMING if deterministic else Timing()),
            scenarios=ScenarioBook(default_scenario, callback_style=callback_style),
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
            request_handler=PersistentConnectionHandler,  # the relay's client keeps its connections
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
