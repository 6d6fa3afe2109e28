"""The resident's browser, reduced to what a journey needs: cookies, redirects and submitting the
forms the pages show (hidden fields included), pressing a button by its value. No JavaScript; the
relay's and the sandbox's pages need none. Real-browser journeys are in tests/e2e."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

TIMEOUT_S = 30  # the relay's callback talks to the portal before it answers


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value)


class _Forms(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = Form(
                action=urljoin(self.base, attributes.get("action", "")),
                method=attributes.get("method", "get").lower(),
            )
            self.forms.append(self._open)
        elif self._open is not None and tag == "input" and attributes.get("type") == "hidden":
            self._open.fields[attributes.get("name", "")] = attributes.get("value", "")
        elif self._open is not None and tag == "button" and attributes.get("type", "submit") == "submit":
            self._open.buttons.append((attributes.get("name", ""), attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


@dataclass
class Page:
    url: str
    status: int
    text: str

    def forms(self) -> list[Form]:
        parser = _Forms(self.url)
        parser.feed(self.text)
        return parser.forms


class Resident:
    """Follows redirects until one leaves for ``partner_redirect_uri``: that URL is what the
    partner's callback would receive, returned by ``left_for_partner``."""

    def __init__(self, partner_redirect_uri: str) -> None:
        self.partner_redirect_uri = partner_redirect_uri
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only; no proxy
        self.left_for_partner: str | None = None

    def open(self, url: str) -> Page:
        return self._follow(self.session.get(url, timeout=TIMEOUT_S, allow_redirects=False))

    def press(self, page: Page, button: str, **fields: str) -> Page:
        """Submit the form holding the button whose value is ``button``, with ``fields`` filled in."""
        for form in page.forms():
            for name, value in form.buttons:
                if value == button:
                    data = {**form.fields, **fields, name: value}
                    assert form.method == "post", form
                    answer = self.session.post(
                        form.action, data=data, timeout=TIMEOUT_S, allow_redirects=False
                    )
                    return self._follow(answer)
        raise AssertionError(f"no button {button!r} on {page.url} ({page.status}):\n{page.text[:2000]}")

    def _follow(self, answer: requests.Response) -> Page:
        for _ in range(10):
            location = answer.headers.get("Location")
            if answer.status_code not in (301, 302, 303) or location is None:
                return Page(answer.url, answer.status_code, answer.text)
            target = urljoin(answer.url, location)
            if target.startswith(self.partner_redirect_uri):
                self.left_for_partner = target
                return Page(target, answer.status_code, "")
            answer = self.session.get(target, timeout=TIMEOUT_S, allow_redirects=False)
        raise AssertionError(f"too many redirects, last {answer.url}")
