"""The whole local stack (`make run`'s launcher) as a test fixture: start it on free loopback ports,
talk to it over real HTTP, stop it as Ctrl-C would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest

from tests import leakscan
from tests.conftest import REPO_ROOT

START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launcher_command(
    port: int, moto_port: int, app_port: int, sp_port: int, state_dir: Path, *extra: str
) -> list[str]:
    """The launcher on the given ports; the two demo partner apps always get free ports (unless
    ``extra`` names them)."""
    demo_ports: list[str] = []
    for flag in ("--demo-bank-port", "--demo-health-port"):
        if flag not in extra:
            demo_ports += [flag, str(free_port())]
    return [
        sys.executable,
        "-m",
        "scripts.dev",
        "--port",
        str(port),
        "--moto-port",
        str(moto_port),
        "--sandbox-app-port",
        str(app_port),
        "--sandbox-sp-port",
        str(sp_port),
        "--state-dir",
        str(state_dir),
        *demo_ports,
        *extra,
    ]


def without_aws_environment() -> dict[str, str]:
    """The launcher must work from a clean environment: no AWS settings leak in from the tests."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}


def get_json(url: str) -> tuple[int, dict[str, str], Any]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310  # loopback only
        return answer.status, dict(answer.headers), json.loads(answer.read())


class Launcher:
    def __init__(self, state_dir: Path, *extra_args: str, autoreload: bool = False) -> None:
        """``extra_args`` go to the launcher as they are (e.g. ``--schedule-interval 0.2``).
        ``autoreload``: chalice local restarts on source changes, as under `make run` (tests
        usually do without: one process less, no file watcher walking the tree)."""
        self.state_dir = state_dir
        self.extra_args = extra_args
        self.autoreload = autoreload
        # Four distinct ports: the OS may hand the same free port to two probes in a row.
        ports: list[int] = []
        while len(ports) < 4:
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.port, self.moto_port = ports[0], ports[1]
        self.sandbox_ports = (ports[2], ports[3])
        self.api = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.output = ""
        # The launcher's output (and the relay's log lines) go to a file, not a pipe: nobody reads a
        # pipe while the stack runs, and a full one (64 KiB: a few hundred requests) blocks the relay.
        self._log: IO[str] | None = None
        self._leak_record: Path | None = None

    def start(self) -> None:
        env = without_aws_environment()
        # The leak scan (tests/leakscan.py) records the secrets the stack makes and the relay's errors.
        self._leak_record = Path(tempfile.mkdtemp(prefix="leakscan-stack-"))
        env.update(leakscan.child_environment(self._leak_record))
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115  # closed in stop()
        self.process = subprocess.Popen(
            launcher_command(
                self.port,
                self.moto_port,
                *self.sandbox_ports,
                self.state_dir,
                *([] if self.autoreload else ["--no-autoreload"]),
                *self.extra_args,
            ),
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"launcher exited early:\n{self._read_log()}")
            if (self.state_dir / "stack.json").exists():
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"launcher did not come up in {START_TIMEOUT_S} s:\n{self.output}")

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self._scan_tables()
            os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        relay_pid = self._recorded_relay_pid()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self._kill_orphan(relay_pid)  # chalice local runs in its own process group
            self.process.wait(timeout=10)
            self._close_log()
            pytest.fail("launcher did not stop within 30 s of Ctrl-C")
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        self.output = self._read_log()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._leak_record is not None:
            leakscan.collect_launched_output(self.output, self._leak_record, self.state_dir / "sandbox-tls")
            self._leak_record = None

    def _scan_tables(self) -> None:
        """Every table of the stack's embedded AWS, for the leak scan, while the stack still runs."""
        try:
            record = json.loads((self.state_dir / "stack.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        leakscan.collect_launched_tables(record["aws_endpoint_url"], record["region"])

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the launcher's output so far (the relay's, the sandbox's, the
        scheduler's): what a failing browser test shows beside its own assertion."""
        return "\n".join(self._read_log().splitlines()[-lines:])

    def _read_log(self) -> str:
        if self._log is None:
            return self.output
        self._log.seek(0)
        return self._log.read()

    def _recorded_relay_pid(self) -> int | None:
        try:
            value = json.loads((self.state_dir / "stack.json").read_text(encoding="utf-8")).get("relay_pid")
        except (OSError, ValueError):
            return None
        return value if isinstance(value, int) else None

    @staticmethod
    def _kill_orphan(pid: int | None) -> None:
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def relayctl_local(state_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = without_aws_environment()
    return subprocess.run(
        [sys.executable, "-m", "relayctl", "--local", "--state-dir", str(state_dir), *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
