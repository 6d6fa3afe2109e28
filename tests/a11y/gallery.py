"""The relay's pages in a real browser, served by the real app: Chromium asks for
https://myna-relay.test/..., Playwright hands each request (method, path, headers with the cookies,
body) to the Chalice test client, and the app's answer (status, headers with its CSP and cookies,
body) goes back to Chromium as it is. The stylesheet comes the same way, from the app's own route;
the sandbox portal is a real server on loopback; a partner's redirect URI gets a stand-in page.

The gallery's pictures and index go to test-artifacts/gallery/, or to MYNA_GALLERY_DIR
(`make screenshots`: build/screenshots/).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO_ROOT
from tests.functional.conftest import ISSUER

GALLERY_VARIABLE = "MYNA_GALLERY_DIR"
PARTNER_PAGE = "<!doctype html><html lang='en'><head><title>Partner</title></head><body><main><h1>Partner callback</h1></main></body></html>"


def require_japanese_font() -> None:
    """Without a font for Japanese the pictures show boxes. Under CI (CI=true, where `.ci/run`
    installs fonts-noto-cjk) that fails the run; elsewhere it is a warning."""
    found = (
        subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True, check=False)
        if shutil.which("fc-list")
        else None
    )
    if found is not None and found.stdout.strip():
        return
    message = "no Japanese font (fc-list :lang=ja is empty): apt-get install fonts-noto-cjk"
    if os.environ.get("CI"):
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)


def gallery_dir() -> Path:
    configured = os.environ.get(GALLERY_VARIABLE)
    return Path(configured).resolve() if configured else REPO_ROOT / "test-artifacts" / "gallery"


@dataclass(frozen=True)
class Variant:
    """One resident's browser: its language (Accept-Language, as the pages choose) and its width."""

    lang: str
    device: str  # "desktop" or "phone"

    @property
    def width(self) -> int:
        return 1280 if self.device == "desktop" else 390

    @property
    def slug(self) -> str:
        return f"{self.lang}-{self.device}-{self.width}"

    def context_options(self) -> dict[str, Any]:
        locale = {"ja": "ja-JP", "en": "en-US"}[self.lang]
        if self.device == "desktop":
            return {"locale": locale, "viewport": {"width": 1280, "height": 900}}
        return {
            "locale": locale,
            "viewport": {"width": 390, "height": 844},
            "device_scale_factor": 2,
            "is_mobile": True,
            "has_touch": True,
        }


VARIANTS = tuple(Variant(lang, device) for lang in ("ja", "en") for device in ("desktop", "phone"))


def _header_value(value: str | list[str]) -> str:
    # Playwright splits Set-Cookie on newlines into one header each
    return "\n".join(value) if isinstance(value, list) else value


class RelayInBrowser:
    """Routes a browser context's requests for the relay's origin to the Chalice test client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.partner_requests: list[str] = []

    def attach(self, context: Any) -> None:
        context.route(f"{ISSUER}/**", self._serve)
        context.route("https://*.example/**", self._partner)

    def _serve(self, route: Any) -> None:
        request = route.request
        url = urlsplit(request.url)
        headers = {k: v for k, v in request.all_headers().items() if not k.startswith(":")}
        answer = self.client.http.request(
            request.method,
            url.path + (f"?{url.query}" if url.query else ""),
            headers=headers,
            body=request.post_data_buffer or b"",
        )
        route.fulfill(
            status=answer.status_code,
            headers={k: _header_value(v) for k, v in answer.headers.items()},
            body=answer.body,
        )

    def _partner(self, route: Any) -> None:
        self.partner_requests.append(route.request.url)
        route.fulfill(status=200, headers={"Content-Type": "text/html; charset=utf-8"}, body=PARTNER_PAGE)


@dataclass
class Shot:
    page: str  # what the resident sees, in English ("Interstitial: Demo Bank - Mortgage loan screening")
    slug: str  # file name part ("interstitial-demo-bank-loan-screening")
    variant: Variant
    status: int
    path: str
    picture: str = ""
    violations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Gallery:
    directory: Path
    axe_script: Path | None
    shots: list[Shot] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Starts empty: the pictures of an earlier run (a page since renamed) would mislead."""
        for variant in VARIANTS:
            for stale in self.directory.glob(f"*.{variant.slug}.png"):
                stale.unlink()

    def take(self, page: Any, name: str, slug: str, variant: Variant, status: int) -> Shot:
        """The page as it is now: a full-page picture, what axe finds in it, and whether it fits
        the width (no sideways scrolling)."""
        from tests.a11y.axe import violations

        page.wait_for_load_state("load")
        shot = Shot(name, slug, variant, status, urlsplit(page.url).path)
        shot.picture = f"{slug}.{variant.slug}.png"
        self.directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.directory / shot.picture), full_page=True)
        if self.axe_script is not None:
            shot.violations = violations(page, self.axe_script)
        if not page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"):
            shot.violations.append({"id": "scrolls-sideways", "impact": "serious", "help": "", "nodes": []})
        self.shots.append(shot)
        return shot

    def write_index(self) -> Path:
        figures = []
        for shot in self.shots:
            language = {"ja": "Japanese (日本語)", "en": "English"}[shot.variant.lang]
            caption = (
                f"{shot.page} — {language} — {shot.variant.width} px {shot.variant.device} "
                f"— HTTP {shot.status} {shot.path}"
            )
            found = (
                "axe: no violations"
                if not shot.violations
                else "axe: " + ", ".join(v["id"] for v in shot.violations)
            )
            figures.append(
                f'<figure id="{html.escape(shot.picture)}"><figcaption>{html.escape(caption)}<br>'
                f"<small>{html.escape(found)}</small></figcaption>"
                f'<a href="{html.escape(shot.picture)}"><img src="{html.escape(shot.picture)}" '
                f'alt="{html.escape(caption)}" loading="lazy" width="{min(shot.variant.width, 640)}"></a></figure>'
            )
        index = self.directory / "index.html"
        index.write_text(
            "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<title>myna-relay: the resident's pages</title><style>"
            "body{font-family:system-ui,'Noto Sans CJK JP',sans-serif;margin:1rem}"
            "figure{display:inline-block;vertical-align:top;margin:0 1rem 2rem 0;max-width:660px}"
            "img{border:1px solid #999;height:auto;max-width:100%}</style></head><body><main>"
            f"<h1>myna-relay: every page a resident can see ({len(self.shots)} pictures)</h1>"
            + "\n".join(figures)
            + "</main></body></html>\n",
            encoding="utf-8",
        )
        (self.directory / "axe.json").write_text(
            json.dumps({shot.picture: shot.violations for shot in self.shots}, ensure_ascii=False, indent=1),
            encoding="utf-8",
        )
        return index


@contextmanager
def browsing(browser: Any, relay: RelayInBrowser, variant: Variant) -> Iterator[Any]:
    context = browser.new_context(base_url=ISSUER, **variant.context_options())
    relay.attach(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()
