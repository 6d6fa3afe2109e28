"""The parser of selfPersonalData (IF001-06) against hostile text, and against what the sandbox
portal builds for generated residents: it reads or refuses with ``MalformedResult``, never shows the
payload, accounts for every record and field it does not keep, and recovers the sandbox's values
exactly."""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import date
from typing import Any

from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.individual_number import contains_individual_number
from chalicelib.domain.normalise import (
    DROP_REASONS,
    MalformedResult,
    NormalisedResult,
    UnreadableResult,
    normalise,
)
from chalicelib.domain.portal_labels import FIELD_NAMES
from chalicelib.domain.portal_mapping import default_mapping
from chalicelib.domain.records import RECORD_MODELS, LocalTaxRecord, VaccinationRecord
from sandbox.personas import Persona
from sandbox.portal import build_self_personal_data
from tests.property.support import (
    MARKER,
    MUNICIPALITIES,
    PROPERTY,
    exception_chain,
    json_values,
    personas,
    spelled_valid_numbers,
)

DATASET_NAMES: dict[DatasetId, str] = {"local_tax": "地方税関係情報", "vaccination": "予防接種関係情報"}
datasets = st.sampled_from(["local_tax", "vaccination"])
known_labels = sorted({label for labels in FIELD_NAMES.values() for label in labels})

scalars = st.one_of(
    st.text(alphabet="0123456789０１２３４５６７８９,，", min_size=1, max_size=16),
    st.integers(min_value=0, max_value=99_999_999).map("{:08d}".format),
    st.integers(min_value=0, max_value=999_999).map("{:06d}".format),
    st.sampled_from(["課税", "非課税", "均等割のみ", "未申告", "", " ", "\u3000"]),
    st.integers(min_value=-(10**16), max_value=10**16),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    spelled_valid_numbers,
    st.just(MARKER),
)
raw_records = st.dictionaries(
    st.sampled_from(known_labels) | st.text(max_size=4) | spelled_valid_numbers, scalars, max_size=6
)
portal_documents = st.lists(
    st.dictionaries(
        st.sampled_from(MUNICIPALITIES) | st.text(max_size=6) | st.just(MARKER),
        st.dictionaries(
            st.sampled_from(sorted(DATASET_NAMES.values())) | st.text(max_size=4),
            st.lists(raw_records, max_size=3),
            max_size=2,
        ),
        min_size=1,
        max_size=1,
    ),
    max_size=3,
)


def holds_individual_number(record: LocalTaxRecord | VaccinationRecord) -> bool:
    return any(
        isinstance(value, str | int) and contains_individual_number(value)
        for value in record.model_dump(mode="json").values()
    )


def read_or_refusal(text: str, dataset: DatasetId, max_bytes: int) -> NormalisedResult | MalformedResult:
    """The parser's contract: a result or ``MalformedResult``; any other exception fails the test."""
    try:
        return normalise(text, dataset=dataset, max_bytes=max_bytes)
    except MalformedResult as refused:
        return refused


def assert_refusal_reveals_nothing(refusal: MalformedResult) -> None:
    assert refusal.check in ("result.size", "result.json", "result.shape", "result.unreadable")
    assert exception_chain(refusal) == [refusal]  # JSONDecodeError keeps the whole document in ``doc``
    for text in (str(refusal), repr(refusal), refusal.detail, str(refusal.check), *refusal.errors):
        assert MARKER not in text


# -- hostile text ----------------------------------------------------------------------------------------


def written(value: Any, *, ascii_only: bool, duplicate_in: int | None) -> str:
    """JSON text of ``value`` (NaN and Infinity as Python spells them); the ``duplicate_in``-th
    non-empty object, counted depth first, repeats its first member."""
    seen = 0

    def write(item: Any) -> str:
        nonlocal seen
        if isinstance(item, dict):
            members = [
                json.dumps(key, ensure_ascii=ascii_only) + ":" + write(inner) for key, inner in item.items()
            ]
            if members:
                seen += 1
                if seen == duplicate_in:
                    members.append(members[0])
            return "{" + ",".join(members) + "}"
        if isinstance(item, list):
            return "[" + ",".join(write(inner) for inner in item) + "]"
        return json.dumps(item, ensure_ascii=ascii_only)

    return write(value)


def objects_in(value: Any) -> int:
    if isinstance(value, dict):
        return int(bool(value)) + sum(objects_in(inner) for inner in value.values())
    if isinstance(value, list):
        return sum(objects_in(inner) for inner in value)
    return 0


def non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(non_finite(inner) for inner in value.values())
    if isinstance(value, list):
        return any(non_finite(inner) for inner in value)
    return False


@st.composite
def hostile_payloads(draw: st.DrawFn) -> tuple[str, str | None]:
    """A payload, and what the way it was broken decides: the check of its refusal, "refused" for
    any refusal, or None when it may be read."""
    document = draw(portal_documents | json_values | st.lists(json_values, max_size=3))
    ascii_only = draw(st.booleans())
    how = draw(
        st.sampled_from(["as-is"] * 6 + ["duplicate", "truncated", "nested", "huge-int", "trailing", "bom"])
    )
    duplicate_in = None
    if how == "duplicate" and objects_in(document):
        duplicate_in = draw(st.integers(min_value=1, max_value=objects_in(document)))
    text = written(document, ascii_only=ascii_only, duplicate_in=duplicate_in)
    if duplicate_in is not None or non_finite(document):
        return text, "result.json"
    at = draw(st.integers(min_value=0, max_value=len(text)))
    if how == "truncated" and at < len(text) and text[0] in "[{":
        return text[:at], "result.json"  # no proper prefix of an array or object is JSON
    if how == "nested":
        depth = draw(st.integers(min_value=1, max_value=3000))
        return "[" * depth + text + "]" * depth, "refused"  # a list of lists is never a result
    if how == "huge-int":
        return "[" + "9" * draw(st.integers(min_value=4301, max_value=6000)) + "]", "result.json"
    if how == "trailing":
        return text + draw(st.sampled_from([" x", "{}", "\x00", ",", "]"])), "result.json"
    if how == "bom":
        return "\ufeff" + text, "result.json"
    return text, None


@settings(PROPERTY, max_examples=300)
@given(hostile_payloads(), datasets, st.sampled_from([2_000_000] * 4 + [10, 100]))
@example(("[" * 5000 + "]" * 5000, "refused"), "local_tax", 2_000_000)
@example(('[{"\\ud800": {"地方税関係情報": [{"医師名": "\\udc00"}]}}]', None), "vaccination", 2_000_000)
@example(
    ('[{"' + MARKER + '": {"地方税関係情報": [{"課税年度": NaN}]}}]', "result.json"), "local_tax", 2_000_000
)
def test_any_payload_is_read_or_refused_as_malformed_without_showing_it(
    payload: tuple[str, str | None], dataset: DatasetId, max_bytes: int
) -> None:
    text, refusal = payload
    size = len(text.encode("utf-8", "surrogatepass"))
    outcome = read_or_refusal(text, dataset, max_bytes)
    if isinstance(outcome, MalformedResult):
        event(f"refused: {outcome.check}")
        assert_refusal_reveals_nothing(outcome)
        if size > max_bytes:
            assert outcome.check == "result.size"
        elif refusal not in (None, "refused"):
            assert outcome.check == refusal
        return
    event("read")
    # a read payload was within the limit, and its records hold no number and no unreadable text
    assert (refusal, size <= max_bytes) == (None, True)
    for record in outcome.records:
        assert not holds_individual_number(record)
        texts = [value for value in record.model_dump().values() if isinstance(value, str)]
        assert not any(unicodedata.category(char) in ("Cc", "Cs") for value in texts for char in value)
    assert MARKER not in repr(outcome)


@settings(PROPERTY, max_examples=75)
@given(portal_documents, datasets, st.booleans(), st.sampled_from([None, 0, 2]))
def test_how_a_payload_is_spelled_does_not_change_what_is_read(
    document: list[Any], dataset: DatasetId, ascii_only: bool, indent: int | None
) -> None:
    def read(text: str) -> tuple[Any, ...]:
        try:
            result = normalise(text, dataset=dataset)
        except UnreadableResult as refused:
            return ("unreadable", refused.dataset, refused.path)
        return (result.records, dict(result.dropped), result.individual_numbers_removed)

    compact = read(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
    assert read(json.dumps(document, ensure_ascii=ascii_only, indent=indent)) == compact


def fields_kept(records: tuple[LocalTaxRecord, ...] | tuple[VaccinationRecord, ...]) -> int:
    return sum(
        value is not None
        for record in records
        for name, value in record.model_dump().items()
        if name != "municipality"
    )


@settings(PROPERTY, max_examples=100)
@given(
    datasets.flatmap(
        lambda dataset: st.tuples(
            st.just(dataset),
            st.lists(
                st.builds(
                    lambda municipality, records: {municipality: {DATASET_NAMES[dataset]: records}},
                    st.sampled_from(MUNICIPALITIES),
                    st.lists(raw_records, max_size=4),
                ),
                max_size=3,
            ),
        )
    )
)
def test_every_record_and_field_of_the_requested_dataset_is_kept_or_counted(
    case: tuple[DatasetId, list[dict[str, Any]]],
) -> None:
    # GIVEN a payload holding only the requested dataset, under readable municipality names
    dataset, document = case
    lists = [held[DATASET_NAMES[dataset]] for entry in document for held in entry.values()]
    # (a list of two or more one-field records with distinct labels reads as one record: see below)
    assume(not any(len(records) >= 2 and all(len(record) == 1 for record in records) for records in lists))
    raw = [record for records in lists for record in records]
    # WHEN it is read
    try:
        result = normalise(json.dumps(document, ensure_ascii=False), dataset=dataset)
    except UnreadableResult as refused:
        unreadable: str | None = refused.path
    else:
        unreadable = None
    if unreadable is not None:
        # a record without a field the mapping requires fails the whole result, loudly
        event("unreadable")
        assert unreadable in default_mapping().datasets[dataset].required
        return
    dropped = result.dropped
    # THEN each record is kept, counted as emptied or folded as a duplicate, and each field of a
    # record not folded is kept or counted once
    assert len(result.records) + dropped["empty_record"] + dropped["duplicate_record"] == len(raw)
    if dropped["duplicate_record"]:
        return
    assert (dropped["unknown_dataset"], dropped["other_dataset"]) == (0, 0)
    counted = dropped["unknown_field"] + dropped["blank_value"] + dropped["invalid_value"]
    assert fields_kept(result.records) + counted + result.individual_numbers_removed == sum(map(len, raw))
    assert set(dropped) == set(DROP_REASONS)


# -- round trip: what the sandbox portal builds is read exactly ---------------------------------------------

INQUIRY = date(2026, 11, 27)
# 課税区分 as docs/mynaportal.md lists its four values, written here independently of portal_labels.
TAXATION_STATUSES = {
    "課税": "taxable",
    "非課税": "non_taxable",
    "均等割のみ": "per_capita_only",
    "未申告": "undeclared",
}


def sandbox_value(dataset: DatasetId, name: str, text: str) -> tuple[str, Any]:
    """How a field the sandbox sends must come out: ("kept", value), or why it is not kept."""
    if contains_individual_number(text):
        return ("individual_number", None)
    if not text.strip():
        return ("blank_value", None)
    if name == "fiscal_year":
        return ("kept", int(text))
    if name == "taxation_status":
        return ("kept", TAXATION_STATUSES[text])
    if name == "date":
        return ("kept", date(int(text[:4]), int(text[4:6]), int(text[6:])))
    if dataset == "local_tax":  # an amount or a count, maybe grouped and full-width
        return ("kept", int(unicodedata.normalize("NFKC", text).strip().replace(",", "")))
    stripped = text.strip()  # free text: trimmed, never folded, refused with control characters
    if any(unicodedata.category(char) == "Cc" for char in stripped):
        return ("invalid_value", None)
    return ("kept", stripped)


@settings(PROPERTY, max_examples=100)
@given(
    personas(around=INQUIRY),
    st.dates(min_value=date(2020, 1, 1), max_value=INQUIRY),
    datasets,
    st.booleans(),
)
def test_what_the_sandbox_builds_for_a_resident_is_read_exactly(
    persona: Persona, inquiry: date, dataset: DatasetId, both_items: bool
) -> None:
    # GIVEN what the sandbox portal returns for a generated resident (one dataset, or both)
    items = tuple(DATASET_NAMES.values()) if both_items else (DATASET_NAMES[dataset],)
    data = build_self_personal_data(persona, items, inquiry)
    # WHEN the relay reads it for one dataset
    try:
        result: NormalisedResult | UnreadableResult = normalise(
            json.dumps(data, ensure_ascii=False), dataset=dataset
        )
    except UnreadableResult as refused:
        result = refused
    # THEN every record of that dataset comes out with exactly the sandbox's values, in order (exact
    # duplicates folded), or, if one lacks a field the mapping requires, the result is unreadable
    expected: list[dict[str, Any]] = []
    outcomes: list[str] = []
    other_records = 0
    for entry in data:
        ((municipality, by_dataset),) = entry.items()
        for name, records in by_dataset.items():
            this = name == DATASET_NAMES[dataset]
            other_records += 0 if this else len(records)
            for fields in records:
                record = dict.fromkeys(RECORD_MODELS[dataset].model_fields) | {"municipality": municipality}
                for label, text in fields.items():
                    field_dataset: DatasetId = (
                        "local_tax" if name == DATASET_NAMES["local_tax"] else "vaccination"
                    )
                    outcome, value = sandbox_value(field_dataset, FIELD_NAMES[field_dataset][label], text)
                    if outcome == "individual_number" or this:
                        outcomes.append(outcome)
                    if this and outcome == "kept":
                        record[FIELD_NAMES[dataset][label]] = value
                if this:
                    expected.append(record)
    required = default_mapping().datasets[dataset].required
    incomplete = [name for record in expected for name in required if record[name] is None]
    if incomplete:
        assert isinstance(result, UnreadableResult)
        assert result.path == incomplete[0]
        return
    assert isinstance(result, NormalisedResult)
    folded = [dict(pairs) for pairs in dict.fromkeys(tuple(record.items()) for record in expected)]
    assert [record.model_dump() for record in result.records] == folded
    assert result.individual_numbers_removed == outcomes.count("individual_number")
    assert dict(result.dropped) == dict.fromkeys(DROP_REASONS, 0) | {
        "blank_value": outcomes.count("blank_value"),
        "invalid_value": outcomes.count("invalid_value"),
        "other_dataset": other_records,
        "duplicate_record": len(expected) - len(folded),
    }
