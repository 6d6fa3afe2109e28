"""The Individual Number guard (番号法 第19条) as a property: the detector agrees with an independent
reading of the rule its docstring states, never raises, and, inside the payload parser, a valid
number anywhere in the document removes exactly the item that holds it, while a wrong check digit
removes nothing."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date
from typing import Any

import pytest
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.individual_number import check_digit, contains_individual_number, is_individual_number
from chalicelib.domain.normalise import normalise
from chalicelib.domain.portal_labels import FIELD_NAMES
from sandbox.personas import load_personas
from sandbox.portal import build_self_personal_data
from tests.property.support import (
    CLAIMED_SEPARATORS,
    DIGIT_SCRIPTS,
    PROPERTY,
    plain_words,
    spelled_invalid_numbers,
    spelled_valid_numbers,
)

WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)  # 総務省令第85号 第5条
# The separators the docstring names, as they stand after NFKC.
FOLDED_SEPARATORS = "".join(sorted({unicodedata.normalize("NFKC", char) for char in CLAIMED_SEPARATORS}))
# Twelve decimal digits, each pair joined by at most one separator; the lookahead finds overlapping ones.
TWELVE = re.compile(rf"(?=(\d(?:[{re.escape(FOLDED_SEPARATORS)}]?\d){{11}}))")


def valid(digits: list[int]) -> bool:
    remainder = sum(weight * digit for weight, digit in zip(WEIGHTS, digits[:11], strict=True)) % 11
    return digits[11] == (0 if remainder <= 1 else 11 - remainder)


def rule_holds_number(text: str) -> bool:
    """The docstring's rule, read with a regular expression instead of the module's scanner."""
    folded = unicodedata.normalize("NFKC", text)
    return any(
        valid([int(char) for char in match[1] if char.isdecimal()]) for match in TWELVE.finditer(folded)
    )


chunks = st.one_of(
    spelled_valid_numbers,
    spelled_invalid_numbers,
    st.text(alphabet="".join(DIGIT_SCRIPTS[:2]), min_size=1, max_size=14),
    st.sampled_from(CLAIMED_SEPARATORS),
    st.text(alphabet="".join(CLAIMED_SEPARATORS) + "0123456789", max_size=8),
    st.sampled_from(
        ["①", "⑫", "⒈", "¹", "½", "㉑", "\u0301", "\ufeff", "\u200b", "/", ":", "_", "+", "(", "円"]
    ),
    plain_words,
)
texts = st.lists(chunks, max_size=6).map("".join) | st.text(
    alphabet=st.characters(categories=["Nd", "No", "Pd", "Po", "Zs", "Cc", "Cs", "Lo"]), max_size=40
)


@settings(PROPERTY, max_examples=300)
@given(texts)
@example("1234 5678 9018")
@example("6214\u30fc9832\u30fc0257")
@example("٦٢١٤٩٨٣٢٠٢٥٧")  # Arabic-Indic digits
@example("1234--5678-9018")  # two separators in a row end a number
@example("⑫3456789018")  # a compatibility character that folds to two digits
def test_the_detector_agrees_with_an_independent_reading_of_its_rule(text: str) -> None:
    held = rule_holds_number(text)
    event("holds a number" if held else "holds none")
    assert contains_individual_number(text) is held


@settings(PROPERTY, max_examples=200)
@given(st.integers() | st.integers(min_value=-(10**60), max_value=10**60))
@example(10**4299)
@example(10**5000)  # longer than sys.get_int_max_str_digits(): cannot be read, so held (conservative)
@example(-(10**5000))
def test_an_int_is_read_as_its_decimal_spelling_and_one_too_long_to_spell_is_held(value: int) -> None:
    if abs(value) < 10**4300:
        assert contains_individual_number(value) is rule_holds_number(str(value))
    else:
        assert contains_individual_number(value) is True


@settings(PROPERTY, max_examples=200)
@given(st.text() | st.text(alphabet=st.characters(categories=["Cs", "Nd", "Zs"])))
def test_the_check_digit_and_the_exact_test_never_raise_but_name_what_they_refuse(text: str) -> None:
    ascii_digits = text.isascii() and text.isdigit()
    twelve = len(text) == 12 and ascii_digits
    assert is_individual_number(text) is (twelve and valid([int(char) for char in text]))
    if len(text) == 11 and ascii_digits:
        assert 0 <= check_digit(text) <= 9
    else:
        with pytest.raises(ValueError, match=r"^expected exactly 11 ASCII digits$"):
            check_digit(text)


# -- inside the payload: a number removes exactly the item that holds it ---------------------------------

INQUIRY = date(2026, 11, 27)
BOTH = ("地方税関係情報", "予防接種関係情報")
KNOWN_LABELS = sorted({label for labels in FIELD_NAMES.values() for label in labels})


def read(document: list[dict[str, Any]], dataset: DatasetId) -> tuple[Any, ...]:
    result = normalise(json.dumps(document, ensure_ascii=False), dataset=dataset)
    return result.records, dict(result.dropped), result.individual_numbers_removed


PLACES = ("municipality", "dataset", "label", "text value")
NUMERIC_VALUES = ("int value", "glued int value", "float value", "scaled float value")


@st.composite
def as_number(draw: st.DrawFn, number: str, form: str) -> int | float:
    """``number`` as a JSON number: plain, glued to other digits, a float, or a float JSON writes with
    an exponent; maybe negative."""
    assume(number[0] != "0")  # an int would drop the leading zero
    sign = draw(st.sampled_from([1, -1]))
    value: int | float
    if form == "int value":
        value = int(number)
    elif form == "glued int value":
        value = int(draw(st.sampled_from(["7", "42", "999"])) + number + draw(st.sampled_from(["", "3"])))
    elif form == "float value":
        value = float(number)
    else:
        value = float(f"{number[0]}.{number[1:]}e{draw(st.integers(min_value=-30, max_value=60))}")
    # JSON writes a number as repr() does; the number must be in what is written (a float whose
    # shortest spelling drops a trailing zero no longer carries all twelve digits).
    assume(number in re.sub(r"[.+\-]", "", json.dumps(sign * value)))
    return sign * value


@st.composite
def with_a_number(
    draw: st.DrawFn, document: list[dict[str, Any]], numbers: st.SearchStrategy[str], place: str
) -> list[dict[str, Any]]:
    """``document`` with one more item holding a number, at any position: a municipality entry, a
    dataset, a field whose label holds it, or a field whose value does."""
    spelled = draw(numbers)
    holder = draw(plain_words) + spelled + draw(plain_words)
    changed = json.loads(json.dumps(document))
    if place == "municipality":
        # a record readable as either dataset (each reads the other's labels as unknown fields)
        record = {"課税年度": "2026", "予防接種の種類": "BCG", "接種日": "20260101", "医師名": "花"}
        entry = {holder: {draw(st.sampled_from(BOTH)): [record]}}
        changed.insert(draw(st.integers(min_value=0, max_value=len(changed))), entry)
        return changed
    assume(changed)
    if place == "dataset":
        (held,) = draw(st.sampled_from(changed)).values()
        held[holder] = [{"課税年度": "2026", "接種日": "20260101"}]
        return changed
    records = [
        record for entry in changed for held in entry.values() for kept in held.values() for record in kept
    ]
    record = draw(st.sampled_from(records))
    label = holder if place == "label" else draw(st.sampled_from(KNOWN_LABELS) | plain_words)
    assume(label not in record)
    if place in ("label", "text value"):
        record[label] = "2026" if place == "label" else holder
    else:
        digits = unicodedata.normalize("NFKC", spelled)
        number = "".join(str(unicodedata.decimal(char)) for char in digits if char.isdecimal())
        record[label] = draw(as_number(number, place))
    return changed


# What the sandbox portal builds for each of its personas (one of them already holds three numbers),
# on two inquiry dates: the documents the numbers are put into.
BUILT = [
    build_self_personal_data(persona, BOTH, inquiry)
    for persona in load_personas().values()
    for inquiry in (date(2023, 7, 1), INQUIRY)
]
documents = st.sampled_from(BUILT)
# A number can go into a dataset or a record only where there is one: drawing those from every
# document and discarding the empty ones would throw away most examples (a health-check failure).
filled_documents = st.sampled_from([document for document in BUILT if document])


def documents_for(place: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    return documents if place == "municipality" else filled_documents


@pytest.mark.parametrize("place", PLACES + NUMERIC_VALUES)
@settings(PROPERTY, max_examples=30)
@given(st.data(), st.sampled_from(["local_tax", "vaccination"]))
def test_a_valid_number_anywhere_in_a_payload_removes_exactly_the_item_that_holds_it(
    place: str, data: st.DataObject, dataset: DatasetId
) -> None:
    # GIVEN what the sandbox builds for a resident, and the same with one more item holding a number
    document = data.draw(documents_for(place))
    changed = data.draw(with_a_number(document, spelled_valid_numbers, place))
    records, dropped, removed = read(document, dataset)
    # THEN reading it gives the same records and counts, and one more removal
    assert read(changed, dataset) == (records, dropped, removed + 1)


@pytest.mark.parametrize("place", PLACES)
@settings(PROPERTY, max_examples=25)
@given(st.data(), st.sampled_from(["local_tax", "vaccination"]))
def test_a_number_with_a_wrong_check_digit_removes_nothing(
    place: str, data: st.DataObject, dataset: DatasetId
) -> None:
    document = data.draw(documents_for(place))
    changed = data.draw(with_a_number(document, spelled_invalid_numbers, place))
    assert read(changed, dataset)[2] == read(document, dataset)[2]
