"""The reader of selfPersonalData (issue [15]) on each layout the real portal may plausibly use, and
the mapping that drives it: grouped records, arrays of single-key objects, nulls, the inner JSON
encoded once more, codes as dataset keys, several municipalities, duplicates; wareki, ISO dates and
negative amounts. And what it refuses: a mapping that does not fit the records."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from chalicelib.domain.normalise import UnreadableResult, normalise
from chalicelib.domain.portal_mapping import (
    DEFAULT_MAPPING_FILE,
    MappingError,
    default_mapping,
    load_mapping,
    parse_mapping,
)
from chalicelib.domain.records import LocalTaxRecord, VaccinationRecord

KAWASAKI = "神奈川県川崎市"
NERIMA = "東京都練馬区"

GROUPED_TAX: dict[str, Any] = {
    "課税年度": "令和8年度",
    "課税市区町村": KAWASAKI,
    "課税区分": "課税",
    "所得情報": {
        "給与収入額": "５，２００，０００",
        "給与所得額": "3,700,000",
        "事業所得額": "△120,000",
        "合計所得金額": "3,580,000",
    },
    "所得控除情報": {"社会保険料控除額": "780000", "基礎控除額": "430000", "所得控除合計額": None},
    "扶養情報": {"控除対象配偶者の有無": "無", "扶養親族数": "0"},
    "税額情報": {"市町村民税所得割額": "192000", "年税額": "310000"},
}


def read(document: Any, dataset: Any = "local_tax", **kwargs: Any) -> Any:
    return normalise(json.dumps(document, ensure_ascii=False), dataset=dataset, **kwargs)


def only_tax(document: Any) -> LocalTaxRecord:
    (record,) = read(document).records
    assert isinstance(record, LocalTaxRecord)
    return record


def test_a_grouped_local_tax_record_is_read_through_its_groups() -> None:
    result = read([{KAWASAKI: {"地方税関係情報": GROUPED_TAX}}])
    (record,) = result.records
    assert record.model_dump(exclude_none=True) == {
        "municipality": KAWASAKI,
        "fiscal_year": 2026,
        "taxation_status": "taxable",
        "salary_revenue": 5_200_000,
        "salary_income": 3_700_000,
        "business_income": -120_000,
        "total_income": 3_580_000,
        "social_insurance_deduction": 780_000,
        "basic_deduction": 430_000,
        "dependants": 0,
        "municipal_income_levy": 192_000,
        "annual_tax": 310_000,
    }
    # 課税市区町村 and 控除対象配偶者の有無 are not mapped; 所得控除合計額 is null (absent)
    assert (result.dropped["unknown_field"], result.dropped["blank_value"]) == (2, 1)


def test_groups_and_records_as_arrays_of_single_key_objects_are_read_as_objects() -> None:
    as_arrays = [
        {"課税年度": "2025"},
        {"所得情報": [{"給与収入額": "4000000"}, {"合計所得金額": "2760000"}]},
        {"税額情報": [{"年税額": "250000"}]},
    ]
    record = only_tax([{KAWASAKI: {"地方税関係情報": [as_arrays]}}])
    assert (record.fiscal_year, record.salary_revenue, record.total_income, record.annual_tax) == (
        2025,
        4_000_000,
        2_760_000,
        250_000,
    )
    # the same spread directly under the dataset (a list of single-key objects with distinct keys)
    assert only_tax([{KAWASAKI: {"地方税関係情報": as_arrays}}]) == record


def test_groups_nest_to_any_depth_the_mapping_names() -> None:
    mapping = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    mapping["datasets"]["local_tax"]["fields"]["total_income"]["paths"] = ["所得情報/内訳/合計/合計所得金額"]
    deep = parse_mapping(json.dumps(mapping, ensure_ascii=False))
    document = [
        {
            KAWASAKI: {
                "地方税関係情報": {
                    "課税年度": "2026",
                    "所得情報": {"内訳": {"合計": [{"合計所得金額": "1"}]}},
                }
            }
        }
    ]
    (record,) = read(document, mapping=deep).records
    assert record.total_income == 1


def test_flat_records_as_the_sandbox_sends_them_are_still_read() -> None:
    record = only_tax(
        [{KAWASAKI: {"地方税関係情報": [{"課税年度": "2026", "事業所得": "0", "合計所得金額": "1"}]}}]
    )
    assert (record.fiscal_year, record.business_income, record.total_income) == (2026, 0, 1)


def test_the_inner_json_is_read_unicode_escaped_and_encoded_once_more() -> None:
    document = [{KAWASAKI: {"地方税関係情報": GROUPED_TAX}}]
    escaped = json.dumps(document, ensure_ascii=True)
    assert "\\u" in escaped
    twice = json.dumps(escaped)
    expected = read(document).records
    assert normalise(escaped, dataset="local_tax").records == expected
    assert normalise(twice, dataset="local_tax").records == expected


def test_a_dataset_keyed_by_its_tm_code_is_recognised() -> None:
    for key in ("TM000000000002", "TM000000000002 地方税関係情報", "TM000000000002:所得"):
        assert only_tax([{KAWASAKI: {key: [{"課税年度": "2026"}]}}]).fiscal_year == 2026
    with pytest.raises(UnreadableResult):
        read([{KAWASAKI: {"TM0000000000021": [{"課税年度": "2026"}]}}])


def test_several_municipalities_each_provide_their_records() -> None:
    document = [
        {NERIMA: {"地方税関係情報": [{"課税年度": "2025", "合計所得金額": "1"}]}},
        {KAWASAKI: {"地方税関係情報": [{"課税年度": "2026", "合計所得金額": "2"}]}},
    ]
    assert [(r.municipality, r.fiscal_year) for r in read(document).records] == [
        (NERIMA, 2025),
        (KAWASAKI, 2026),
    ]


def test_exact_duplicates_are_folded_and_counted_but_different_records_are_kept() -> None:
    vaccination = {"予防接種の種類": "BCG", "接種日": "20220510", "ロット番号": "A1"}
    document = [
        {KAWASAKI: {"予防接種情報": [vaccination, dict(vaccination), {**vaccination, "ロット番号": "A2"}]}},
        {
            KAWASAKI: {"予防接種関係情報": [{**vaccination, "接種日": "2022-05-10"}]}
        },  # the same, spelled otherwise
        {NERIMA: {"予防接種情報": [vaccination]}},  # another provider: another record
    ]
    result = read(document, "vaccination")
    assert len(result.records) == 3
    assert result.dropped["duplicate_record"] == 2


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("20220510", date(2022, 5, 10)),
        ("202205", date(2022, 5, 1)),
        ("2022-05-10", date(2022, 5, 10)),
        ("2022/05/10", date(2022, 5, 10)),
        ("令和4年5月10日", date(2022, 5, 10)),
        ("令和４年５月１０日", date(2022, 5, 10)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("平成31年4月30日", date(2019, 4, 30)),
        ("平成元年1月8日", date(1989, 1, 8)),
        ("昭和64年1月7日", date(1989, 1, 7)),
        ("大正15年12月24日", date(1926, 12, 24)),
        ("明治45年7月29日", date(1912, 7, 29)),
        ("令和4年5月", date(2022, 5, 1)),
        ("平成31年5月", None),  # Heisei ended on 30 April 2019
        ("令和元年4月30日", None),
        ("令和0年5月1日", None),
        ("2022-5-10", None),
        ("R4.5.10", None),
    ],
)
def test_dates_are_read_to_iso_in_every_plausible_spelling(spelling: str, expected: date | None) -> None:
    document = [{KAWASAKI: {"予防接種情報": [{"予防接種の種類": "BCG", "接種年月日": spelling}]}}]
    if expected is None:
        with pytest.raises(UnreadableResult) as caught:
            read(document, "vaccination")
        assert caught.value.path == "date"
        return
    (record,) = read(document, "vaccination").records
    assert isinstance(record, VaccinationRecord)
    assert record.date == expected


@pytest.mark.parametrize(
    ("spelling", "year"),
    [
        ("2026", 2026),
        ("2026年度", 2026),
        ("令和8年度", 2026),
        ("令和元年度", 2019),
        ("平成31年", 2019),
        ("R8", None),
    ],
)
def test_fiscal_years_are_read_in_western_and_wareki_spellings(spelling: str, year: int | None) -> None:
    document = [{KAWASAKI: {"地方税関係情報": {"課税年度": spelling}}}]
    if year is None:
        with pytest.raises(UnreadableResult):
            read(document)
        return
    assert only_tax(document).fiscal_year == year


@pytest.mark.parametrize(
    ("spelling", "amount"),
    [
        ("△120,000", -120_000),
        ("▲120000", -120_000),
        ("−120,000", -120_000),
        ("-120000", -120_000),
        ("－１２０，０００", -120_000),
        ("△０", 0),
        ("120,000", 120_000),
        ("△", None),
        ("△-1", None),
        ("12,0000", None),
    ],
)
def test_business_income_may_be_negative(spelling: str, amount: int | None) -> None:
    result = read(
        [{KAWASAKI: {"地方税関係情報": {"課税年度": "2026", "所得情報": {"事業所得額": spelling}}}}]
    )
    (record,) = result.records
    assert record.business_income == amount
    assert result.dropped["invalid_value"] == (amount is None)


def test_only_business_income_may_be_negative() -> None:
    result = read([{KAWASAKI: {"地方税関係情報": {"課税年度": "2026", "所得情報": {"合計所得金額": "△1"}}}}])
    assert (result.records[0].total_income, result.dropped["invalid_value"]) == (None, 1)


def test_two_layouts_that_disagree_on_a_field_give_no_value_for_it() -> None:
    result = read(
        [
            {
                KAWASAKI: {
                    "地方税関係情報": {
                        "課税年度": "2026",
                        "合計所得金額": "1",
                        "所得情報": {"合計所得金額": "2"},
                    }
                }
            }
        ]
    )
    assert (result.records[0].total_income, result.dropped["invalid_value"]) == (None, 2)


def test_an_individual_number_deep_in_a_group_is_removed_with_what_holds_it() -> None:
    number = "123456789018"
    document = [
        {
            KAWASAKI: {
                "地方税関係情報": {
                    "課税年度": "2026",
                    "所得情報": {"給与収入額": number, "合計所得金額": "1"},
                    f"番号{number}": {"合計所得金額": "2"},
                    "扶養情報": [
                        {"扶養親族数": "1"},
                        {"備考": f"個人番号 {number[:4]} {number[4:8]} {number[8:]}"},
                    ],
                }
            }
        }
    ]
    result = read(document)
    assert result.individual_numbers_removed == 3
    record = result.records[0]
    assert (record.salary_revenue, record.total_income, record.dependants) == (None, 1, 1)


def test_unknown_datasets_alone_are_unreadable_but_beside_a_known_one_are_counted() -> None:
    with pytest.raises(UnreadableResult) as caught:
        read([{KAWASAKI: {"課税証明情報": [{"課税年度": "2026"}]}}])
    assert (caught.value.dataset, caught.value.path, caught.value.check) == (
        "local_tax",
        "dataset",
        "result.unreadable",
    )
    assert "課税証明情報" not in str(caught.value)  # a name from the payload is not repeated
    result = read([{KAWASAKI: {"課税証明情報": [{"a": "1"}], "予防接種情報": []}}])
    assert (result.records, result.dropped["unknown_dataset"]) == ((), 1)


def test_another_known_dataset_alone_is_no_data_for_the_one_requested() -> None:
    document = [{KAWASAKI: {"予防接種情報": [{"予防接種の種類": "BCG", "接種日": "20220510"}]}}]
    result = read(document, "local_tax")
    assert (result.records, result.dropped["other_dataset"]) == ((), 1)


# -- the mapping ------------------------------------------------------------------------------------


def shipped() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"))
    return document


def test_the_shipped_mapping_maps_every_record_field() -> None:
    mapping = default_mapping()
    for dataset_id, spec in mapping.datasets.items():
        model = {"local_tax": LocalTaxRecord, "vaccination": VaccinationRecord}[dataset_id]
        assert set(spec.fields) == set(model.model_fields) - {"municipality"}
        assert spec.required


def change(edit: Any) -> str:
    document = shipped()
    edit(document)
    return json.dumps(document, ensure_ascii=False)


def set_type(document: dict[str, Any], dataset: str, name: str, value: str) -> None:
    document["datasets"][dataset]["fields"][name]["type"] = value


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d["datasets"]["local_tax"].update(required=["nope"]), "required names fields"),
        (
            lambda d: d["datasets"]["local_tax"]["fields"].update(nope={"type": "text", "paths": ["x"]}),
            "'nope' is not a field",
        ),
        (lambda d: set_type(d, "local_tax", "total_income", "signed_amount"), "does not fit the field"),
        (lambda d: set_type(d, "vaccination", "date", "text"), "does not fit the field"),
        (lambda d: set_type(d, "local_tax", "fiscal_year", "enum"), "'values' is required"),
        (
            lambda d: d["datasets"]["local_tax"]["fields"]["taxation_status"]["values"].update(課税="yes"),
            "value 'yes'",
        ),
        (lambda d: d["datasets"]["local_tax"].update(code="TM12"), "code"),
        (lambda d: d["datasets"]["vaccination"].update(names=["地方税関係情報"]), "used by both"),
        (
            lambda d: d["datasets"]["local_tax"]["fields"]["annual_tax"].update(paths=["税額情報//年税額"]),
            "empty group name",
        ),
        (
            lambda d: d["datasets"]["local_tax"]["fields"]["annual_tax"].update(paths=["課税年度"]),
            "mapped to both",
        ),
        (lambda d: d["datasets"]["local_tax"]["fields"]["annual_tax"].update(paths=[]), "paths"),
        (lambda d: d["datasets"].update(pension={}), "datasets.pension"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_a_mapping_that_does_not_fit_is_refused_naming_the_setting_and_problem(
    edit: Any, problem: str
) -> None:
    with pytest.raises(MappingError) as caught:
        parse_mapping(change(edit))
    assert str(caught.value).startswith("RELAY_PORTAL_MAPPING_FILE: ")
    assert problem in str(caught.value)


def test_a_mapping_file_is_read_once_and_refused_when_unreadable(tmp_path: Any) -> None:
    path = tmp_path / "m.json"
    path.write_text(
        change(lambda d: d["datasets"]["local_tax"].update(names=["所得情報X"])), encoding="utf-8"
    )
    assert load_mapping(str(path)) is load_mapping(str(path))
    assert load_mapping(str(path)).dataset_of("所得情報X") == "local_tax"
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(str(tmp_path / "absent.json"))
    (tmp_path / "latin1.json").write_bytes('{"x": "\xe9"}'.encode("latin-1"))
    with pytest.raises(MappingError, match="not UTF-8"):
        load_mapping(str(tmp_path / "latin1.json"))


def test_a_mapping_must_cover_every_dataset() -> None:
    with pytest.raises(MappingError, match="no mapping for dataset vaccination"):
        parse_mapping(change(lambda d: d["datasets"].pop("vaccination")))
