"""The partner kit and the demo bank against the whole local stack (`make run`'s launcher) over real
HTTP: PAR, the resident's browser steps through the interstitial and the sandbox portal, the token,
the pickup and the sealed payload, all as a partner would do them; and the kit keeping a signed tree
head of the audit log and proving a later one extends it."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from partner_kit import DeliveryGone, InconsistentLog, PartnerKeys, RelayClient
from tests.conftest import REPO_ROOT
from tests.fakes import ShiftedClock
from tests.integration.stack import Launcher

pytestmark = pytest.mark.integration

DEMO_BANK_KEYS = REPO_ROOT / "local" / "partners" / "demo-bank.DEMO-ONLY-private-jwks.json"


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def resident_agrees(
    browser: requests.Session, authorize_url: str, issuer: str, persona: str = "salaried"
) -> str:
    """The resident's part, as in tests/integration/test_authlib_client.py: the relay's interstitial,
    the sandbox portal's sign-in and consent, back through the relay. The partner redirect URL."""
    page = browser.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    query = query_of(authorize_url)
    portal = browser.post(
        f"{issuer}/authorize/decision",
        data={"request_uri": query["request_uri"], "csrf_token": csrf, "action": "continue"},
        allow_redirects=False,
        timeout=10,
    )
    assert portal.status_code == 303, portal.text
    sign_in = browser.get(portal.headers["Location"], timeout=10)
    session_id = re.search(r'name="session" value="([^"]+)"', sign_in.text).group(1)  # type: ignore[union-attr]
    sandbox = f"{urlsplit(portal.headers['Location']).scheme}://{urlsplit(portal.headers['Location']).netloc}"
    browser.post(
        f"{sandbox}/online-authorization-web/login",
        data={"session": session_id, "persona": persona, "pin": "1234", "action": "signin"},
        timeout=10,
    )
    agreed = browser.post(
        f"{sandbox}/online-authorization-web/consent",
        data={"session": session_id, "action": "agree"},
        allow_redirects=False,
        timeout=10,
    )
    back = browser.get(agreed.headers["Location"], allow_redirects=False, timeout=30)  # the relay's callback
    assert back.status_code == 303, back.text
    return str(back.headers["Location"])


def stack_record(launcher: Launcher) -> dict[str, Any]:
    return dict(json.loads((launcher.state_dir / "stack.json").read_text(encoding="utf-8")))


def test_the_kit_runs_the_whole_flow_and_opens_the_income(launcher: Launcher) -> None:
    # GIVEN the local stack, with the demo bank registered on the port its app really runs on
    launcher.start()
    bank_url = stack_record(launcher)["demo"]["bank"]
    redirect_uri = f"{bank_url.rstrip('/')}/callback"
    kit = RelayClient(launcher.api, "demo-bank", PartnerKeys.load(DEMO_BANK_KEYS), session=loopback_session())

    # WHEN the kit pushes the request and the resident agrees
    pending = kit.start(redirect_uri, "loan-screening", "local_tax")
    assert pending.authorize_url.startswith(f"{launcher.api}/authorize?")
    redirect = resident_agrees(loopback_session(), pending.authorize_url, launcher.api)
    assert redirect.startswith(redirect_uri + "?")

    # THEN the kit redeems the code, waits for the delivery and opens it
    delivery = kit.finish(pending, query_of(redirect))
    assert delivery.delivery_id
    sealed = kit.pick_up(delivery, wait_s=60)
    claims = kit.open(sealed)
    assert claims["aud"] == "demo-bank"
    assert claims["purpose"] == "loan-screening"
    data = claims["data"]
    assert data["dataset"] == "local_tax"
    by_year = {record["fiscal_year"]: record for record in data["records"]}
    assert by_year[2026]["total_income"] == 3680000
    assert by_year[2026]["salary_revenue"] == 5200000
    assert data["derived"] == {"annual_income_at_least": False}
    # AND the delivery was handed over once
    with pytest.raises(DeliveryGone) as gone:
        kit.pick_up(delivery, wait_s=0)
    assert gone.value.check == "delivery.picked_up"


def test_the_demo_bank_sends_the_resident_to_the_relay_and_shows_the_income(launcher: Launcher) -> None:
    # GIVEN the stack and its demo bank app
    launcher.start()
    bank_url = stack_record(launcher)["demo"]["bank"]
    browser = loopback_session()
    # WHEN the resident opens the bank's page
    home = browser.get(bank_url, timeout=10)
    assert home.status_code == 200
    assert "デモ銀行" in home.text
    assert 'id="import-income"' in home.text
    assert "マイナポータルから所得情報を取り込む" in home.text
    # AND presses the button: the bank pushes the request and redirects to the relay's authorize URL
    start = browser.post(f"{bank_url.rstrip('/')}/start", allow_redirects=False, timeout=10)
    assert start.status_code == 303, start.text
    authorize_url = start.headers["Location"]
    assert authorize_url.startswith(f"{launcher.api}/authorize?")
    assert query_of(authorize_url)["client_id"] == "demo-bank"
    # THEN after the resident agrees, the bank's callback shows the released income
    redirect = resident_agrees(browser, authorize_url, launcher.api)
    result = browser.get(redirect, timeout=90)
    assert result.status_code == 200
    assert 'id="result"' in result.text, result.text
    assert "3,680,000円" in result.text
    assert "年収400万円以上: いいえ" in result.text


def released_income(kit: RelayClient, launcher: Launcher) -> dict[str, Any]:
    """One whole flow through the kit (as in the test above); the opened claims."""
    bank_url = stack_record(launcher)["demo"]["bank"]
    pending = kit.start(f"{bank_url.rstrip('/')}/callback", "loan-screening", "local_tax")
    redirect = resident_agrees(loopback_session(), pending.authorize_url, launcher.api)
    return kit.open(kit.pick_up(kit.finish(pending, query_of(redirect)), wait_s=60))


def checkpoint_now(launcher: Launcher) -> int:
    """Sign a checkpoint over every record so far: what `relayctl --local audit checkpoint` does (same
    table, KMS key, anchor bucket and issuer as the launched relay), with its clock moved past SETTLE
    instead of sleeping (a checkpoint covers only records older than 60 s). Its sequence number."""
    from chalicelib.adapters.dynamodb_audit import DynamoAuditLog
    from chalicelib.adapters.kms_signer import KmsSigner
    from chalicelib.adapters.s3_anchor import S3HeadAnchor
    from chalicelib.domain.checkpoints import SETTLE, CheckpointService
    from relayctl.target import local_target

    target = local_target(str(launcher.state_dir))
    clock = ShiftedClock()
    clock.advance(seconds=SETTLE.total_seconds() + 1)
    service = CheckpointService(
        store=DynamoAuditLog(target.dynamodb(), target.audit_table),
        signer=KmsSigner(target.kms(), target.signing_key),
        clock=clock,
        issuer=launcher.api,
        anchor=S3HeadAnchor(target.s3(), target.heads_bucket),
    )
    for _ in range(3):  # None: the launcher's own scheduled run committed that number first
        head = service.checkpoint()
        if head is not None:
            return head.seq
    pytest.fail("no checkpoint could be signed over the flow's records")


def test_the_kit_keeps_a_signed_head_and_proves_the_next_one_extends_it(launcher: Launcher) -> None:
    # GIVEN the stack, and a flow run through the kit whose audit records are now checkpointed
    launcher.start()
    kit = RelayClient(launcher.api, "demo-bank", PartnerKeys.load(DEMO_BANK_KEYS), session=loopback_session())
    released_income(kit, launcher)
    first_seq = checkpoint_now(launcher)
    # WHEN the kit fetches the latest signed tree head and keeps it
    kept = kit.latest_checkpoint()
    assert kept["seq"] >= first_seq
    assert kept["tree_size"] > 0
    assert kit.checkpoint(kept["seq"]) == kept
    # AND another flow is run and checkpointed
    released_income(kit, launcher)
    second_seq = checkpoint_now(launcher)
    # THEN the relay proves the newer head extends the kept one, and the kit returns it verified
    newer = kit.consistency(kept)
    assert newer["seq"] >= second_seq > kept["seq"]
    assert newer["tree_size"] > kept["tree_size"]
    assert kit.checkpoint(newer["seq"]) == newer
    assert kit.consistency(kept, seq=newer["seq"]) == newer
    assert kit.consistency(newer, seq=newer["seq"]) == newer  # the same head: an empty proof
    # AND a kept head the relay never signed under that number (another root) is a fork
    other_root = kept["root"][:-2] + ("AA" if not kept["root"].endswith("AA") else "AQ")
    with pytest.raises(InconsistentLog) as forked:
        kit.consistency({**kept, "root": other_root})
    assert forked.value.kind == "fork"
