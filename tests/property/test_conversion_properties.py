"""The parser's converters (``normalise.CONVERTERS``) as properties: an amount, a date, a fiscal year,
a taxation status or a free text is read exactly as its rule says, in every tolerated spelling
(full-width digits, thousands separators, spaces), and anything else, including signed amounts, yen
marks and Japanese era dates (which the portal is not known to send and the parser does not claim to
read), is refused and counted, never misread."""

from __future__ import annotations

import json
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.individual_number import contains_individual_number
from chalicelib.domain.normalise import CONVERTERS, DROP_REASONS, UnreadableResult, normalise
from chalicelib.domain.portal_labels import FIELD_NAMES
from tests.property.support import FULL_WIDTH, MAX_AMOUNT, PROPERTY, amount_spellings

amount = CONVERTERS["local_tax"]["total_income"]
fiscal_year = CONVERTERS["local_tax"]["fiscal_year"]
taxation_status = CONVERTERS["local_tax"]["taxation_status"]
vaccination_date = CONVERTERS["vaccination"]["date"]
free_text = CONVERTERS["vaccination"]["doctor"]


def folded(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def read_field(dataset: DatasetId, label: str, value: Any) -> tuple[Any, dict[str, int], int]:
    """One field through the whole parser, next to one readable field: its value in the record, the
    drop counts and the removals."""
    name, filler = {
        "local_tax": ("地方税関係情報", {"課税年度": "2026", "年税額": "1"}),
        "vaccination": (
            "予防接種関係情報",
            {"予防接種の種類": "BCG", "接種日": "20220510", "ロット番号": "A1"},
        ),
    }[dataset]
    payload = json.dumps([{"神奈川県川崎市": {name: [{**filler, label: value}]}}], ensure_ascii=False)
    try:
        result = normalise(payload, dataset=dataset)
    except UnreadableResult as refused:
        unreadable: str | None = refused.path
    else:
        unreadable = None
    if unreadable is not None:
        # a required field that cannot be read fails the result: the value is not read either
        assert unreadable == FIELD_NAMES[dataset][label]
        return (None, dict.fromkeys(DROP_REASONS, 0) | {"invalid_value": 1}, 0)
    (record,) = result.records
    return (
        getattr(record, FIELD_NAMES[dataset][label]),
        dict(result.dropped),
        result.individual_numbers_removed,
    )


# -- amounts ---------------------------------------------------------------------------------------------


def grouping_rule(text: str) -> int | None:
    """Digits, or digits grouped by commas in threes from the right (1-3 digits first); after NFKC
    and trimming; at most MAX_AMOUNT. Read by splitting, not by the parser's regular expressions."""
    groups = folded(text).split(",")
    if not all(ascii_digits(group) for group in groups):
        return None
    if len(groups) > 1 and not (len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])):
        return None
    value = int("".join(groups))
    return value if value <= MAX_AMOUNT else None


amount_texts = st.one_of(
    st.integers(min_value=0, max_value=10**17).flatmap(amount_spellings),
    st.text(alphabet="0123456789０１２３４５６７８９,，、 \u3000円¥￥-−－▲△+.．e", max_size=20),
    st.lists(st.integers(min_value=0, max_value=999).map(str), min_size=1, max_size=6).map(",".join),
)


@settings(PROPERTY, max_examples=400)
@given(amount_texts)
@example("3,680,000")
@example("３，６８０，０００")
@example("0,000")  # leading zero group: still grouped in threes
@example("1" + "0" * 15)  # MAX_AMOUNT + 1
@example("000999999999999999")  # MAX_AMOUNT behind leading zeros
@example("1、000")  # the ideographic comma is not a thousands separator
def test_an_amount_is_read_exactly_as_the_grouping_rule_says(text: str) -> None:
    assert amount(text) == grouping_rule(text)


@settings(PROPERTY, max_examples=200)
@given(
    st.integers(min_value=0, max_value=MAX_AMOUNT).flatmap(
        lambda n: st.tuples(st.just(n), amount_spellings(n))
    )
)
def test_every_amount_up_to_the_limit_comes_back_from_every_tolerated_spelling(case: tuple[int, str]) -> None:
    value, spelling = case
    assert amount(spelling) == value


@settings(PROPERTY, max_examples=100)
@given(st.integers(min_value=MAX_AMOUNT + 1, max_value=10**40).flatmap(amount_spellings))
def test_an_amount_over_the_limit_is_refused_in_every_spelling(spelling: str) -> None:
    assert amount(spelling) is None


@settings(PROPERTY, max_examples=200)
@given(
    st.integers(min_value=0, max_value=MAX_AMOUNT).flatmap(amount_spellings),
    st.sampled_from(["-", "−", "－", "▲", "△", "+", "¥", "￥", "$", "約", ""]),
    st.sampled_from(["円", "-", ".0", ".", "e3", "万", "千円", "%", ""]),
)
@example("3680000", "", "円")
@example("100", "▲", "")  # the accounting minus
def test_a_signed_or_decorated_amount_is_refused_not_read_as_a_plain_one(
    text: str, before: str, after: str
) -> None:
    assume(before or after)
    assert amount(before + text + after) is None


@settings(PROPERTY, max_examples=200)
@given(
    st.integers(min_value=-(10**20), max_value=10**20)
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=0, max_value=MAX_AMOUNT).map(float)
)
@example(3_680_000.0)
@example(1e15)  # one more than MAX_AMOUNT as a float
@example(-0.0)
def test_an_amount_sent_as_a_json_number_is_its_exact_integer_or_refused(number: float) -> None:
    value, dropped, removed = read_field("local_tax", "合計所得金額", number)
    whole = isinstance(number, int) or number.is_integer()
    if whole and 0 <= number <= MAX_AMOUNT and not contains_individual_number(int(number)):
        assert (value, dropped["invalid_value"], removed) == (int(number), 0, 0)
    else:
        assert value is None
        assert dropped["invalid_value"] + removed == 1


# -- dates ---------------------------------------------------------------------------------------------


def calendar_rule(text: str) -> date | None:
    """YYYYMMDD, YYYYMM as its first day, or YYYY-MM-DD / YYYY/MM/DD, after NFKC and trimming:
    what ``strptime`` reads."""
    text = folded(text)
    for separator in "-/":
        parts = text.split(separator)
        if len(parts) == 3 and [len(part) for part in parts] == [4, 2, 2] and all(map(ascii_digits, parts)):
            text = "".join(parts)
    pattern = {8: "%Y%m%d", 6: "%Y%m"}.get(len(text))
    if pattern is None or not ascii_digits(text):
        return None
    try:
        return datetime.strptime(text, pattern).date()
    except ValueError:
        return None


@st.composite
def date_texts(draw: st.DrawFn) -> str:
    year, month, day = (
        draw(st.integers(min_value=0, max_value=9999)),
        draw(st.integers(min_value=0, max_value=99)),
        draw(st.integers(min_value=0, max_value=99)),
    )
    text = draw(st.sampled_from([f"{year:04d}{month:02d}{day:02d}", f"{year:04d}{month:02d}"]))
    if draw(st.booleans()):
        text = text.translate(FULL_WIDTH)
    return draw(st.sampled_from(["", " ", "\u3000"])) + text + draw(st.sampled_from(["", " ", "\t"]))


@settings(PROPERTY, max_examples=300)
@given(date_texts() | st.text(alphabet="0123456789０１２-/ ", max_size=10))
@example("20240229")  # a leap day
@example("20230229")  # not one
@example("19000229")  # nor in a century year
@example("20000229")  # but in a fourth century year
@example("00000101")  # there is no year 0
@example("202613")
@example("2019-08-12")
@example("2019/08/12")
@example("2019-08/12")
@example("2019-8-12")
def test_a_date_is_read_exactly_as_the_calendar_says(text: str) -> None:
    assert vaccination_date(text) == calendar_rule(text)


@settings(PROPERTY, max_examples=200)
@given(st.dates(), st.booleans(), st.booleans())
def test_every_calendar_date_comes_back_from_its_compact_spelling(
    day: date, full_width: bool, month_only: bool
) -> None:
    text = f"{day.year:04d}{day.month:02d}" + ("" if month_only else f"{day.day:02d}")
    assert vaccination_date(text.translate(FULL_WIDTH) if full_width else text) == (
        day.replace(day=1) if month_only else day
    )


ERAS = [
    "明治",
    "大正",
    "昭和",
    "平成",
    "令和",
    "㍾",
    "㍽",
    "㍼",
    "㍻",
    "㋿",
    "M",
    "T",
    "S",
    "H",
    "R",
    "h",
    "r",
]


@st.composite
def era_dates(draw: st.DrawFn) -> str:
    era = draw(st.sampled_from(ERAS))
    year = draw(st.sampled_from(["元"]) | st.integers(min_value=1, max_value=64).map(str))
    month, day = draw(st.integers(min_value=1, max_value=12)), draw(st.integers(min_value=1, max_value=31))
    two = year if year == "元" else f"{int(year):02d}"
    text = draw(
        st.sampled_from(
            [
                f"{era}{year}年{month}月{day}日",
                f"{era}{year}.{month}.{day}",
                f"{era}{year}/{month:02d}/{day:02d}",
                f"{era}{two}{month:02d}{day:02d}",
                f"{era}{two}年{month:02d}月",
            ]
        )
    )
    return text.translate(FULL_WIDTH) if draw(st.booleans()) else text


@settings(PROPERTY, max_examples=150)
@given(era_dates())
@example("平成31年4月30日")  # the last day of Heisei
@example("令和元年5月1日")  # the first day of Reiwa
@example("昭和64年1月7日")  # the last day of Showa
@example("平成元年1月8日")  # the first day of Heisei
@example("R080427")
@example("㋿8.4.27")
def test_a_japanese_era_date_is_read_exactly_or_refused_never_misread(text: str) -> None:
    expected = era_rule(text)
    assert vaccination_date(text) == expected
    value, dropped, _ = read_field("vaccination", "接種日", text)
    assert (value, dropped["invalid_value"]) == ((expected, 0) if expected else (None, 1))


# [C] the first day of each era (the day after the previous emperor's last), written here apart from
# the reader's own table.
ERA_STARTS = {
    "明治": date(1868, 10, 23),
    "大正": date(1912, 7, 30),
    "昭和": date(1926, 12, 25),
    "平成": date(1989, 1, 8),
    "令和": date(2019, 5, 1),
}


def era_rule(text: str) -> date | None:
    """Kanji era (NFKC folds the one-character era signs to it), year (元 = 1), 年, month, 月, and
    optionally day, 日; a day outside its era (or a month wholly outside it) is no date."""
    text = folded(text)
    era = text[:2]
    if era not in ERA_STARTS:
        return None
    rest = text[2:]
    year_text, found, rest = rest.partition("年")
    month_text, found_month, rest = rest.partition("月")
    if not (found and found_month) or (rest not in ("",) and not rest.endswith("日")):
        return None
    day_text = rest[:-1] if rest else ""
    if year_text == "元":
        year_text = "1"
    if not all(ascii_digits(part) and len(part) <= 2 for part in (year_text, month_text)):
        return None
    if rest and not (ascii_digits(day_text) and len(day_text) <= 2):
        return None
    if int(year_text) == 0:
        return None
    year = ERA_STARTS[era].year + int(year_text) - 1
    try:
        first = date(year, int(month_text), 1)
        given = date(year, int(month_text), int(day_text)) if rest else first
    except ValueError:
        return None
    eras = list(ERA_STARTS)
    following = eras.index(era) + 1
    end = ERA_STARTS[eras[following]] if following < len(eras) else date.max
    last = given if rest else (date(year + first.month // 12, first.month % 12 + 1, 1) - timedelta(days=1))
    if last < ERA_STARTS[era] or given >= end:
        return None
    return given


# -- fiscal year, taxation status, free text ---------------------------------------------------------------


@settings(PROPERTY, max_examples=200)
@given(
    st.integers(min_value=0, max_value=99_999)
    .map(str)
    .flatmap(
        lambda year: st.sampled_from([year, year.translate(FULL_WIDTH), f" {year}\u3000", f"{year}年度"])
    )
    | st.text(alphabet="0123456789０１２令和平成元年度R ", max_size=8)
)
@example("令和8")
@example("R8")
@example("平成30年度")
@example("0999")
@example("令和8年度")
@example("令和元年")
@example("平成31年度")
@example("平成32年度")
@example("2026年度")
def test_a_fiscal_year_is_four_digits_from_1000_or_an_era_year_and_nothing_else(text: str) -> None:
    plain = folded(text)
    plain = plain[:-2] if plain.endswith("年度") else plain.removesuffix("年")
    expected = int(plain) if len(plain) == 4 and ascii_digits(plain) and plain >= "1000" else None
    if folded(text)[:2] in ERA_STARTS:
        era, _, rest = folded(text)[2:].partition("年")
        era = "1" if era == "元" else era
        eras = list(ERA_STARTS)
        start = ERA_STARTS[folded(text)[:2]]
        following = eras.index(folded(text)[:2]) + 1
        last_year = ERA_STARTS[eras[following]].year if following < len(eras) else 9999
        if _ and rest in ("", "度") and ascii_digits(era) and len(era) <= 2 and int(era) >= 1:
            year = start.year + int(era) - 1
            expected = year if year <= last_year else None
    assert fiscal_year(text) == expected


STATUSES = {
    "課税": "taxable",
    "非課税": "non_taxable",
    "均等割のみ": "per_capita_only",
    "未申告": "undeclared",
}


@settings(PROPERTY, max_examples=150)
@given(
    st.sampled_from(sorted(STATUSES)).flatmap(
        lambda label: st.sampled_from([label, f" {label}\u3000", label + "済", "非" + label, label[:1]])
    )
    | st.text(max_size=6)
)
def test_a_taxation_status_is_one_of_the_four_labels_or_nothing(text: str) -> None:
    assert taxation_status(text) == STATUSES.get(folded(text))


@settings(PROPERTY, max_examples=300)
@given(
    st.text(max_size=210)
    | st.text(alphabet=st.characters(categories=["Cc", "Cs", "Cf", "Zs", "Zl", "Lo", "Nd"]), max_size=12)
)
@example(" 光が丘\u3000花 ")
@example("ＪＥ２２０１")  # full-width is kept as written, never folded
@example("あ" * 201)
def test_free_text_is_kept_as_written_and_trimmed_or_refused(text: str) -> None:
    stripped = text.strip()
    readable = 0 < len(stripped) <= 200 and not any(unicodedata.category(c) in ("Cc", "Cs") for c in stripped)
    assert free_text(text) == (stripped if readable else None)
