"""``relayctl partners preview``: a partner's consent interstitial exactly as its customers will see
it, for the partner's compliance team to approve before the partner is registered (docs/partners.md).

The page comes from the service's own templates and rendering code (``chalicelib.page_rendering``,
as ``GET /authorize`` uses it), filled from the partner document alone: no flow is created and
nothing is stored or sent anywhere. Each page is written as standalone HTML (the stylesheet inlined
as a data: URL, no request to any server) and as a PNG taken by a real Chromium, which is refused
any request that is not the file itself. Without Chromium (or Playwright) the HTML is still written
and the command says why there is no PNG.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.domain.partners import Partner, Purpose
from chalicelib.page_rendering import LANGS, Lang, other_language, render_consent

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# A phone, as most residents reach Mynaportal; the PNG is the whole page, however long.
VIEWPORT = {"width": 430, "height": 900}


class PreviewError(RuntimeError):
    """The pages cannot be previewed as asked (a purpose the partner does not have)."""


class NoScreenshots(RuntimeError):
    """No PNG could be taken (no Chromium, no Playwright); the message says what to install."""


@dataclass
class PreviewResult:
    html: list[Path] = field(default_factory=list)
    png: list[Path] = field(default_factory=list)
    no_png: str | None = None  # why no PNG was taken, if one was asked for


def page_name(partner: Partner, purpose: Purpose, lang: Lang) -> str:
    return f"{partner.id}.{purpose.id}.{lang}"


def chosen_purposes(partner: Partner, purpose_ids: Sequence[str] | None) -> list[Purpose]:
    if not purpose_ids:
        return list(partner.purposes)
    chosen = []
    for purpose_id in purpose_ids:
        purpose = partner.purpose(purpose_id)
        if purpose is None:
            known = ", ".join(p.id for p in partner.purposes)
            raise PreviewError(f"partner {partner.id} has no purpose {purpose_id} (it has: {known})")
        chosen.append(purpose)
    return chosen


def render_previews(
    partner: Partner, purpose_ids: Sequence[str] | None, langs: Sequence[Lang] | None
) -> dict[str, str]:
    """Page name -> standalone HTML of the interstitial, per purpose and language. The language
    link leads to the other language's file when that one is rendered too; the form and the
    receipt link lead nowhere (a preview has no flow)."""
    languages = list(langs or LANGS)
    pages = {}
    for purpose in chosen_purposes(partner, purpose_ids):
        for lang in languages:
            other = other_language(lang)
            pages[page_name(partner, purpose, lang)] = render_consent(
                partner,
                purpose,
                lang,
                request_uri="",
                csrf_token="",
                receipt_url="#",
                decision_url="#",
                switch_url=f"{page_name(partner, purpose, other)}.html" if other in languages else None,
            )
    return pages


def find_chromium() -> str | None:
    configured = os.environ.get("RELAYCTL_CHROMIUM")
    for candidate in ([configured] if configured else []) + list(CHROMIUM_CANDIDATES):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def write_previews(
    partner: Partner,
    out_dir: Path,
    *,
    purpose_ids: Sequence[str] | None = None,
    langs: Sequence[Lang] | None = None,
    png: bool = True,
) -> PreviewResult:
    """Write every page's HTML, then (``png``) its screenshot, or say why there is none."""
    pages = render_previews(partner, purpose_ids, langs)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = PreviewResult()
    for name, html in pages.items():
        path = out_dir / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        result.html.append(path)
    if png:
        try:
            result.png = screenshot(result.html)
        except NoScreenshots as exc:
            result.no_png = str(exc)
    return result


def screenshot(pages: list[Path]) -> list[Path]:
    """A full-page PNG beside each HTML page. Playwright's sync API refuses to start in a thread
    that already runs an event loop (a caller's own Playwright, a notebook), so it runs in a thread
    of its own; its errors come back here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-browser") as pool:
        return pool.submit(_screenshot, pages).result()


def _screenshot(pages: list[Path]) -> list[Path]:
    chromium = find_chromium()
    if chromium is None:
        raise NoScreenshots(
            "no PNG written: Chromium was not found (looked for $RELAYCTL_CHROMIUM, "
            + ", ".join(CHROMIUM_CANDIDATES)
            + "); install it (apt-get install chromium) or set RELAYCTL_CHROMIUM"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise NoScreenshots(
            "no PNG written: Playwright for Python is not installed (pip install -r requirements-dev.txt)"
        ) from None
    written: list[Path] = []
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_FLAGS), headless=True
        )
        try:
            for html in pages:
                context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                page = context.new_page()
                own = html.resolve().as_uri()

                def only_the_file(route, request, own=own) -> None:  # type: ignore[no-untyped-def]
                    if request.url == own or request.url.startswith("data:"):
                        route.continue_()
                    else:
                        refused.append(request.url)
                        route.abort()

                page.route("**/*", only_the_file)
                page.goto(own, wait_until="load")
                target = html.with_suffix(".png")
                page.screenshot(path=str(target), full_page=True)
                context.close()
                written.append(target)
        finally:
            browser.close()
    if refused:
        raise PreviewError(f"the page asked for something besides itself: {sorted(set(refused))}")
    return written
