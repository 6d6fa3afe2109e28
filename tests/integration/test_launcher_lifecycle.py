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
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

from partner_kit import PartnerKeys, RelayClient
from tests.conftest import REPO_ROOT
from tests.integration.stack import START_TIMEOUT_S, Launcher, free_port, without_aws_environment
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


# -- 2. stopping `make run` -----------------------------------------------------------------------------


class MakeRun:
    """`make run ARGS="..."` (the real target) on free ports, in a process group of its own, as a
    terminal, a supervisor or CI runs it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.ports = [free_port() for _ in range(6)]
        self.process: subprocess.Popen[str] | None = None
        self._log: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115  # closed in output()

    def start(self) -> None:
        make = shutil.which("make")
        if make is None:
            if os.environ.get("CI"):
                pytest.fail("make is needed to run `make run`")
            pytest.skip("make is needed to run `make run`")
        names = ("--port", "--moto-port", "--sandbox-app-port", "--sandbox-sp-port")
        names += ("--demo-bank-port", "--demo-health-port")
        args = [f"{name} {port}" for name, port in zip(names, self.ports, strict=True)]
        args.append(f"--state-dir {self.state_dir}")
        env = without_aws_environment()
        for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # not the jobserver of a `make test` around us
            env.pop(name, None)
        # -o: the virtualenv counts as installed (this test is about the run, not the install)
        self.process = subprocess.Popen(
            [make, "--no-print-directory", "-o", ".venv/.installed", "run", f"ARGS={' '.join(args)}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.state_dir / "stack.json").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"`make run` did not come up:\n{self.output()}")
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        left = descendants_of(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        kill_left_over(left)
        self.process.wait(timeout=10)

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()


@pytest.mark.parametrize(
    ("signum", "whom"),
    [
        (signal.SIGTERM, "group"),  # a supervisor, `docker stop`, CI
        (signal.SIGINT, "group"),  # Ctrl-C
        (signal.SIGTERM, "make"),  # kill <pid of make>
    ],
    ids=["SIGTERM-to-the-group", "SIGINT-to-the-group", "SIGTERM-to-make"],
)
def test_stopping_make_run_leaves_no_process_and_no_port(
    tmp_path: Path, signum: signal.Signals, whom: str
) -> None:
    require_linux_proc()
    # GIVEN `make run` up, autoreload on: make, the launcher, chalice local and its worker
    run = MakeRun(tmp_path / "state")
    run.start()
    assert run.process is not None
    processes = {run.process.pid, *descendants_of(run.process.pid)}
    assert len(processes) >= 4, processes
    try:
        # WHEN it is stopped with the signal
        started = time.monotonic()
        if whom == "group":
            os.killpg(run.process.pid, signum)
        else:
            os.kill(run.process.pid, signum)
        left_pids, left_ports = wait_until_gone(processes, run.ports, STOPPED_WITHIN_S)
        stopped_in = time.monotonic() - started
        # THEN within the bound nothing is left: no process, no port, no stack record
        assert (described(left_pids), left_ports) == ([], []), run.output()
        assert not (run.state_dir / "stack.json").exists(), run.output()
        assert "stopping myna-relay" in run.output()
        print(f"`make run` stopped by {signum.name} to the {whom} in {stopped_in:.1f} s")
    finally:
        kill_left_over(processes)
        run.process.wait(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_during_the_shutdown_does_not_abort_it(
    launcher: Launcher, signum: signal.Signals
) -> None:
    require_linux_proc()
    # GIVEN the stack, autoreload on (make forwards SIGTERM: the launcher gets it twice)
    launcher.autoreload = True
    launcher.start()
    assert launcher.process is not None
    processes = {launcher.process.pid, *descendants_of(launcher.process.pid)}
    try:
        # WHEN the signal comes again while the launcher is stopping
        os.kill(launcher.process.pid, signum)
        time.sleep(0.2)
        os.kill(launcher.process.pid, signum)
        # THEN the shutdown completes anyway: exit 0, nothing left
        assert launcher.process.wait(timeout=STOPPED_WITHIN_S) == 0
        left_pids, left_ports = wait_until_gone(processes, [launcher.port, launcher.moto_port], 5)
        assert (described(left_pids), left_ports) == ([], []), launcher.log_tail()
    finally:
        kill_left_over(processes)


# -- 3. the launcher killed outright ----------------------------------------------------------------------


def test_chalice_local_ends_when_the_launcher_is_killed(launcher: Launcher) -> None:
    require_linux_proc()
    # GIVEN the stack, autoreload on: chalice local's reloader and its worker
    launcher.autoreload = True
    launcher.start()
    assert launcher.process is not None
    processes = {launcher.process.pid, *descendants_of(launcher.process.pid)}
    assert len(processes) >= 3, processes
    try:
        # WHEN the launcher is killed outright (no cleanup of its own can run)
        os.kill(launcher.process.pid, signal.SIGKILL)
        launcher.process.wait(timeout=10)
        # THEN within seconds no process of the stack is left and every port is free
        ports = [launcher.port, launcher.moto_port, *launcher.sandbox_ports]
        left_pids, left_ports = wait_until_gone(processes, ports, GONE_AFTER_SIGKILL_S)
        assert (described(left_pids), left_ports) == ([], []), launcher.log_tail()
    finally:
        kill_left_over(processes)
