"""The Individual Number guard: the check digit of 総務省令第85号 第5条 and the detector that finds a
number however it is spelled (番号法 第19条: we must never keep one)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chalicelib.domain.individual_number import check_digit, contains_individual_number, is_individual_number

DOC_VALUES = ("123456789018", "621498320257")  # docs/mynaportal.md
WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
SEPARATORS = ("", "", " ", "\u3000", "-", "－", "‐")  # no separator is the commonest spelling

eleven_digits = st.text(alphabet="0123456789", min_size=11, max_size=11)
valid_numbers = eleven_digits.map(lambda digits: digits + str(check_digit(digits)))


def remainder(eleven: str) -> int:
    """r = Σ w·d mod 11, written independently of the module under test."""
    return sum(w * int(d) for w, d in zip(WEIGHTS, eleven, strict=True)) % 11


@st.composite
def spelled(draw: st.DrawFn, number: str) -> str:
    """``number`` with a random separator (or none) between any two digits, maybe full-width."""
    text = number[0]
    for digit in number[1:]:
        text += draw(st.sampled_from(SEPARATORS)) + digit
    return text.translate(FULL_WIDTH) if draw(st.booleans()) else text


# -- check digit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("number", DOC_VALUES)
def test_the_documented_test_values_are_valid(number: str) -> None:
    assert is_individual_number(number)
    assert check_digit(number[:11]) == int(number[11])


@pytest.mark.parametrize("bad", ["", "1234567890", "123456789012", "1234567890a", "１２３４５６７８９０１"])
def test_check_digit_refuses_anything_but_eleven_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="11 ASCII digits"):
        check_digit(bad)


@pytest.mark.parametrize(
    "bad", ["", "12345678901", "1234567890180", "12345678901x", "１２３４５６７８９０１８"]
)
def test_only_twelve_ascii_digits_can_be_an_individual_number(bad: str) -> None:
    assert not is_individual_number(bad)


@settings(max_examples=200)
@given(eleven_digits)
def test_eleven_digits_with_their_computed_check_digit_are_valid(digits: str) -> None:
    check = check_digit(digits)
    assert 0 <= check <= 9
    assert is_individual_number(digits + str(check))


@settings(max_examples=200)
@given(valid_numbers, st.integers(min_value=1, max_value=9))
def test_changing_the_check_digit_always_invalidates_a_number(number: str, shift: int) -> None:
    changed = number[:11] + str((int(number[11]) + shift) % 10)
    assert not is_individual_number(changed)


@settings(max_examples=300)
@given(valid_numbers, st.integers(min_value=0, max_value=10), st.integers(min_value=1, max_value=9))
def test_changing_one_leading_digit_goes_unnoticed_only_between_remainders_0_and_1(
    number: str, position: int, shift: int
) -> None:
    # The weights are non-zero mod 11 (a prime), so any one-digit change moves the remainder; but the
    # check digit is 0 for both r = 0 and r = 1, so a change between those two keeps the number
    # valid. That, and only that, is what the check digit cannot see.
    changed = number[:position] + str((int(number[position]) + shift) % 10) + number[position + 1 :]
    before, after = remainder(number[:11]), remainder(changed[:11])
    assert before != after
    assert is_individual_number(changed) == ({before, after} == {0, 1})


def test_a_one_digit_change_can_leave_a_number_valid() -> None:
    # 6·2 = 12 ≡ 1 (mod 11): the remainder moves from 0 to 1 and both check digits are 0.
    assert is_individual_number("000000000000")
    assert is_individual_number("200000000000")


# -- detector --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "123456789018",
        "1234 5678 9018",
        "6214-9832-0257",
        "６２１４９８３２０２５７",
        "6214\u30009832\u30000257",
        "6214－9832－0257",
        "6214‐9832‐0257",
        "個人番号 1234 5678 9018 を確認済み",
    ],
)
def test_a_number_is_found_in_each_documented_spelling(text: str) -> None:
    assert contains_individual_number(text)


def test_a_number_given_as_an_int_is_found() -> None:
    assert contains_individual_number(621498320257)


def test_a_number_glued_to_other_digits_is_found() -> None:
    assert contains_individual_number("98123456789018765")


@pytest.mark.parametrize("text", ["123456789017", "12345678901", "2026-11-27 10:30", "3,680,000円"])
def test_digits_that_are_not_a_valid_number_are_not_found(text: str) -> None:
    assert not contains_individual_number(text)


def test_two_separators_in_a_row_end_a_number() -> None:
    assert not contains_individual_number("1234  5678 9018")


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_any_twelve_digits_are_found_exactly_when_they_are_a_valid_number(digits: str) -> None:
    assert contains_individual_number(digits) == is_individual_number(digits)


@settings(max_examples=200)
@given(valid_numbers.flatmap(spelled), st.text(max_size=20), st.text(max_size=20))
def test_a_valid_number_in_arbitrary_text_with_any_separators_is_always_found(
    number: str, before: str, after: str
) -> None:
    assert contains_individual_number(before + number + after)


@settings(max_examples=100)
@given(valid_numbers.filter(lambda number: number[0] != "0"))
def test_a_valid_number_as_an_int_is_always_found(number: str) -> None:
    assert contains_individual_number(int(number))


@settings(max_examples=300)
@given(st.text(alphabet=st.characters() | st.sampled_from("0123456789０１２ -－‐,."), max_size=40))
def test_text_with_fewer_than_twelve_digits_never_holds_a_number(text: str) -> None:
    assume(sum(char.isdecimal() for char in unicodedata.normalize("NFKC", text)) < 12)
    assert not contains_individual_number(text)


@settings(max_examples=100)
@given(st.integers(min_value=-(10**11) + 1, max_value=10**11 - 1))
def test_an_int_of_fewer_than_twelve_digits_never_holds_a_number(value: int) -> None:
    assert not contains_individual_number(value)
