"""``chalice local`` as the launcher (``scripts/dev.py``) runs it, answering like the service.

Stock ``chalice local`` answers a path no route has with API Gateway's 403 ``{"message": "Missing
Authentication Token"}``, a method ``http.server`` does not know (TRACE, CONNECT...) with its own
HTML 501, and a malformed request line with HTML too. Here the same CLI (options, autoreload) runs
with a request handler that sends every method to the app (which answers 405 with a problem), a
gateway that answers an unknown path with the service's 404 problem
(``chalicelib.api.middleware.answer_unmatched``), and ``http.server``'s own errors as problems.
In AWS, API Gateway's gateway responses do the same (``infra/template.py``). Never shipped.

Two more differences from stock ``chalice local``, for ``make run``'s lifecycle:

* Autoreload restarts the server when a *source* file changes (``WATCHED_SOURCES``: the app, its
  library, its stage configuration), not when anything at all under the project changes. Stock
  chalice local polls every file of the tree (watchdog is not installed), so the launcher's own
  ``.local/`` (stack record, sandbox TLS files), ``__pycache__`` written by a lazy import, pytest's
  caches, test artifacts or ``node_modules`` each restarted the relay and reset requests in flight.
* Each process dies with its parent (``die_with_parent``): the launcher killed outright takes
  chalice local with it, and chalice local's reloader takes its worker.

Usage: ``python -m scripts.chalice_local local --stage local --port 8000 [--no-autoreload]``.
"""

from __future__ import annotations

import ctypes
import http
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

from chalice import local
from chalice.cli import cli, reloader
from chalice.cli.factory import CLIFactory
from chalice.cli.filewatch.stat import StatFileWatcher, StatWorkerProcess

# What the deployed function is made of (chalice packages app.py, chalicelib/ and vendor/ with the
# stage's configuration), and this server itself: a change to one of these restarts the relay.
WATCHED_SOURCES = ("app.py", "chalicelib", "vendor", ".chalice/config.json", "scripts/chalice_local.py")
# The pid of the process that started this one, when it should end with it: set by the launcher for
# chalice local, and here for chalice local's worker.
PARENT_PID_ENV = "MYNA_RELAY_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class ServiceGateway(local.LocalGateway):
    """API Gateway as deployed: a path no route has is the service's 404 problem."""

    def handle_request(self, method: str, path: str, headers: Any, body: bytes | None) -> Any:
        try:
            self.event_converter.create_lambda_event(method=method, path=path, headers=headers, body=body)
        except ValueError:  # no route matches the path
            from chalicelib.api.middleware import answer_unmatched

            return answer_unmatched(headers, method).to_dict()
        return super().handle_request(method, path, headers, body)

    def _has_user_defined_options_method(self, lambda_event: Any) -> bool:
        # Chalice local answers OPTIONS itself (200) on every path; API Gateway does so only where a
        # route has CORS, which none of ours has: elsewhere the app answers (405 problem, Allow).
        entries = self._app_object.routes[lambda_event["requestContext"]["resourcePath"]].values()
        return super()._has_user_defined_options_method(lambda_event) or not any(e.cors for e in entries)


class ServiceRequestHandler(local.ChaliceRequestHandler):
    """Every method reaches the gateway; http.server's own errors are problems, not HTML."""

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        self.local_gateway = ServiceGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD> and answers 501 when there is none.
        if name.startswith("do_") and name[3:].isalpha() and name[3:].isupper():
            return self._generic_handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request http.server cannot read (request line, headers, length): an RFC 9457 problem."""
        try:
            title = http.HTTPStatus(code).phrase
        except ValueError:
            title = "Error"
        interaction_id = str(uuid.uuid4())  # the request's own was not read (or not readable)
        problem = {
            "type": "urn:myna-relay:problem:bad-http-request",
            "title": title,
            "status": code,
            "detail": message or title,
            "interaction_id": interaction_id,
        }
        body = json.dumps(problem).encode()
        self.close_connection = True
        self.send_response(code, message)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("x-fapi-interaction-id", interaction_id)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


def create_local_server(
    factory: CLIFactory, app_obj: Any, config: Any, host: str, port: int
) -> local.LocalDevServer:
    local.CustomLocalChalice.__bases__ = (local.LocalChalice, app_obj.__class__)
    app_obj.__class__ = local.CustomLocalChalice
    return local.LocalDevServer(app_obj, config, host, port, handler_cls=ServiceRequestHandler)


def source_files(project_dir: str) -> Iterator[str]:
    """The files whose change restarts the relay: ``WATCHED_SOURCES`` without bytecode or dotfiles
    (editors' swap files)."""
    for name in WATCHED_SOURCES:
        path = os.path.join(project_dir, name)
        if os.path.isfile(path):
            yield path
            continue
        for directory, subdirectories, files in os.walk(path):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__" and not d.startswith(".")]
            for file in files:
                if not file.startswith(".") and not file.endswith((".pyc", ".pyo", "~")):
                    yield os.path.join(directory, file)


class SourceFileWatcher(StatFileWatcher):
    """Chalice's stat() poller (once a second), over the source files only."""

    def _seed_mtime_cache(self, root_dir: str) -> None:
        for path in source_files(root_dir):
            try:
                self._mtime_cache[path] = os.stat(path).st_mtime
            except OSError:
                continue

    def _recursive_walk_files(self, root_dir: str) -> Iterator[str]:
        return source_files(root_dir)


class SourceWorkerProcess(StatWorkerProcess):
    """chalice local's worker, restarted by ``SourceFileWatcher``."""

    def _start_file_watcher(self, project_dir: str) -> None:
        SourceFileWatcher().watch_for_file_changes(project_dir, self._on_file_change)


def die_with_parent() -> None:
    """End this process when the one that started it ends (``PARENT_PID_ENV``), however it ends.

    On Linux the kernel sends the parent-death signal (SIGKILL: there is nothing to save here, the
    data is in the launcher's embedded AWS). Elsewhere a thread polls the parent's pid. Either way a
    parent already gone before this ran is noticed. Then this process is the parent its own children
    (chalice local's worker) die with."""
    expected = os.environ.get(PARENT_PID_ENV)
    if expected is not None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        else:

            def watch_parent() -> None:
                while os.getppid() == int(expected):
                    time.sleep(0.5)
                os._exit(1)

            threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
        if os.getppid() != int(expected):
            os._exit(1)  # the parent ended before the death signal was armed
    os.environ[PARENT_PID_ENV] = str(os.getpid())


def main(argv: list[str]) -> None:
    """Run the chalice CLI (it exits with the server's status)."""
    die_with_parent()
    # The launcher stops chalice local with SIGTERM; a parent that ignored it must not make us immune.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    CLIFactory.create_local_server = create_local_server  # type: ignore[method-assign,assignment]
    reloader.get_best_worker_process = lambda: SourceWorkerProcess
    # Chalice's autoreload restarts the server by running sys.argv again: this module, not `chalice`.
    sys.argv = [sys.executable, "-m", "scripts.chalice_local", *argv]
    cli.main(args=argv, prog_name="chalice", obj={})


if __name__ == "__main__":
    main(sys.argv[1:])
