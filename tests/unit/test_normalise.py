"""The parser of selfPersonalData (IF001-06): size, JSON, shape, the Individual Number guard, then
typed records of the requested dataset, with everything dropped counted and nothing passed through."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.domain.datasets import DATASETS, DatasetId
from chalicelib.domain.errors import RelayError
from chalicelib.domain.individual_number import check_digit, contains_individual_number
from chalicelib.domain.normalise import (
    DROP_REASONS,
    MalformedResult,
    NormalisedResult,
    UnreadableResult,
    normalise,
)
from chalicelib.domain.portal_labels import DATASET_IDS, FIELD_NAMES, TAXATION_STATUSES
from chalicelib.domain.records import RECORD_MODELS, LocalTaxRecord, VaccinationRecord
from sandbox.personas import load_personas
from sandbox.portal import build_self_personal_data

INQUIRY = date(2026, 11, 27)
SERVICE_ITEMS: dict[DatasetId, tuple[str, ...]] = {
    "local_tax": ("地方税関係情報",),
    "vaccination": ("予防接種関係情報",),
}
PERSONAS = load_personas()
KAWASAKI = "神奈川県川崎市"
FULL_WIDTH = str.maketrans("0123456789,", "０１２３４５６７８９，")


def persona_result(
    persona_id: str, dataset: DatasetId, items: tuple[str, ...] | None = None
) -> NormalisedResult:
    data = build_self_personal_data(PERSONAS[persona_id], items or SERVICE_ITEMS[dataset], INQUIRY)
    return normalise(json.dumps(data, ensure_ascii=False), dataset=dataset)


def encoded(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries), ensure_ascii=False)


def local_tax(*records: dict[str, Any], municipality: str = KAWASAKI) -> dict[str, Any]:
    return {municipality: {"地方税関係情報": list(records)}}


def vaccination(*records: dict[str, Any], municipality: str = KAWASAKI) -> dict[str, Any]:
    return {municipality: {"予防接種関係情報": list(records)}}


def one_local_tax_record(fields: dict[str, Any]) -> LocalTaxRecord | None:
    """The record read from ``fields``, with the fiscal year the mapping requires if not given."""
    records = normalise(encoded(local_tax({"課税年度": "2026", **fields})), dataset="local_tax").records
    assert len(records) <= 1
    return records[0] if records and isinstance(records[0], LocalTaxRecord) else None


REQUIRED_VACCINATION = {"予防接種の種類": "BCG", "接種日": "20220510"}


def one_vaccination_record(fields: dict[str, Any]) -> VaccinationRecord | None:
    """The record read from ``fields``, with the vaccine and date the mapping requires if not given."""
    records = normalise(
        encoded(vaccination({**REQUIRED_VACCINATION, **fields})), dataset="vaccination"
    ).records
    assert len(records) <= 1
    return records[0] if records and isinstance(records[0], VaccinationRecord) else None


def holds_individual_number(record: LocalTaxRecord | VaccinationRecord) -> bool:
    values = record.model_dump(mode="json").values()
    return any(isinstance(value, str | int) and contains_individual_number(value) for value in values)


# -- the label mapping agrees with the vocabulary partners register against ------------------------------


@pytest.mark.parametrize("dataset", ["local_tax", "vaccination"])
def test_every_portal_label_maps_to_a_record_field_and_every_field_but_municipality_has_one(
    dataset: DatasetId,
) -> None:
    mapped = set(FIELD_NAMES[dataset].values())
    assert mapped == set(RECORD_MODELS[dataset].model_fields) - {"municipality"}
    assert set(RECORD_MODELS[dataset].model_fields) == DATASETS[dataset].field_names


def test_every_dataset_has_a_portal_name() -> None:
    assert sorted(set(DATASET_IDS.values())) == sorted(DATASETS)


# -- sandbox personas ------------------------------------------------------------------------------------

ORDINARY = [
    (persona_id, dataset)
    for persona_id in sorted(PERSONAS)
    if persona_id != "individual-number"
    for dataset in ("local_tax", "vaccination")
]


@pytest.mark.parametrize(("persona_id", "dataset"), ORDINARY)
def test_every_sandbox_persona_is_read_completely(persona_id: str, dataset: DatasetId) -> None:
    # GIVEN what the sandbox portal returns for this persona on 2026-11-27
    result = persona_result(persona_id, dataset)
    # THEN nothing is dropped, and every record has every field
    assert dict(result.dropped) == dict.fromkeys(DROP_REASONS, 0)
    assert result.individual_numbers_removed == 0
    for record in result.records:
        assert None not in record.model_dump().values()


def test_the_salaried_persona_yields_the_latest_decided_fiscal_year() -> None:
    (record,) = persona_result("salaried", "local_tax").records
    assert isinstance(record, LocalTaxRecord)
    assert (record.fiscal_year, record.municipality) == (2026, KAWASAKI)
    assert (record.taxation_status, record.total_income, record.dependants) == ("taxable", 3_680_000, 1)


def test_the_moved_persona_is_levied_by_the_new_municipality() -> None:
    (record,) = persona_result("moved", "local_tax").records
    assert isinstance(record, LocalTaxRecord)
    assert (record.fiscal_year, record.municipality, record.total_income) == (
        2026,
        "神奈川県横浜市",
        3_095_000,
    )


def test_the_non_taxable_persona_is_non_taxable() -> None:
    (record,) = persona_result("non-taxable", "local_tax").records
    assert isinstance(record, LocalTaxRecord)
    assert record.taxation_status == "non_taxable"
    assert record.annual_tax == 0


def test_the_parent_gets_the_childs_vaccinations_of_the_last_five_years() -> None:
    records = persona_result("parent-vaccination", "vaccination").records
    assert all(isinstance(record, VaccinationRecord) for record in records)
    assert [getattr(record, "date", None) for record in records] == [
        date(2022, 9, 12),
        date(2022, 10, 10),
        date(2025, 5, 20),
        date(2026, 4, 18),
    ]
    first = records[0]
    assert isinstance(first, VaccinationRecord)
    assert (first.vaccine, first.dose, first.lot_number, first.doctor) == (
        "日本脳炎",
        "第1期 1回目",
        "JE2201",
        "光が丘 花",
    )


def test_the_no_data_persona_yields_no_records() -> None:
    assert persona_result("no-data", "local_tax").records == ()


def test_the_individual_number_persona_loses_exactly_its_three_numbers() -> None:
    result = persona_result("individual-number", "local_tax")
    assert result.individual_numbers_removed == 3
    assert dict(result.dropped) == dict.fromkeys(DROP_REASONS, 0)


def test_no_field_of_the_individual_number_persona_holds_a_number() -> None:
    (record,) = persona_result("individual-number", "local_tax").records
    assert not holds_individual_number(record)
    assert getattr(record, "total_income", None) == 4_370_000


def test_records_of_the_dataset_not_requested_are_dropped_and_counted() -> None:
    # GIVEN a result carrying both datasets (1 local-tax record, 4 vaccinations)
    both = SERVICE_ITEMS["local_tax"] + SERVICE_ITEMS["vaccination"]
    # WHEN local tax is requested
    result = persona_result("parent-vaccination", "local_tax", both)
    # THEN only the local-tax record remains, and the vaccinations are counted per record
    assert [type(record) for record in result.records] == [LocalTaxRecord]
    assert result.dropped["other_dataset"] == 4


# -- size, JSON and shape ------------------------------------------------------------------------------


def test_an_oversized_payload_is_refused() -> None:
    payload = encoded(local_tax({"課税年度": "2026"}))
    with pytest.raises(MalformedResult) as caught:
        normalise(payload, dataset="local_tax", max_bytes=len(payload) - 1)
    assert caught.value.check == "result.size"


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    payload = encoded(local_tax({"課税年度": "2026"}))  # Japanese: 3 bytes a character
    with pytest.raises(MalformedResult, match="larger than"):
        normalise(payload, dataset="local_tax", max_bytes=len(payload))


def test_a_payload_at_the_size_limit_is_read() -> None:
    payload = encoded(local_tax({"課税年度": "2026"}))
    result = normalise(payload, dataset="local_tax", max_bytes=len(payload.encode()))
    assert len(result.records) == 1


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "not json",
        '[{"神奈川県川崎市": ',
        "[NaN]",
        "[Infinity]",
        "[-Infinity]",
        "[1e400]",
        '[{"a": {"地方税関係情報": [{"課税年度": "2025", "課税年度": "2026"}]}}]',
        "\ufeff[]",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["empty", "text", "truncated", "nan", "inf", "-inf", "overflow", "duplicate-key", "bom", "deep"],
)
def test_what_is_not_strict_json_is_refused(payload: str) -> None:
    with pytest.raises(MalformedResult) as caught:
        normalise(payload, dataset="local_tax")
    assert caught.value.check == "result.json"


@pytest.mark.parametrize(
    "payload",
    [
        "{}",
        '"{}"',
        "[1]",
        '[{"a": []}]',
        '[{"a": {"地方税関係情報": 1}}]',
        '[{"a": {"地方税関係情報": [1]}}]',
        '[{"a": {"地方税関係情報": [{"f": true}]}}]',
        '[{"a": {"地方税関係情報": [{"課税年度": "2026", "f": [true]}]}}]',
        '[{"a": {"地方税関係情報": ' + '{"g": ' * 40 + '"1"' + "}" * 40 + "}}]",
    ],
    ids=[
        "object",
        "string-object",
        "scalar",
        "datasets-list",
        "records-scalar",
        "record-scalar",
        "bool",
        "bool-in-array",
        "too-deep",
    ],
)
def test_what_is_not_a_list_of_municipality_dataset_records_is_refused(payload: str) -> None:
    with pytest.raises(MalformedResult) as caught:
        normalise(payload, dataset="local_tax")
    assert caught.value.check == "result.shape"


@pytest.mark.parametrize(
    "payload",
    [
        "[]",
        "null",
        '"[]"',
        "[{}]",
        "[null]",
        '[{"a": null}]',
        '[{"a": {}, "b": {}}]',
        '[{"a": {"地方税関係情報": null}}]',
        '[{"a": {"地方税関係情報": []}}]',
    ],
)
def test_no_data_is_a_result_without_records(payload: str) -> None:
    result = normalise(payload, dataset="vaccination")
    assert (result.records, result.individual_numbers_removed) == ((), 0)
    assert normalise(payload, dataset="local_tax").records == ()


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ('[{"a": {"d": {}}}]', "dataset"),
        ('[{"a": {"d": [{"f": "1"}]}}]', "dataset"),
        ('[{"a": {"地方税関係情報": [{"f": null}]}}]', "fiscal_year"),
        ('[{"a": {"地方税関係情報": [{"f": ["1"]}]}}]', "fiscal_year"),
        ('[{"a": {"地方税関係情報": [{"f": {"g": "1"}}]}}]', "fiscal_year"),
        ('[{"a": {"地方税関係情報": [{"所得情報": {"課税年度": "2026"}}]}}]', "fiscal_year"),
    ],
)
def test_what_the_mapping_cannot_read_is_an_unreadable_result(payload: str, path: str) -> None:
    with pytest.raises(UnreadableResult) as caught:
        normalise(payload, dataset="local_tax")
    assert (caught.value.check, caught.value.path, caught.value.dataset) == (
        "result.unreadable",
        path,
        "local_tax",
    )


@pytest.mark.parametrize(
    ("payload", "max_bytes"),
    [
        ('[{"秘密の値": {"地方税関係情報": [{"課税年度": "秘密の値"}]}}]', 10),
        ('[{"秘密の値": {"地方税関係情報": [{"課税年度": "秘密の値"', 2_000_000),
        ('{"秘密の値": "秘密の値"}', 2_000_000),
        ('[{"秘密の値": {"地方税関係情報": [{"課税年度": ["秘密の値"]}]}}]', 2_000_000),
    ],
    ids=["size", "json", "shape-top", "shape-value"],
)
def test_a_malformed_result_never_carries_any_part_of_the_payload(payload: str, max_bytes: int) -> None:
    with pytest.raises(MalformedResult) as caught:
        normalise(payload, dataset="local_tax", max_bytes=max_bytes)
    error = caught.value
    for text in (str(error), repr(error), error.detail, str(error.check), *error.errors):
        assert "秘密" not in text
        assert "地方税" not in text
    # nor through a chained exception: JSONDecodeError keeps the whole document in ``doc``
    assert error.__cause__ is None
    assert error.__context__ is None


def test_a_malformed_result_is_an_unavailable_relay_error() -> None:
    with pytest.raises(MalformedResult) as caught:
        normalise("[", dataset="local_tax")
    assert isinstance(caught.value, RelayError)
    assert (caught.value.code, caught.value.category) == ("malformed-result", "unavailable")


# -- the Individual Number guard --------------------------------------------------------------------------


def test_a_number_inside_a_known_field_removes_the_field() -> None:
    record = one_local_tax_record({"課税年度": "2026", "給与収入額": "123456789018"})
    assert record is not None
    assert (record.fiscal_year, record.salary_revenue) == (2026, None)


def test_a_number_sent_as_a_json_number_is_removed_and_counted() -> None:
    result = normalise(
        encoded(local_tax({"課税年度": "2026", "合計所得金額": 621498320257})), dataset="local_tax"
    )
    assert result.individual_numbers_removed == 1
    assert getattr(result.records[0], "total_income", None) is None


def test_a_number_spelled_as_a_grouped_amount_is_removed() -> None:
    # "123,456,789,018" reads as the amount 123456789018, a valid number: it must not come through.
    result = normalise(
        encoded(local_tax({"課税年度": "2026", "合計所得金額": "123,456,789,018"})), dataset="local_tax"
    )
    assert result.individual_numbers_removed == 1
    assert not holds_individual_number(result.records[0])


def test_a_number_in_a_field_label_removes_the_field() -> None:
    result = normalise(encoded(local_tax({"課税年度": "2026", "番号621498320257": "x"})), dataset="local_tax")
    assert (result.individual_numbers_removed, result.dropped["unknown_field"]) == (1, 0)


def test_a_number_in_the_municipality_key_removes_the_whole_entry() -> None:
    payload = encoded(local_tax({"課税年度": "2026"}, municipality="川崎市 6214-9832-0257"))
    result = normalise(payload, dataset="local_tax")
    assert (result.records, result.individual_numbers_removed) == ((), 1)


def test_a_number_in_a_dataset_name_removes_that_dataset() -> None:
    payload = encoded({KAWASAKI: {"地方税関係情報 123456789018": [{"課税年度": "2026"}]}})
    result = normalise(payload, dataset="local_tax")
    assert (result.records, result.individual_numbers_removed, result.dropped["unknown_dataset"]) == (
        (),
        1,
        0,
    )


def test_numbers_in_datasets_not_requested_are_counted_too() -> None:
    payload = encoded(vaccination({"ロット番号": "123456789018"}), local_tax({"課税年度": "2026"}))
    result = normalise(payload, dataset="local_tax")
    assert result.individual_numbers_removed == 1


# -- mapping and converters ---------------------------------------------------------------------------------


def test_the_municipality_comes_from_the_grouping_key() -> None:
    record = one_local_tax_record({"課税年度": "2026"})
    assert record is not None
    assert record.municipality == KAWASAKI


@pytest.mark.parametrize(
    "spelling",
    [
        "3680000",
        "3,680,000",
        "３６８００００",
        "３，６８０，０００",
        " 3680000 ",
        "03680000",
        3680000,
        3680000.0,
    ],
)
def test_amounts_are_read_in_every_tolerated_spelling(spelling: str | int | float) -> None:
    record = one_local_tax_record({"合計所得金額": spelling})
    assert record is not None
    assert record.total_income == 3_680_000


@pytest.mark.parametrize(
    "spelling", ["-1", "3,68,0000", "3680,000", "1.5", "1e6", "三百六十八万", "3680000円", -1, 1.5, "1" * 16]
)
def test_an_unreadable_amount_is_dropped_and_counted_never_passed_through(
    spelling: str | int | float,
) -> None:
    result = normalise(
        encoded(local_tax({"課税年度": "2026", "合計所得金額": spelling})), dataset="local_tax"
    )
    assert result.dropped["invalid_value"] == 1
    assert getattr(result.records[0], "total_income", "missing") is None


@pytest.mark.parametrize("spelling", ["", "  ", "\u3000"])
def test_a_blank_value_is_absent_and_counted_as_blank(spelling: str) -> None:
    result = normalise(encoded(local_tax({"課税年度": "2026", "事業所得": spelling})), dataset="local_tax")
    assert (result.dropped["blank_value"], result.dropped["invalid_value"]) == (1, 0)


@pytest.mark.parametrize(
    ("label", "status"), [(label, status) for label, status in TAXATION_STATUSES.items()]
)
def test_each_taxation_status_has_its_english_name(label: str, status: str) -> None:
    record = one_local_tax_record({"課税区分": label})
    assert record is not None
    assert record.taxation_status == status


@pytest.mark.parametrize("label", ["課税済", "taxable", "1"])
def test_an_unknown_taxation_status_is_dropped(label: str) -> None:
    result = normalise(encoded(local_tax({"課税年度": "2026", "課税区分": label})), dataset="local_tax")
    assert result.dropped["invalid_value"] == 1


@pytest.mark.parametrize(("spelling", "year"), [("2026", 2026), ("２０２６", 2026), (2026, 2026)])
def test_the_fiscal_year_is_read_as_a_year(spelling: str | int, year: int) -> None:
    record = one_local_tax_record({"課税年度": spelling})
    assert record is not None
    assert record.fiscal_year == year


@pytest.mark.parametrize(
    "spelling", ["令和8", "26", "0999", "20260", "令和8年4月", "平成32年度", "令和0年度"]
)
def test_a_fiscal_year_that_cannot_be_read_makes_the_record_unreadable(spelling: str) -> None:
    with pytest.raises(UnreadableResult) as caught:
        normalise(encoded(local_tax({"課税年度": spelling, "年税額": "1"})), dataset="local_tax")
    assert caught.value.path == "fiscal_year"


def test_a_year_and_month_date_is_the_first_of_the_month() -> None:
    record = one_vaccination_record({"接種日": "202205"})
    assert record is not None
    assert record.date == date(2022, 5, 1)


@pytest.mark.parametrize(
    "spelling",
    ["20190230", "2019-8-12", "201913", "2019", "00000101", "2019081", "平成31年5月1日", "令和1年4月30日"],
)
def test_an_unreadable_date_makes_the_record_unreadable(spelling: str) -> None:
    with pytest.raises(UnreadableResult) as caught:
        normalise(
            encoded(vaccination({"予防接種の種類": "BCG", "接種日": spelling, "ロット番号": "A1"})),
            dataset="vaccination",
        )
    assert caught.value.path == "date"


def test_text_fields_are_trimmed_but_otherwise_kept_as_written() -> None:
    record = one_vaccination_record({"医師名": " 光が丘　花 ", "ロット番号": "ＪＥ２２０１"})
    assert record is not None
    assert (record.doctor, record.lot_number) == ("光が丘　花", "ＪＥ２２０１")


@pytest.mark.parametrize("spelling", ["練馬\x00太一", "練馬\n太一", "あ" * 201, "\ud800"])
def test_text_with_control_characters_or_too_long_is_dropped(spelling: str) -> None:
    result = normalise(
        encoded(vaccination({**REQUIRED_VACCINATION, "医師名": spelling, "ロット番号": "A1"})),
        dataset="vaccination",
    )
    assert result.dropped["invalid_value"] == 1


def test_a_number_in_a_text_field_is_read_as_text() -> None:
    record = one_vaccination_record({"ロット番号": 4501})
    assert record is not None
    assert record.lot_number == "4501"


def test_unknown_fields_are_dropped_and_counted() -> None:
    result = normalise(
        encoded(local_tax({"課税年度": "2026", "備考": "x", "課税市区町村": "川崎市"})), dataset="local_tax"
    )
    assert result.dropped["unknown_field"] == 2


def test_unknown_datasets_beside_a_known_one_are_dropped_and_counted_per_record() -> None:
    payload = encoded({KAWASAKI: {"国民年金関係情報": [{"a": "1"}, {"a": "2"}], "地方税関係情報": []}})
    result = normalise(payload, dataset="local_tax")
    assert (result.records, result.dropped["unknown_dataset"]) == ((), 2)


def test_a_record_left_without_any_field_is_unreadable_not_dropped() -> None:
    with pytest.raises(UnreadableResult) as caught:
        normalise(encoded(local_tax({"備考": "x", "摘要": "y"}, {"課税年度": "2026"})), dataset="local_tax")
    assert caught.value.path == "fiscal_year"


def test_a_blank_municipality_makes_its_records_unreadable() -> None:
    with pytest.raises(UnreadableResult) as caught:
        normalise(encoded(local_tax({"課税年度": "2026"}, municipality=" ")), dataset="local_tax")
    assert caught.value.path == "municipality"


def test_the_dropped_counts_are_read_only() -> None:
    result = normalise("[]", dataset="local_tax")
    with pytest.raises(TypeError):
        result.dropped["unknown_field"] = 1  # type: ignore[index]


def test_neither_the_result_nor_a_record_shows_values_in_its_repr() -> None:
    result = persona_result("salaried", "local_tax")
    shown = repr(result) + repr(result.records[0]) + str(result.records[0])
    assert "3680000" not in shown
    assert KAWASAKI not in shown


# -- properties -----------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(
    st.integers(min_value=0, max_value=10**11 - 1),
    st.sampled_from(["{:d}", "{:,d}"]),
    st.booleans(),
)
def test_amounts_round_trip(amount: int, pattern: str, full_width: bool) -> None:
    # Below 10**11 an amount has at most 11 digits, so it can never spell an Individual Number.
    spelling = pattern.format(amount)
    record = one_local_tax_record({"給与収入額": spelling.translate(FULL_WIDTH) if full_width else spelling})
    assert record is not None
    assert record.salary_revenue == amount


@settings(max_examples=150)
@given(st.dates(min_value=date(1000, 1, 1)), st.booleans())
def test_dates_round_trip(day: date, month_only: bool) -> None:
    spelling = f"{day.year:04d}{day.month:02d}" + ("" if month_only else f"{day.day:02d}")
    record = one_vaccination_record({"接種日": spelling})
    assert record is not None
    assert record.date == (day.replace(day=1) if month_only else day)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def read_or_refuse(payload: str, dataset: DatasetId) -> NormalisedResult | None:
    """The parser's contract: a result, or MalformedResult; any other exception fails the test."""
    try:
        return normalise(payload, dataset=dataset)
    except MalformedResult:
        return None


@settings(max_examples=150)
@given(json_values, st.sampled_from(["local_tax", "vaccination"]))
def test_arbitrary_json_is_read_or_refused_as_malformed(document: Any, dataset: DatasetId) -> None:
    result = read_or_refuse(json.dumps(document, ensure_ascii=False), dataset)
    assert result is None or not any(holds_individual_number(record) for record in result.records)


@settings(max_examples=100)
@given(st.text(max_size=60), st.sampled_from(["local_tax", "vaccination"]))
def test_arbitrary_text_is_read_or_refused_as_malformed(text: str, dataset: DatasetId) -> None:
    read_or_refuse(text, dataset)


eleven_digits = st.text(alphabet="0123456789", min_size=11, max_size=11)
spelled_numbers = st.builds(
    lambda digits, separator, before, after: (
        before + separator.join(digits + str(check_digit(digits))) + after
    ),
    eleven_digits,
    st.sampled_from(["", " ", "-", "\u3000", "－", ","]),
    st.text(max_size=4),
    st.text(max_size=4),
)
known_labels = sorted({label for labels in FIELD_NAMES.values() for label in labels})
field_values = st.one_of(
    spelled_numbers,
    st.from_regex(r"[0-9０-９,，]{1,16}", fullmatch=True),
    st.from_regex(r"[0-9]{6,8}", fullmatch=True),
    st.sampled_from(sorted(TAXATION_STATUSES)),
    st.integers(min_value=-(10**13), max_value=10**13),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
records = st.dictionaries(st.sampled_from(known_labels) | st.text(max_size=4), field_values, max_size=6)
portal_like = st.lists(
    st.dictionaries(
        st.sampled_from([KAWASAKI, "東京都練馬区"]) | st.text(max_size=6) | spelled_numbers,
        st.dictionaries(
            st.sampled_from(sorted(DATASET_IDS)) | st.text(max_size=4),
            st.lists(records, max_size=3),
            max_size=2,
        ),
        min_size=1,
        max_size=1,
    ),
    max_size=3,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(portal_like, st.sampled_from(["local_tax", "vaccination"]))
def test_no_record_ever_holds_an_individual_number(document: Any, dataset: DatasetId) -> None:
    try:
        result = normalise(json.dumps(document, ensure_ascii=False), dataset=dataset)
    except UnreadableResult:
        return  # nothing is delivered
    assert not any(holds_individual_number(record) for record in result.records)


@settings(max_examples=100)
@given(spelled_numbers, st.sampled_from(known_labels))
def test_a_number_anywhere_in_a_field_is_always_counted(value: str, label: str) -> None:
    # Beside the fields the mapping requires (a required field holding a number is replaced by 備考,
    # an unknown field, so that the record stays readable and the count is seen).
    def readable(required: dict[str, str]) -> dict[str, str]:
        return {**required, ("備考" if label in required else label): value}

    result = normalise(
        encoded(local_tax(readable({"課税年度": "2026"})), vaccination(readable(REQUIRED_VACCINATION))),
        dataset="local_tax",
    )
    assert result.individual_numbers_removed == 2
