"""`make run`'s launcher over real HTTP: it starts, serves /health and the JWKS, records itself for
relayctl, stops cleanly on Ctrl-C, and starts again the same way."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.integration.stack import (
    Launcher,
    free_port,
    get_json,
    launcher_command,
    relayctl_local,
    without_aws_environment,
)

pytestmark = pytest.mark.integration


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_launcher_serves_health_jwks_and_demo_partners_then_stops_cleanly(launcher: Launcher) -> None:
    # GIVEN the whole local stack started as `make run` starts it
    launcher.start()
    # WHEN /health and the JWKS are fetched over real HTTP
    status, headers, health = get_json(f"{launcher.api}/health")
    assert (status, health["status"], health["stage"]) == (200, "ok", "local")
    assert "x-fapi-interaction-id" in {name.lower() for name in headers}
    status, _, jwks = get_json(f"{launcher.api}/.well-known/jwks.json")
    assert status == 200
    assert [(key["kty"], key["alg"]) for key in jwks["keys"]] == [("EC", "ES256")]
    # AND the operator CLI finds the stack through its record
    listed = relayctl_local(launcher.state_dir, "partners", "list")
    assert listed.returncode == 0, listed.stderr
    assert "demo-bank" in listed.stdout
    assert "demo-health" in listed.stdout
    # THEN Ctrl-C stops everything: exit 0, ports free, record removed
    assert launcher.stop() == 0, launcher.output
    assert not port_in_use(launcher.port)
    assert not port_in_use(launcher.moto_port)
    assert not (launcher.state_dir / "stack.json").exists()
    after = relayctl_local(launcher.state_dir, "partners", "list")
    assert after.returncode == 1
    assert "no local stack is running" in after.stderr


def test_a_second_run_works_the_same(launcher: Launcher) -> None:
    launcher.start()
    first_kid = get_json(f"{launcher.api}/.well-known/jwks.json")[2]["keys"][0]["kid"]
    assert launcher.stop() == 0, launcher.output
    launcher.start()
    status, _, health = get_json(f"{launcher.api}/health")
    assert (status, health["status"]) == (200, "ok")
    # a fresh embedded AWS means a fresh signing key: nothing survives between runs
    assert get_json(f"{launcher.api}/.well-known/jwks.json")[2]["keys"][0]["kid"] != first_kid
    assert "demo-bank" in relayctl_local(launcher.state_dir, "partners", "list").stdout


def launch_and_wait(port: int, moto_port: int, state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run a launcher that is expected to refuse (and so to exit by itself)."""
    return subprocess.run(
        launcher_command(port, moto_port, free_port(), free_port(), state_dir),
        cwd=REPO_ROOT,
        env=without_aws_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_launcher_refuses_while_one_is_running(launcher: Launcher) -> None:
    launcher.start()
    second = launch_and_wait(free_port(), free_port(), launcher.state_dir)
    assert second.returncode == 1
    assert "already running" in second.stderr


def test_a_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = launch_and_wait(port, free_port(), tmp_path)
    assert run.returncode == 1
    assert f"port {port} (relay API) on 127.0.0.1 is in use" in run.stderr


def test_the_sandbox_portal_runs_with_the_stack_and_records_provisions(launcher: Launcher) -> None:
    # GIVEN the stack, with its record of the sandbox and of the relay's portal client identity
    launcher.start()
    stack = json.loads((launcher.state_dir / "stack.json").read_text(encoding="utf-8"))
    sandbox, env = stack["sandbox"], stack["environment"]
    # WHEN the demo service's authorize URL is opened
    browser = requests.Session()
    page = browser.get(sandbox["demo_authorize_url"], timeout=10)
    # THEN the card sign-in renders
    assert page.status_code == 200
    assert "マイナンバーカードでログイン" in page.text
    # AND a provision made through it, over mTLS with the relay's client certificate, is in the history
    session = re.search(r'name="session" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    browser.post(
        f"{sandbox['app_url']}/online-authorization-web/login",
        data={"session": session, "persona": "salaried", "pin": "1234", "action": "signin"},
        timeout=10,
    )
    done = browser.post(
        f"{sandbox['app_url']}/online-authorization-web/consent",
        data={"session": session, "action": "agree"},
        allow_redirects=False,
        timeout=10,
    )
    code = parse_qs(urlsplit(done.headers["Location"]).query)["code"][0]
    services = json.loads(env["RELAY_PORTAL_SERVICES"])
    sp = requests.Session()
    sp.trust_env = False
    sp.cert = (env["RELAY_PORTAL_CLIENT_CERT"], env["RELAY_PORTAL_CLIENT_KEY"])
    sp.verify = env["RELAY_PORTAL_CA_BUNDLE"]
    token = sp.post(
        env["RELAY_PORTAL_TOKEN_URL"],
        timeout=10,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": services["local_tax"],
            "redirect_uri": f"{launcher.api}/portal/callback",
        },
    ).json()["access_token"]
    tid = f"TL-00000001-{time.strftime('%y%m%d%H%M%S')}-0001"
    sp.post(
        env["RELAY_PORTAL_REQUEST_URL"],
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={
            "commonHeader": {
                "telegramId": tid,
                "telegramType": "IFA0301-R01",
                "mode": "1",
                "processId": "",
                "errorCode": "",
            },
            "selfProvisionDataReqInfo": {"inquiryCondition": f"Date={time.strftime('%Y%m%d')}"},
        },
    ).raise_for_status()
    history = browser.get(f"{sandbox['app_url']}/sandbox/history", timeout=10)
    assert "myna-relay（所得・個人住民税）" in history.text
    assert "地方税関係情報" in history.text
