"""The reader against generated variants of every plausible layout of a result (issue [15]): a
generator that knows the records it meant writes them grouped or flat, groups and records as
objects or as arrays of single-key objects, with nulls and unknown fields beside them, values in any
tolerated spelling (wareki, ISO, full-width, △), under several municipalities, with duplicates,
unicode-escaped or not, the inner JSON encoded once or twice. The reader yields exactly those
records (duplicates folded), or, when the generator broke a record on purpose, fails with the named
reason, never with fewer records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.normalise import NormalisedResult, UnreadableResult, normalise
from chalicelib.domain.portal_mapping import default_mapping
from tests.property.support import MUNICIPALITIES, PROPERTY

MAPPING = default_mapping()
FULL_WIDTH = str.maketrans("0123456789,-", "０１２３４５６７８９，－")
# written here apart from the reader's table: the first day of each era
ERAS = [("令和", date(2019, 5, 1)), ("平成", date(1989, 1, 8)), ("昭和", date(1926, 12, 25))]
WORDS = st.text(alphabet="あいうえおかきくけこアイウエオ漢字名称医院", min_size=1, max_size=8)
STATUSES = {
    "課税": "taxable",
    "非課税": "non_taxable",
    "均等割のみ": "per_capita_only",
    "未申告": "undeclared",
}


# -- spellings of one value -------------------------------------------------------------------------------


@st.composite
def amount_text(draw: st.DrawFn, value: int) -> Any:
    if value < 0:
        magnitude = draw(amount_text(-value))
        text = magnitude if isinstance(magnitude, str) else str(magnitude)
        return draw(st.sampled_from(["△", "▲", "\u2212", "-", "－"])) + text
    grouped = f"{value:,}"
    text = draw(
        st.sampled_from(
            [str(value), grouped, str(value).translate(FULL_WIDTH), grouped.translate(FULL_WIDTH)]
        )
    )
    return draw(st.sampled_from([text, text, value]))  # sometimes a JSON number


def era_of(day: date) -> tuple[str, int] | None:
    for name, start in ERAS:
        if day >= start:
            return name, day.year - start.year + 1
    return None


@st.composite
def year_text(draw: st.DrawFn, year: int) -> str:
    spellings = [str(year), f"{year}年度", str(year).translate(FULL_WIDTH)]
    era = era_of(date(year, 12, 31))
    if era is not None:
        name, number = era
        spellings.append(f"{name}{'元' if number == 1 else number}年度")
    return draw(st.sampled_from(spellings))


@st.composite
def date_text(draw: st.DrawFn, day: date) -> str:
    spellings = [f"{day:%Y%m%d}", day.isoformat(), f"{day:%Y/%m/%d}", f"{day:%Y%m%d}".translate(FULL_WIDTH)]
    era = era_of(day)
    if era is not None:
        name, number = era
        spellings.append(f"{name}{'元' if number == 1 else number}年{day.month}月{day.day}日")
    return draw(st.sampled_from(spellings))


# -- records as meant, and as written ------------------------------------------------------------------------

AMOUNTS = st.integers(min_value=0, max_value=999_999_999)
LOCAL_TAX_VALUES: dict[str, Any] = {
    "taxation_status": st.sampled_from(sorted(STATUSES.values())),
    "salary_revenue": AMOUNTS,
    "salary_income": AMOUNTS,
    "business_income": st.integers(min_value=-99_999_999, max_value=99_999_999),
    "total_income": AMOUNTS,
    "basic_deduction": AMOUNTS,
    "dependants": st.integers(min_value=0, max_value=9),
    "annual_tax": AMOUNTS,
}
VACCINATION_VALUES: dict[str, Any] = {"dose": WORDS, "lot_number": WORDS, "doctor": WORDS}


@st.composite
def meant_record(draw: st.DrawFn, dataset: DatasetId) -> dict[str, Any]:
    if dataset == "local_tax":
        record: dict[str, Any] = {"fiscal_year": draw(st.integers(min_value=1990, max_value=2030))}
        optional = LOCAL_TAX_VALUES
    else:
        record = {
            "vaccine": draw(WORDS),
            "date": draw(st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31))),
        }
        optional = VACCINATION_VALUES
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        record[name] = draw(optional[name])
    return record


@st.composite
def written_value(draw: st.DrawFn, dataset: DatasetId, name: str, value: Any) -> Any:
    kind = MAPPING.datasets[dataset].fields[name].type
    if kind in ("amount", "count", "signed_amount"):
        return draw(amount_text(value))
    if kind == "year":
        return draw(year_text(value))
    if kind == "date":
        return draw(date_text(value))
    if kind == "enum":
        portal = {ours: theirs for theirs, ours in STATUSES.items()}[value]
        return draw(st.sampled_from([portal, f" {portal}\u3000"]))
    return draw(st.sampled_from([value, f" {value} "]))


def insert(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for group in path[:-1]:
        tree = tree.setdefault(group, {})
    tree[path[-1]] = value


@st.composite
def spread(draw: st.DrawFn, node: Any, *, top: bool = False) -> Any:
    """An object as itself or as an array of single-key objects, recursively (the record itself
    too, ``top``, when it has two or more members)."""
    if not isinstance(node, dict):
        return node
    members = {key: draw(spread(value)) for key, value in node.items()}
    if draw(st.booleans()) and (not top or len(members) >= 2):
        return [{key: value} for key, value in members.items()]
    return members


@st.composite
def written_record(draw: st.DrawFn, dataset: DatasetId, meant: dict[str, Any]) -> Any:
    tree: dict[str, Any] = {}
    for name, value in meant.items():
        path = draw(st.sampled_from(MAPPING.datasets[dataset].fields[name].paths)).split("/")
        insert(tree, path, draw(written_value(dataset, name, value)))
    # nulls and unknown fields beside the meant ones: absent, and dropped
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        extra = draw(st.sampled_from(["備考", "課税市区町村", "所得情報/雑所得メモ", "予備/項目"]))
        if extra.split("/")[0] not in tree:
            insert(tree, extra.split("/"), draw(st.sampled_from([None, "メモ", ""])))
    return draw(spread(tree, top=True))


@dataclass(frozen=True)
class Case:
    dataset: DatasetId
    text: str
    expected: list[dict[str, Any]]  # the records meant, duplicates folded, in order
    broken: str | None  # the required field removed on purpose, or "dataset" for an unknown name


def expected_record(municipality: str, dataset: DatasetId, meant: dict[str, Any]) -> dict[str, Any]:
    names = list(MAPPING.datasets[dataset].fields)
    return {"municipality": municipality, **dict.fromkeys(names), **meant}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    dataset: DatasetId = draw(st.sampled_from(["local_tax", "vaccination"]))
    names = MAPPING.datasets[dataset].names
    entries: list[dict[str, Any]] = []
    expected: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        municipality = draw(st.sampled_from(MUNICIPALITIES))
        meant = draw(st.lists(meant_record(dataset), max_size=3))
        if meant and draw(st.booleans()):  # an exact duplicate, maybe spelled otherwise
            meant.insert(
                draw(st.integers(min_value=0, max_value=len(meant))), dict(draw(st.sampled_from(meant)))
            )
        written = [draw(written_record(dataset, record)) for record in meant]
        entries.append(
            {
                municipality: {
                    draw(st.sampled_from(names)): written if written or draw(st.booleans()) else None
                }
            }
        )
        expected.extend(expected_record(municipality, dataset, record) for record in meant)
    folded = [
        dict(items) for items in dict.fromkeys(tuple(sorted(r.items(), key=lambda i: i[0])) for r in expected)
    ]
    order = list(MAPPING.datasets[dataset].fields)
    folded = [{"municipality": r["municipality"], **{n: r[n] for n in order}} for r in folded]
    broken: str | None = None
    how = draw(st.sampled_from(["intact"] * 4 + ["drop-required", "unknown-dataset"]))
    if how == "drop-required" and expected:
        required = draw(st.sampled_from(MAPPING.datasets[dataset].required))
        victim = draw(
            st.sampled_from(
                [r for e in entries for held in e.values() for w in held.values() if w for r in w]
            )
        )
        removed = remove_field(victim, MAPPING.datasets[dataset].fields[required].paths)
        broken = required if removed else None
    elif how == "unknown-dataset" and entries:
        entries = [
            {m: {f"未知の情報{i}": held for i, held in enumerate(d.values())}}
            for e in entries
            for m, d in e.items()
        ]
        broken = "dataset"
    text = json.dumps(entries, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        text = json.dumps(text)  # the inner JSON encoded once more
    return Case(dataset, text, folded, broken)


def remove_field(record: Any, paths: tuple[str, ...]) -> bool:
    """Remove the top-level member a required field is written under (required fields are at the
    top level in the shipped mapping), in either representation of the record."""
    tops = {path.split("/")[0] for path in paths}
    # Two unknown fields take its place: a record left with one member would be a single-key object,
    # which beside other single-key records reads as part of one record spread over an array.
    filler = {"備考": "メモ", "摘要": "メモ"}
    if isinstance(record, dict):
        found = [key for key in record if key in tops]
        for key in found:
            del record[key]
        record.update(filler)
        return bool(found)
    found_items = [item for item in record if next(iter(item)) in tops]
    for item in found_items:
        record.remove(item)
    record.extend({key: value} for key, value in filler.items())
    return bool(found_items)


@settings(PROPERTY, max_examples=300)
@given(cases())
def test_every_plausible_layout_yields_exactly_the_records_meant_or_a_named_failure(case: Case) -> None:
    try:
        result: NormalisedResult | UnreadableResult = normalise(case.text, dataset=case.dataset)
    except UnreadableResult as refused:
        result = refused
    if case.broken is not None:
        event(f"broken: {case.broken}")
        assert isinstance(result, UnreadableResult)
        assert (result.check, result.path) == ("result.unreadable", case.broken)
        return
    event(f"{len(case.expected)} records")
    assert isinstance(result, NormalisedResult)
    assert [record.model_dump() for record in result.records] == case.expected
    assert result.individual_numbers_removed == 0
