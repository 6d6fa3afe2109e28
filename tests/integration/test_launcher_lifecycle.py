"""`make run`'s lifecycle: the relay is not restarted behind a flow once the stack says it is ready
(autoreload on, as `make run` runs it, with the stack's state in the work tree), and however the
stack is stopped (SIGTERM, SIGINT to its process group, SIGTERM to make alone, a second signal
during the shutdown, SIGKILL of the launcher) no process and no port of it is left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from partner_kit import PartnerKeys, RelayClient
from tests.conftest import REPO_ROOT
from tests.integration.stack import Launcher
from tests.partner_kit.test_kit_against_stack import (
    DEMO_BANK_KEYS,
    loopback_session,
    query_of,
    resident_agrees,
    stack_record,
)

pytestmark = pytest.mark.integration

QUIET_AFTER_READY_S = 6.0  # chalice local's file watcher polls every second
STOPPED_WITHIN_S = 20.0  # the launcher's own bound on its shutdown is 15 s
GONE_AFTER_SIGKILL_S = 5.0


# -- processes and ports, from /proc (Linux; the launcher's parent-death signal is Linux's too) ---------


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` (R, S, Z...), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            found.add(int(entry.name))
    return found


def descendants_of(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children_of(pending.pop()):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended: it only waits to be reaped)."""
    return {pid for pid in pids if process_state(pid) not in (None, "Z")}


def described(pids: set[int]) -> list[str]:
    """``pid state command line`` of each process: what a failing assertion shows."""
    lines = []
    for pid in sorted(pids):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = "?"
        lines.append(f"{pid} {process_state(pid)} {command[:160]}")
    return lines


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until_gone(pids: set[int], ports: list[int], timeout_s: float) -> tuple[set[int], list[int]]:
    """Poll until every process has ended and every port is free; what is left at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        left_pids = alive(pids)
        left_ports = [port for port in ports if port_in_use(port)]
        if (not left_pids and not left_ports) or time.monotonic() > deadline:
            return left_pids, left_ports
        time.sleep(0.1)


def kill_left_over(pids: set[int]) -> None:
    for pid in alive(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def require_linux_proc() -> None:
    if not Path("/proc/self/stat").exists():
        message = "these lifecycle tests read processes from /proc (Linux)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# -- 1. no restart behind a flow ----------------------------------------------------------------------


@pytest.fixture
def state_in_work_tree() -> Iterator[Path]:
    """A state directory inside the work tree, where `make run` keeps its own (.local/): the tree
    chalice local's reloader watches."""
    state_dir = REPO_ROOT / ".local" / f"lifecycle-{uuid.uuid4().hex[:12]}"
    yield state_dir
    shutil.rmtree(state_dir, ignore_errors=True)


def relay_worker(launcher: Launcher) -> int:
    """The process serving the relay: chalice local's worker, the one child of its reloader."""
    reloader = stack_record(launcher)["relay_pid"]
    workers = alive(children_of(reloader))
    assert len(workers) == 1, f"chalice local {reloader} has workers {workers}"
    return workers.pop()


def test_a_flow_started_the_instant_the_stack_is_ready_completes_without_a_restart(
    state_in_work_tree: Path,
) -> None:
    require_linux_proc()
    # GIVEN the stack as `make run` starts it: autoreload on, its state written into the work tree
    launcher = Launcher(state_in_work_tree, autoreload=True)
    try:
        launcher.start()
        ready = time.monotonic()
        worker = relay_worker(launcher)
        # WHEN a partner starts a whole flow the instant the stack says it is ready
        bank_url = stack_record(launcher)["demo"]["bank"]
        kit = RelayClient(
            launcher.api, "demo-bank", PartnerKeys.load(DEMO_BANK_KEYS), session=loopback_session()
        )
        pending = kit.start(f"{bank_url.rstrip('/')}/callback", "loan-screening", "local_tax")
        redirect = resident_agrees(loopback_session(), pending.authorize_url, launcher.api)
        claims = kit.open(kit.pick_up(kit.finish(pending, query_of(redirect)), wait_s=60))
        # THEN it completes
        assert claims["aud"] == "demo-bank"
        assert claims["data"]["dataset"] == "local_tax"
        # AND the same relay process served it and still serves, while nothing edits a source file
        while time.monotonic() - ready < QUIET_AFTER_READY_S:
            assert relay_worker(launcher) == worker, launcher.log_tail()
            time.sleep(0.25)
        assert requests.get(f"{launcher.api}/health", timeout=10).status_code == 200
        assert "Restarting local dev server" not in launcher.log_tail(400)
        # AND a source file that changes still restarts it (autoreload still works)
        os.utime(REPO_ROOT / "app.py")
        deadline = time.monotonic() + 30
        while relay_worker_or_none(launcher) in (worker, None) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert relay_worker_or_none(launcher) not in (worker, None), launcher.log_tail()
        wait_for_health(launcher.api)
    finally:
        if launcher.process is not None and launcher.process.poll() is None:
            launcher.stop()


def relay_worker_or_none(launcher: Launcher) -> int | None:
    workers = alive(children_of(stack_record(launcher)["relay_pid"]))
    return workers.pop() if len(workers) == 1 else None


def wait_for_health(api: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{api}/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{api}/health did not answer again"
        time.sleep(0.2)
