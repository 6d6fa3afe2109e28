"""The Individual Number guard (マイナンバー; 番号法 第19条/第20条): detect any 12-digit number with a
valid check digit so that the parser can drop it before anything else looks at the data.

This service is not one of the statutory cases allowed to collect or keep another person's
Individual Number, consent or not, so any that reaches us must be detected and removed. Detection is
deliberately conservative: a false positive costs one dropped field, a false negative breaks the law.
This module must never return, log or store the number it found; it answers yes or no.

Check digit (総務省令第85号 第5条): for the 11 leading digits with weights 6 5 4 3 2 7 6 5 4 3 2 (left
to right), ``r = Σ w·d mod 11``; the check digit is 0 if ``r <= 1``, else ``11 - r``.
"""

from __future__ import annotations

import unicodedata
from typing import Final

WEIGHTS: Final = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
LENGTH: Final = 12
_ASCII_DIGITS: Final = frozenset("0123456789")

# Characters that may stand between two digits of one number, checked after NFKC (which has already
# turned U+3000 into a space and U+FF0D, U+FE63 into "-"). The spaces and hyphens are the spellings
# seen in documents (1234 5678 9018, 6214-9832-0257); the other dashes, the katakana prolonged sound
# mark (often typed for a hyphen), the comma and the full stop are there to be conservative.
SEPARATORS: Final = frozenset(" \t-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc,.")


def check_digit(eleven_digits: str) -> int:
    """The check digit (0-9) of the 11 leading digits of an Individual Number (ASCII digits only)."""
    if len(eleven_digits) != len(WEIGHTS) or not set(eleven_digits) <= _ASCII_DIGITS:
        raise ValueError("expected exactly 11 ASCII digits")
    return _check_digit(tuple(int(digit) for digit in eleven_digits))


def is_individual_number(twelve_digits: str) -> bool:
    """True if ``twelve_digits`` is exactly 12 ASCII digits whose last is the check digit."""
    if len(twelve_digits) != LENGTH or not set(twelve_digits) <= _ASCII_DIGITS:
        return False
    digits = tuple(int(digit) for digit in twelve_digits)
    return _check_digit(digits[:11]) == digits[11]


def contains_individual_number(value: str | int) -> bool:
    """True if ``value`` (an int is read in decimal) holds a valid Individual Number anywhere.

    Full-width and other compatibility digits are normalised first (NFKC), and any Unicode decimal
    digit counts as its value. A number may be spelled with one separator (space, hyphen or dash,
    comma, full stop) between any two digits. Every 12 consecutive digits of a longer run are tried,
    since a number glued to other digits is still a number.
    """
    if isinstance(value, int):
        try:
            value = str(value)
        except ValueError:
            # Longer than sys.get_int_max_str_digits(): far too long to be anything but a digit run,
            # and one that cannot be inspected is treated as holding a number (conservative).
            return True
    text = unicodedata.normalize("NFKC", value)
    if len(text) < LENGTH:
        return False  # too short to hold 12 digits: most labels and values (a few per flow)
    return any(_has_valid_window(run) for run in _digit_runs(text))


def _check_digit(digits: tuple[int, ...]) -> int:
    remainder = sum(weight * digit for weight, digit in zip(WEIGHTS, digits, strict=True)) % 11
    return 0 if remainder <= 1 else 11 - remainder


def _digit_runs(text: str) -> list[list[int]]:
    """Runs of at least 12 digits, where a single separator between two digits does not break a run."""
    runs: list[list[int]] = []
    current: list[int] = []
    pending_separator = False
    for char in text:
        if char.isdecimal():
            current.append(unicodedata.decimal(char))
            pending_separator = False
        elif char in SEPARATORS and current and not pending_separator:
            pending_separator = True
        else:
            if len(current) >= LENGTH:
                runs.append(current)
            current = []
            pending_separator = False
    if len(current) >= LENGTH:
        runs.append(current)
    return runs


def _has_valid_window(run: list[int]) -> bool:
    # The check-digit formula with WEIGHTS unrolled: a 2 MB payload can hold a run of ~2 million
    # windows, and this form is about five times faster than calling _check_digit for each.
    for start in range(len(run) - LENGTH + 1):
        d0, d1, d2, d3, d4, d5, d6, d7, d8, d9, d10, check = run[start : start + LENGTH]
        remainder = (
            6 * d0 + 5 * d1 + 4 * d2 + 3 * d3 + 2 * d4 + 7 * d5 + 6 * d6 + 5 * d7 + 4 * d8 + 3 * d9 + 2 * d10
        ) % 11
        if (0 if remainder <= 1 else 11 - remainder) == check:
            return True
    return False
