"""Every page a resident can see, in both languages and in every state it can show, reads as text
for people: no Python repr (a dict's bound method where a label should be), no unrendered markup,
no missing label, no empty heading. Rendered through chalicelib.page_rendering, the code the live
pages and relayctl's consent preview share."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from jinja2 import UndefinedError

from chalicelib.domain.audit import OUTCOMES, AuditEvent, AuditRecord, outcome_key
from chalicelib.domain.datasets import DATASETS, DERIVED_CLAIMS
from chalicelib.domain.partners import Partner, Purpose, parse_partner_document
from chalicelib.page_rendering import (
    ERROR_KINDS,
    EVENT_LABELS,
    LANGS,
    OUTCOME_LABELS,
    TEMPLATES,
    TEXT,
    Lang,
    environment,
    error_context,
    label_keys,
    receipt_row,
    render_consent,
    render_html,
    resident_time,
)
from tests.conftest import REPO_ROOT

# What must never reach a resident: Python's representations and Jinja's own syntax.
LEAKS = (
    "<built-in",
    "<bound method",
    "object at 0x",
    "{'",
    "['",
    "[]",
    "None",
    "True",
    "False",
    "Undefined",
    "{{",
    "}}",
    "{%",
    "%}",
)
# Elements that must say something (a heading, a term, a column, a button).
REQUIRED_TEXT = ("title", "h1", "dt", "caption", "th", "button", "li")


class Visible(HTMLParser):
    """The page's text per element, as a resident (or a screen reader) gets it."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, list[str]]] = []
        self.elements: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in REQUIRED_TEXT:
            self.open.append((tag, []))

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1][0] == tag:
            name, parts = self.open.pop()
            self.elements.append((name, "".join(parts).strip()))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, parts in self.open:
            parts.append(data)


def assert_readable(html: str, where: str) -> None:
    for leak in LEAKS:
        assert leak not in html, f"{where}: {leak!r} on the page"
    page = Visible()
    page.feed(html)
    empty = [name for name, text in page.elements if not text]
    assert not empty, f"{where}: empty {empty}"
    assert any(name == "h1" for name, _ in page.elements), f"{where}: no heading"


def demo_partners() -> list[Partner]:
    return [
        parse_partner_document(json.loads(path.read_text(encoding="utf-8")), allow_loopback=True)
        for path in sorted((REPO_ROOT / "local" / "partners").glob("*.partner.json"))
    ]


def every_purpose() -> list[tuple[Partner, Purpose]]:
    """Each demo partner's purposes, and per dataset one purpose releasing every field and every
    derived answer (what a registered document may ask for)."""
    pairs = [(partner, purpose) for partner in demo_partners() for purpose in partner.purposes]
    partner = pairs[0][0]
    for dataset in DATASETS.values():
        purpose = Purpose.model_validate(
            {
                "id": f"all-{dataset.id}".replace("_", "-"),
                "titles": {"ja": f"{dataset.name_ja}の全項目", "en": f"All of {dataset.name_en}"},
                "dataset": dataset.id,
                "fields": [field.name for field in dataset.fields],
                "derived_claims": {
                    name: 1_000_000 for name, info in DERIVED_CLAIMS.items() if info.dataset == dataset.id
                },
                "data_life": "PT90M",
            }
        )
        pairs.append((partner, purpose))
    return pairs


def outcome_examples() -> list[str]:
    """Every outcome a record can carry; a family with a sample suffix."""
    return sorted(outcome + "E1234" if outcome.endswith(".") else outcome for outcome in OUTCOMES)


def record(event: AuditEvent, outcome: str, at: datetime) -> AuditRecord:
    return AuditRecord(
        record_id="r1",
        occurred_at=at,
        event=event,
        interaction_id="flow-1",
        requester_id="demo-bank",
        requester_name="デモ銀行（ローン審査）",
        dataset="local_tax",
        dataset_code=DATASETS["local_tax"].code,
        dataset_name_ja=DATASETS["local_tax"].name_ja,
        purpose_id="loan-screening",
        requested_at=at,
        outcome=outcome,
    )


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("partner", "purpose"), every_purpose(), ids=lambda value: getattr(value, "id", ""))
def test_the_interstitial_reads_as_text_for_people(partner: Partner, purpose: Purpose, lang: Lang) -> None:
    # GIVEN a registered purpose (or one asking for everything its dataset has)
    # WHEN its interstitial is rendered, as the live page and the preview do
    html = render_consent(
        partner,
        purpose,
        lang,
        request_uri="urn:ietf:params:oauth:request_uri:x",
        csrf_token="csrf",
        receipt_url="https://myna-relay.test/receipts/flow-1?e=1&t=t",
        decision_url="/authorize/decision",
        switch_url="?lang=en",
    )
    # THEN it names the items shared under their heading, and nothing of Python or Jinja shows
    assert_readable(html, f"consent {partner.id}/{purpose.id} {lang}")
    assert f"<dt>{TEXT[lang]['items']}</dt>" in html
    assert html.count("<li>") == len(purpose.fields) + len(purpose.derived_claims)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", ERROR_KINDS)
@pytest.mark.parametrize("check", [None, "request_uri"])
def test_every_error_page_reads_as_text_for_people(kind: str, lang: Lang, check: str | None) -> None:
    back = "/receipts/iid-1?e=1&t=x" if kind == "revoke" else None
    html = render_html(
        "error.html", lang, interaction_id="iid-1", check=check, **error_context(kind, lang, back_url=back)
    )
    assert_readable(html, f"error {kind} {lang}")
    assert TEXT[lang][f"error_{kind}"] in html
    # a refused revocation says so and leads back to the receipt, not "start again"
    if kind == "revoke":
        assert f"<h1>{TEXT[lang]['error_heading_revoke']}</h1>" in html
        assert TEXT[lang]["error_back_receipt"] in html
        assert TEXT[lang]["error_next"] not in html


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("revocable", [True, False])
@pytest.mark.parametrize("revoked", [True, False])
def test_the_receipt_reads_as_text_for_people_with_every_event_and_outcome(
    lang: Lang, revocable: bool, revoked: bool
) -> None:
    # GIVEN records of every kind of event and every outcome
    at = datetime(2026, 12, 6, 9, 18, 16, tzinfo=UTC)
    records = [record(event, "shown", at) for event in AuditEvent]
    records += [record(AuditEvent.FAILED, outcome, at) for outcome in outcome_examples()]
    # WHEN the receipt lists them
    html = render_html(
        "receipt.html",
        lang,
        switch_url="?e=1&t=t&lang=en",
        notice=TEXT[lang]["revoked_notice"] if revoked else None,
        receipt_number="flow-1",
        rows=[receipt_row(each, lang) for each in records],
        revocable=revocable,
        signed_url="/receipts/flow-1/signed?e=1&t=t",
        revoke_url="/receipts/flow-1/revoke",
        expires="1",
        token="t",
        csrf_token="csrf",
    )
    # THEN each row is words a resident reads, at Japan's time, and no code word shows
    assert_readable(html, f"receipt {lang}")
    assert "UTC" not in html
    assert resident_time(at, lang) in html
    for each in records:
        assert f"<td>{each.outcome}</td>" not in html
    for event in AuditEvent:
        assert EVENT_LABELS[event][0 if lang == "ja" else 1] in html


def test_a_receipt_time_is_japan_time() -> None:
    at = datetime(2026, 12, 6, 9, 18, 16, tzinfo=UTC)
    assert resident_time(at, "ja") == "2026年12月6日 18:18"
    assert resident_time(at, "en") == "6 Dec 2026, 18:18 JST"
    # the day changes in Japan before it does in UTC
    assert resident_time(datetime(2026, 12, 31, 15, 30, tzinfo=UTC), "ja") == "2027年1月1日 00:30"


def test_every_event_and_outcome_has_a_label_in_both_languages() -> None:
    assert set(EVENT_LABELS) == set(AuditEvent)
    assert set(OUTCOME_LABELS) == set(OUTCOMES)
    for ja, en in [*EVENT_LABELS.values(), *OUTCOME_LABELS.values()]:
        assert ja
        assert en
        assert not re.search(r"[A-Za-z]", ja), ja  # Japanese labels are Japanese
        assert "_" not in en, en  # and the English ones are not code words


def test_an_outcome_outside_the_vocabulary_is_refused_when_recorded() -> None:
    from chalicelib.domain.audit import audit_record
    from chalicelib.domain.flow import Flow, FlowStatus

    at = datetime(2026, 12, 6, tzinfo=UTC)
    flow = Flow(
        flow_id="f",
        partner_id="p",
        purpose_id="x",
        dataset="local_tax",
        scope="local_tax",
        redirect_uri="https://bank.example/cb",
        partner_state="s",
        code_challenge="c",
        status=FlowStatus.CREATED,
        version=1,
        created_at=at,
        updated_at=at,
        expires_at=at + timedelta(days=1),
        portal_client_id="pc",
    )
    assert audit_record(flow, AuditEvent.FAILED, at=at, outcome="portal.error_code.E01").outcome
    with pytest.raises(KeyError):
        audit_record(flow, AuditEvent.FAILED, at=at, outcome="brand.new_reason")
    with pytest.raises(KeyError):
        outcome_key("portal.error_code.")  # a family needs its suffix


def test_labels_are_read_by_key_and_a_missing_one_fails() -> None:
    # GIVEN the labels of a language
    labels = TEXT["en"]
    # THEN a label named like a dict method is the label, and a missing label raises
    assert labels["items"] == "Items shared"
    with pytest.raises(KeyError):
        labels["no-such-label"]
    assert not hasattr(labels, "items")
    assert label_keys(TEXT["ja"]) == label_keys(TEXT["en"])
    # AND a template naming a label that does not exist fails instead of printing nothing
    for source in ("{{ t.no_such_label }}", '{{ t["no_such_label"] }}', "{{ not_given }}"):
        with pytest.raises(UndefinedError):
            environment().from_string(source).render(t=labels)
    assert environment().from_string("{{ t.items }}").render(t=labels) == "Items shared"


def test_every_template_is_covered_here() -> None:
    covered = {"base.html", "consent.html", "error.html", "receipt.html"}
    assert {path.name for path in TEMPLATES.glob("*.html")} == covered
