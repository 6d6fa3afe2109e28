"""The sandbox over real HTTP on loopback: browser pages, mutual TLS on the sp side, notices posted
to a live receiver, the history page, and the control routes."""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sandbox.portal import ServiceRegistration
from sandbox.server import SandboxServer
from sandbox.tls import issue_client_certificate, make_certificate_authority
from tests.sandbox.conftest import request_body, result_body, telegram_id

pytestmark = pytest.mark.integration


class Receiver:
    """A live stand-in for the relay's notice endpoint."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures_first = 0
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @Request.application  # type: ignore[arg-type]
    def wsgi(self, request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        self.received.append(body)
        if self.failures_first > 0:
            self.failures_first -= 1
            return Response("unavailable", status=503)
        header = {**body["commonHeader"], "telegramType": "IFA0302-S01"}
        return Response(json.dumps({"commonHeader": header}), mimetype="application/json")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    live = Receiver()
    yield live
    live.stop()


@pytest.fixture
def sandbox(tmp_path: Path, receiver: Receiver) -> Iterator[SandboxServer]:
    service = ServiceRegistration(
        client_id="SP00000001_AA0001",
        name="myna-relay（所得・個人住民税）",
        redirect_uri=f"{receiver.url}/portal/callback",
        notice_url=f"{receiver.url}/portal/notice",
        items=("地方税関係情報",),
    )
    server = SandboxServer((service,), tls_dir=tmp_path / "tls", deterministic=True).start()
    yield server
    server.stop()


def client_session(server: SandboxServer) -> requests.Session:
    assert server.tls is not None
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override session.verify
    session.cert = (str(server.tls.client_cert), str(server.tls.client_key))
    session.verify = str(server.tls.ca_cert)
    return session


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert match, f"no hidden {name}"
    return match.group(1)


def sign_in_and_agree(server: SandboxServer, persona: str = "salaried") -> dict[str, str]:
    """What the resident's browser does; answers the query of the final redirect."""
    browser = requests.Session()
    service = next(iter(server.portal.services.values()))
    page = browser.get(
        server.endpoints()["authorize_url"],
        params={
            "response_type": "code",
            "client_id": service.client_id,
            "redirect_uri": service.redirect_uri,
            "state": "s-1",
            "login_type": "0",
        },
        timeout=10,
    )
    assert page.status_code == 200
    session = hidden(page.text, "session")
    consent = browser.post(
        f"{server.app_url}/online-authorization-web/login",
        data={"session": session, "persona": persona, "pin": "1234", "action": "signin"},
        timeout=10,
    )
    assert consent.status_code == 200, consent.text
    done = browser.post(
        f"{server.app_url}/online-authorization-web/consent",
        data={"session": session, "action": "agree"},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 303
    return {k: v[0] for k, v in parse_qs(urlsplit(done.headers["Location"]).query).items()}


def test_the_sign_in_page_is_japanese_accessible_and_locked_down(sandbox: SandboxServer) -> None:
    service = next(iter(sandbox.portal.services.values()))
    page = requests.get(
        sandbox.endpoints()["authorize_url"],
        params={
            "response_type": "code",
            "client_id": service.client_id,
            "redirect_uri": service.redirect_uri,
            "state": "s",
            "login_type": "0",
        },
        timeout=10,
    )
    assert page.status_code == 200
    assert '<html lang="ja">' in page.text
    assert "マイナンバーカードでログイン" in page.text
    assert '<label for="pin">' in page.text
    assert "山田 太郎（会社員）" in page.text
    assert "script" not in page.text.lower()
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_a_whole_retrieval_over_mutual_tls(sandbox: SandboxServer, receiver: Receiver) -> None:
    # GIVEN a resident who signed in and agreed
    query = sign_in_and_agree(sandbox)
    assert query["state"] == "s-1"
    sp = client_session(sandbox)
    endpoints = sandbox.endpoints()
    service = next(iter(sandbox.portal.services.values()))
    # WHEN the API user exchanges the code over mTLS with exactly the observed form
    token = sp.post(
        endpoints["token_url"],
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": service.redirect_uri,
            "client_id": service.client_id,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}", "Content-Type": "application/json"}
    tid = telegram_id()
    started = sp.post(endpoints["request_url"], data=request_body(tid), headers=bearer, timeout=10)
    assert started.status_code == 200, started.text
    process_id = started.json()["commonHeader"]["processId"]
    # AND the portal sends its completion notice to the registered URL
    delivered = requests.post(f"{sandbox.app_url}/sandbox/notices/deliver", timeout=10).json()["attempted"]
    assert [n["delivered"] for n in delivered] == [True]
    assert receiver.received[0]["commonHeader"]["processId"] == process_id
    # THEN the result carries the data as a JSON string
    result = sp.post(endpoints["result_url"], data=result_body(tid, process_id), headers=bearer, timeout=10)
    assert result.status_code == 200
    data = json.loads(result.json()["selfPersonalDataProvisionInfo"]["selfPersonalData"])
    assert "神奈川県川崎市" in data[0]
    # AND the provision is in the portal's own history, as JSON and on the page
    records = requests.get(f"{sandbox.app_url}/sandbox/history.json", timeout=10).json()["records"]
    assert [(r["outcome"], r["provider"]) for r in records] == [("provided", "神奈川県川崎市")]
    page = requests.get(f"{sandbox.app_url}/sandbox/history", timeout=10).text
    assert "情報提供等記録" in page
    assert process_id in page or "神奈川県川崎市" in page


def test_the_sp_side_refuses_a_client_without_a_certificate(sandbox: SandboxServer) -> None:
    assert sandbox.tls is not None
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(sandbox.endpoints()["token_url"], data={}, verify=str(sandbox.tls.ca_cert), timeout=10)


def test_the_sp_side_refuses_a_certificate_from_another_ca(sandbox: SandboxServer, tmp_path: Path) -> None:
    assert sandbox.tls is not None
    foreign = issue_client_certificate(
        tmp_path, "foreign", "SP00000001", make_certificate_authority("Foreign CA")
    )
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            sandbox.endpoints()["token_url"],
            data={},
            cert=(str(foreign[0]), str(foreign[1])),
            verify=str(sandbox.tls.ca_cert),
            timeout=10,
        )


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")
def test_the_sp_side_serves_tls_1_2_or_newer_only(sandbox: SandboxServer) -> None:
    assert sandbox.tls is not None
    context = ssl.create_default_context(cafile=str(sandbox.tls.ca_cert))
    context.load_cert_chain(sandbox.tls.client_cert, sandbox.tls.client_key)
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.minimum_version = ssl.TLSVersion.TLSv1
    host, port = urlsplit(sandbox.sp_url).hostname, urlsplit(sandbox.sp_url).port
    import socket

    with socket.create_connection((host, port), timeout=5) as raw, pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname=host)


def test_a_certificate_of_the_sandbox_ca_for_another_provider_is_invalid_client(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    query = sign_in_and_agree(sandbox)
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from cryptography.x509 import load_pem_x509_certificate

    assert sandbox.tls is not None
    ca_key = load_pem_private_key((sandbox.tls.ca_cert.parent / "ca.key").read_bytes(), password=None)
    ca = (load_pem_x509_certificate(sandbox.tls.ca_cert.read_bytes()), ca_key)
    other = issue_client_certificate(tmp_path, "other", "SP99999999", ca)  # type: ignore[arg-type]
    service = next(iter(sandbox.portal.services.values()))
    answer = requests.post(
        sandbox.endpoints()["token_url"],
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": service.redirect_uri,
            "client_id": service.client_id,
        },
        cert=(str(other[0]), str(other[1])),
        verify=str(sandbox.tls.ca_cert),
        timeout=10,
    )
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")


def test_notices_are_retried_until_the_receiver_answers(sandbox: SandboxServer, receiver: Receiver) -> None:
    receiver.failures_first = 1
    query = sign_in_and_agree(sandbox)
    sp = client_session(sandbox)
    service = next(iter(sandbox.portal.services.values()))
    token = sp.post(
        sandbox.endpoints()["token_url"],
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": service.redirect_uri,
            "client_id": service.client_id,
        },
        timeout=10,
    ).json()
    sp.post(
        sandbox.endpoints()["request_url"],
        data=request_body(telegram_id()),
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    first = requests.post(f"{sandbox.app_url}/sandbox/notices/deliver", timeout=10).json()["attempted"]
    assert first[0]["last_error"] == "HTTP 503"
    requests.post(f"{sandbox.app_url}/sandbox/clock/advance", json={"seconds": 2}, timeout=10)
    second = requests.post(f"{sandbox.app_url}/sandbox/notices/deliver", timeout=10).json()["attempted"]
    assert (second[0]["delivered"], second[0]["attempts"]) == (True, 2)
    assert len(receiver.received) == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"scenario": "nonsense"}, 400),
        ({"scenario": "error-code", "persona": "nobody"}, 400),
        ({"scenario": "error-code", "times": 0}, 400),
        ({"scenario": "error-code", "persona": "salaried"}, 200),
    ],
)
def test_scenario_control_validates_its_input(
    sandbox: SandboxServer, body: dict[str, Any], status: int
) -> None:
    assert requests.post(f"{sandbox.app_url}/sandbox/scenario", json=body, timeout=10).status_code == status


def test_an_oversized_body_is_refused(sandbox: SandboxServer) -> None:
    sp = client_session(sandbox)
    answer = sp.post(sandbox.endpoints()["request_url"], data=b"x" * 70_000, timeout=10)
    assert answer.status_code == 413


def test_token_needs_form_encoding(sandbox: SandboxServer) -> None:
    answer = client_session(sandbox).post(
        sandbox.endpoints()["token_url"], json={"grant_type": "x"}, timeout=10
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_the_sp_side_keeps_connections_alive(sandbox: SandboxServer) -> None:
    """HTTP/1.1 persistent connections, as the portal's hosts speak it: the relay's client sends a
    flow's portal calls over one mutual-TLS connection, also after an answer that left the request
    body unread (the 413)."""
    import urllib3

    assert sandbox.tls is not None
    endpoints = {name: urlsplit(url) for name, url in sandbox.endpoints().items()}
    pool = urllib3.HTTPSConnectionPool(
        endpoints["token_url"].hostname,
        endpoints["token_url"].port,
        maxsize=1,
        block=True,
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=str(sandbox.tls.ca_cert),
        cert_file=str(sandbox.tls.client_cert),
        key_file=str(sandbox.tls.client_key),
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answers = [
        pool.request("POST", endpoints["token_url"].path, body=b"grant_type=x", headers=form),
        pool.request("POST", endpoints["request_url"].path, body=b"x" * 70_000),
        pool.request("POST", endpoints["token_url"].path, json={"grant_type": "x"}),
        pool.request("POST", endpoints["token_url"].path, body=b"grant_type=x", headers=form),
    ]
    assert [answer.status for answer in answers] == [400, 413, 400, 400]
    assert [answer.headers.get("Connection") for answer in answers] == [None] * 4
    assert pool.num_connections == 1
    pool.close()
