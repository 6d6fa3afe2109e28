"""`relayctl partners preview`: a partner's consent page for its compliance team, from a document not
registered yet or from the registry, rendered by the live page's own code, standalone, with PNGs
from a real Chromium, and nothing created or stored anywhere."""

from __future__ import annotations

import io
import json
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relayctl import preview
from relayctl.cli import main
from tests.browser import CHROMIUM, chromium_available
from tests.functional.conftest import Journey
from tests.partner_helpers import TestPartner

TABLES = ("RELAY_STATE_TABLE", "RELAY_AUDIT_TABLE", "RELAY_PARTNERS_TABLE")


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
def tables(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], dict[str, Any]]:
    """Every item of every table the relay writes, in a stable order."""

    def scan() -> dict[str, Any]:
        return {
            name: sorted(
                dynamodb_client.scan(TableName=resources[name])["Items"],
                key=lambda item: json.dumps(item, sort_keys=True, default=repr),
            )
            for name in TABLES
        }

    return scan


@pytest.fixture
def document_file(tmp_path: Path) -> Path:
    """A partner document not registered anywhere: two purposes on two datasets."""
    path = tmp_path / "acme-bank.partner.json"
    path.write_text(json.dumps(TestPartner().document(), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def need_chromium() -> None:
    if not chromium_available():
        message = f"Debian's Chromium is missing at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def main_text(html: str) -> str:
    """What a resident reads in the page's <main>: its text, whitespace folded."""
    main = html.split("<main>", 1)[1].split("</main>", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", main).split())


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_document_not_yet_registered_previews_every_purpose_in_both_languages_and_stores_nothing(
    relayctl: Callable[..., Run], tables: Callable[[], dict[str, Any]], document_file: Path, tmp_path: Path
) -> None:
    # GIVEN a partner document nobody registered
    before = tables()
    out = tmp_path / "preview"
    # WHEN the operator previews it
    run = relayctl("partners", "preview", "--document", str(document_file), "--out", str(out), "--no-png")
    # THEN each purpose's page is written in both languages, standalone, and no table changed
    assert run.status == 0, run.err
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "acme-bank.child-vaccination-record.en.html",
        "acme-bank.child-vaccination-record.ja.html",
        "acme-bank.loan-screening.en.html",
        "acme-bank.loan-screening.ja.html",
    ]
    assert tables() == before
    ja = (out / "acme-bank.loan-screening.ja.html").read_text(encoding="utf-8")
    for text in ("アクメ銀行", "住宅ローンの審査", "提供される項目", "合計所得金額", "10分"):
        assert text in ja
    assert "Items shared" in (out / "acme-bank.loan-screening.en.html").read_text(encoding="utf-8")
    assert 'href="acme-bank.loan-screening.en.html"' in ja  # the language link opens the other file
    for page in out.iterdir():
        html = page.read_text(encoding="utf-8")
        assert "<style>" in html
        assert "<link" not in html
        assert not re.search(r"""(?:src|href|action)="(?:https?:)?//""", html), page.name
        assert "/static/" not in html


def test_one_purpose_in_one_language(
    relayctl: Callable[..., Run], document_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preview"
    run = relayctl(
        "partners", "preview", "--document", str(document_file), "--purpose", "loan-screening",
        "--lang", "en", "--out", str(out), "--no-png",
    )  # fmt: skip
    assert run.status == 0, run.err
    assert [path.name for path in out.iterdir()] == ["acme-bank.loan-screening.en.html"]
    # alone, the page has no language link to a file that is not there
    assert ".ja.html" not in (out / "acme-bank.loan-screening.en.html").read_text(encoding="utf-8")


def test_the_preview_is_the_page_residents_see(
    journey: Journey, relayctl: Callable[..., Run], tables: Callable[[], dict[str, Any]], tmp_path: Path
) -> None:
    # GIVEN a registered partner whose request a resident opened, in each language
    assert journey.push().status_code == 201
    live = {lang: journey.show_consent(lang).body.decode() for lang in ("ja", "en")}
    before = tables()
    # WHEN the operator previews that partner by id
    out = tmp_path / "preview"
    run = relayctl("partners", "preview", journey.partner.client_id, "--out", str(out), "--no-png")
    assert run.status == 0, run.err
    # THEN the resident read exactly what the preview shows, and the preview wrote nothing
    for lang in ("ja", "en"):
        shown = (out / f"acme-bank.loan-screening.{lang}.html").read_text(encoding="utf-8")
        assert main_text(shown) == main_text(live[lang])
    assert tables() == before


@pytest.mark.usefixtures("need_chromium")
def test_each_page_gets_a_png_from_a_real_chromium(
    relayctl: Callable[..., Run], document_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preview"
    run = relayctl(
        "partners", "preview", "--document", str(document_file), "--purpose", "loan-screening",
        "--out", str(out),
    )  # fmt: skip
    assert run.status == 0, run.err
    for lang in ("ja", "en"):
        width, height = png_size(out / f"acme-bank.loan-screening.{lang}.png")
        assert width == preview.VIEWPORT["width"]
        assert height > 600  # the whole page, not a blank frame
        assert f"acme-bank.loan-screening.{lang}.png" in run.out


def test_without_chromium_the_html_is_written_and_the_command_says_why_there_is_no_png(
    relayctl: Callable[..., Run], document_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preview, "CHROMIUM_CANDIDATES", ())
    monkeypatch.setenv("RELAYCTL_CHROMIUM", str(tmp_path / "no-chromium-here"))
    out = tmp_path / "preview"
    run = relayctl("partners", "preview", "--document", str(document_file), "--out", str(out))
    assert run.status == 1
    assert "Chromium was not found" in run.err
    assert "HTML pages are written" in run.err
    assert len(list(out.glob("*.html"))) == 4
    assert not list(out.glob("*.png"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--purpose", "no-such-purpose"], "has no purpose no-such-purpose (it has: loan-screening, "),
        (["acme-bank"], "one of them"),
    ],
)
def test_refusals_name_what_is_wrong_and_write_nothing(
    relayctl: Callable[..., Run], document_file: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    out = tmp_path / "preview"
    run = relayctl("partners", "preview", "--document", str(document_file), *argv, "--out", str(out))
    assert run.status == 1
    assert message in run.err
    assert not out.exists()
