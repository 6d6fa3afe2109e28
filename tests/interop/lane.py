"""The Node lane's plumbing: install the pinned packages (`npm ci`, once per lockfile) and run
flow.mjs as a child process that talks one JSON object a line."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import pytest

from tests.npm import npm_ci

INTEROP_DIR = Path(__file__).resolve().parent
NODE_MAJOR_AT_LEAST = 20  # openid-client v6 and jose v6: Node.js 20 is their baseline
STEP_TIMEOUT_S = 120  # discovery + PAR, or the code exchange and the pickups (Retry-After honoured)


def require_node() -> tuple[str, str]:
    """node (20 or newer) and npm, or skip with the reason; under CI (CI=true, where `.ci/run`
    installs them) FAIL: a CI run must not pass without the lane."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is not None and npm is not None:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
        major = version.stdout.strip().lstrip("v").split(".")[0]
        if major.isdigit() and int(major) >= NODE_MAJOR_AT_LEAST:
            return node, npm
        message = f"the Node interop lane needs Node.js {NODE_MAJOR_AT_LEAST} or newer, not {version.stdout.strip()!r}"
    else:
        message = "node and npm are needed for the Node interop lane (apt-get install nodejs npm)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def install(npm: str) -> None:
    """`npm ci` into tests/interop/node_modules unless this lockfile is what is installed there."""
    npm_ci(INTEROP_DIR, npm)


class NodeFlow:
    """One run of flow.mjs. ``next_event()`` reads what it prints; ``send()`` answers it."""

    def __init__(self, node: str, env: dict[str, str]) -> None:
        self._stderr: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115  # closed in close()
        self.process = subprocess.Popen(
            [node, str(INTEROP_DIR / "flow.mjs")],
            cwd=INTEROP_DIR,
            env={"PATH": os.environ.get("PATH", ""), **env},  # nothing else leaks in (proxies, AWS)
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._events.put({"event": "unreadable", "line": line})
        self._events.put(None)

    def next_event(self, timeout: float = STEP_TIMEOUT_S) -> dict[str, Any]:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"flow.mjs said nothing for {timeout} s:\n{self.stderr()}")
        if event is None:
            pytest.fail(f"flow.mjs ended (exit {self.process.wait()}) without a result:\n{self.stderr()}")
        return event

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()
