"""The operator CLI against moto: each command, and each refusal with its message and exit status."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relayctl.cli import main
from tests.conftest import DEMO_PARTNERS, public_jwk


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err


@pytest.fixture
def relayctl(resources: dict[str, str]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        status = main(["--stage", "test", *argv], out=out, err=err)
        return Run(status, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], str]:
    def write(name: str, data: Any) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return str(path)

    return write


def test_register_then_list_and_show(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    registered = relayctl("partners", "register", write_json("p.json", partner_document()))
    assert registered.status == 0, registered.err
    assert "registered partner acme-bank" in registered.out
    listed = relayctl("partners", "list")
    assert "acme-bank" in listed.out
    assert "loan-screening" in listed.out
    shown = json.loads(relayctl("partners", "show", "acme-bank").out)
    assert shown["document"]["redirect_uris"] == ["https://bank.example/callback"]
    assert shown["version"] == 1


def test_the_demo_partner_registers_in_the_test_stage(relayctl: Callable[..., Run]) -> None:
    assert relayctl("partners", "register", str(DEMO_PARTNERS / "demo-bank.partner.json")).status == 0
    assert [row["id"] for row in json.loads(relayctl("partners", "list", "--json").out)] == ["demo-bank"]


def test_an_invalid_document_names_each_field_and_writes_nothing(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    bad = partner_document(redirect_uris=["http://bank.example/cb"], webhook_url="ftp://x")
    run = relayctl("partners", "register", write_json("bad.json", bad))
    assert run.status == 1
    assert "  - redirect_uris: " in run.err
    assert "  - webhook_url: " in run.err
    assert relayctl("partners", "list").out.strip() == "no partners registered"


def test_registering_an_existing_partner_is_refused(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    path = write_json("p.json", partner_document())
    relayctl("partners", "register", path)
    again = relayctl("partners", "register", path)
    assert again.status == 1
    assert "already registered" in again.err


def test_update_replaces_an_existing_partner(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    relayctl("partners", "register", write_json("p.json", partner_document()))
    updated = partner_document(names={"ja": "新銀行", "en": "New Bank"})
    assert relayctl("partners", "register", "--update", write_json("u.json", updated)).status == 0
    assert json.loads(relayctl("partners", "show", "acme-bank").out)["name_en"] == "New Bank"


@pytest.mark.parametrize("command", ["show", "disable", "enable"])
def test_an_unknown_partner_id_is_a_clear_error(relayctl: Callable[..., Run], command: str) -> None:
    run = relayctl("partners", command, "nobody")
    assert run.status == 1
    assert "unknown partner: no partner is registered as 'nobody'" in run.err


def test_disable_and_enable(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    relayctl("partners", "register", write_json("p.json", partner_document()))
    # THEN the output says the bound within which the service refuses it everywhere
    assert relayctl("partners", "disable", "acme-bank").out.strip() == (
        "partner acme-bank is disabled; every warm container of the service sees it within 30 s"
        " (its partner cache)"
    )
    assert json.loads(relayctl("partners", "show", "acme-bank").out)["enabled"] is False
    relayctl("partners", "enable", "acme-bank")
    assert json.loads(relayctl("partners", "show", "acme-bank").out)["enabled"] is True


def test_rotate_keys_reports_added_and_removed_kids(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    relayctl("partners", "register", write_json("p.json", partner_document()))
    jwks = {
        "keys": [public_jwk("sig", "ES256", "acme-sig-2"), public_jwk("enc", "ECDH-ES+A256KW", "acme-enc-2")]
    }
    run = relayctl("partners", "rotate-keys", "acme-bank", write_json("jwks.json", jwks))
    assert run.status == 0, run.err
    assert "added ['acme-enc-2', 'acme-sig-2'], removed ['acme-enc-1', 'acme-sig-1']" in run.out
    assert "acme-sig-2 (sig ES256)" in relayctl("partners", "show", "acme-bank").out


def test_rotating_to_an_invalid_jwks_keeps_the_old_keys(
    relayctl: Callable[..., Run], write_json: Callable[[str, Any], str], partner_document: Callable[..., Any]
) -> None:
    relayctl("partners", "register", write_json("p.json", partner_document()))
    run = relayctl("partners", "rotate-keys", "acme-bank", write_json("jwks.json", {"keys": []}))
    assert run.status == 1
    assert "jwks.keys: " in run.err
    assert json.loads(relayctl("partners", "show", "acme-bank").out)["version"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON (line 1"), (b"\xff\xfe", "is not UTF-8 text")],
)
def test_unreadable_files_are_clear_errors(
    relayctl: Callable[..., Run], tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = relayctl("partners", "register", str(path))
    assert run.status == 1
    assert message in run.err


def test_a_missing_file_is_a_clear_error(relayctl: Callable[..., Run], tmp_path: Path) -> None:
    run = relayctl("partners", "register", str(tmp_path / "absent.json"))
    assert run.status == 1
    assert "cannot read" in run.err


def test_without_a_stage_the_cli_refuses_to_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_STAGE", raising=False)
    err = io.StringIO()
    assert main(["partners", "list"], out=io.StringIO(), err=err) == 1
    assert "--stage dev|prod" in err.getvalue()


def test_local_without_a_running_stack_says_to_start_one(tmp_path: Path) -> None:
    err = io.StringIO()
    status = main(["--local", "--state-dir", str(tmp_path), "partners", "list"], out=io.StringIO(), err=err)
    assert status == 1
    assert "no local stack is running" in err.getvalue()
    assert "make run" in err.getvalue()


def test_local_with_a_dead_stack_says_it_does_not_answer(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(
        json.dumps({"aws_endpoint_url": "http://127.0.0.1:9", "region": "ap-northeast-1"}), encoding="utf-8"
    )
    err = io.StringIO()
    status = main(["--local", "--state-dir", str(tmp_path), "partners", "list"], out=io.StringIO(), err=err)
    assert status == 1
    assert "does not answer at http://127.0.0.1:9" in err.getvalue()


def test_dev_refuses_a_local_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8010")
    err = io.StringIO()
    assert main(["--stage", "dev", "partners", "list"], out=io.StringIO(), err=err) == 1
    assert "must reach real AWS" in err.getvalue()
