"""The real-shapes personas: /result in the shapes docs/mynaportal.md expects of the real portal
(groups, arrays of single-key objects, null, wareki, several date spellings, △ and full-width
amounts, unicode escaping, two municipalities, an exact duplicate), and the records each documents
as what the relay should read."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date
from typing import Any

import pytest

from sandbox.personas import ALL_PERSONA_DIRS, REAL_SHAPES_DIR, load_personas
from sandbox.portal import Portal
from tests.sandbox.conftest import VACCINATION_SERVICE, fetch, start_retrieval
from tests.sandbox.test_personas import individual_number_is_valid

INCOME = "real-shapes-income"
VACCINATION = "real-shapes-vaccination"
SETAGAYA, YOKOHAMA = "東京都世田谷区", "神奈川県横浜市"
NERIMA, SAITAMA = "東京都練馬区", "埼玉県さいたま市"


def raw_payload(portal: Portal, persona: str, inquiry: str = "Date=20261127") -> str:
    service = VACCINATION_SERVICE if persona == VACCINATION else None
    retrieval = (
        start_retrieval(portal, persona, service, inquiry)
        if service
        else start_retrieval(portal, persona, inquiry=inquiry)
    )
    answer = fetch(portal, retrieval)
    assert answer.status == 200
    assert answer.body["commonHeader"]["errorCode"] == ""
    payload = answer.body["selfPersonalDataProvisionInfo"]["selfPersonalData"]
    assert isinstance(payload, str)
    return payload


def walk(value: Any) -> list[Any]:
    """Every scalar (including None) anywhere in a JSON value, and every key."""
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in (key, *walk(inner))]
    if isinstance(value, list):
        return [item for inner in value for item in walk(inner)]
    return [value]


# -- where the personas live ------------------------------------------------------------------------------


def test_real_shapes_personas_are_offered_by_the_server_but_not_in_the_flat_set() -> None:
    flat = load_personas()
    every = load_personas(*ALL_PERSONA_DIRS)
    assert {INCOME, VACCINATION} <= set(every)
    assert {INCOME, VACCINATION}.isdisjoint(flat)
    assert set(load_personas(REAL_SHAPES_DIR)) == {INCOME, VACCINATION}
    # the flat personas keep flat string fields: tests that walk every persona rely on it
    for persona in flat.values():
        for record in (*persona.local_tax, *persona.vaccination):
            assert all(isinstance(value, str) for value in record.fields.values()), persona.id


def test_real_shapes_personas_hold_no_valid_individual_number() -> None:
    for persona in load_personas(REAL_SHAPES_DIR).values():
        for record in (*persona.local_tax, *persona.vaccination):
            for value in walk(record.fields):
                for match in re.findall(r"(?<!\d)\d{12}(?!\d)", unicodedata.normalize("NFKC", str(value))):
                    assert not individual_number_is_valid(match), (persona.id, match)


# -- income ---------------------------------------------------------------------------------------------------


def test_income_is_unicode_escaped_json_in_a_string(portal: Portal) -> None:
    payload = raw_payload(portal, INCOME)
    assert payload.isascii()
    assert "\\u" in payload
    assert "令和" not in payload
    assert "令和8年度" in json.loads(payload)[1][YOKOHAMA]["地方税関係情報"][0]["課税年度"]


def test_income_comes_from_two_municipalities_with_one_exact_duplicate(portal: Portal) -> None:
    data = json.loads(raw_payload(portal, INCOME))
    assert [next(iter(entry)) for entry in data] == [SETAGAYA, YOKOHAMA]
    assert all(len(entry) == 1 for entry in data)
    (setagaya,) = data[0][SETAGAYA]["地方税関係情報"]
    first, second = data[1][YOKOHAMA]["地方税関係情報"]
    assert first == second
    assert setagaya["課税年度"] == "令和7年度"


def test_income_is_grouped_with_arrays_of_single_key_objects(portal: Portal) -> None:
    record = json.loads(raw_payload(portal, INCOME))[1][YOKOHAMA]["地方税関係情報"][0]
    income = record["所得情報"]
    assert isinstance(income, list)
    assert all(isinstance(item, dict) and len(item) == 1 for item in income)
    assert isinstance(record["所得控除情報"], dict)
    assert isinstance(record["税額情報"], dict)
    assert isinstance(record["扶養情報"], dict)
    # [O] the integration reads a period's start from element [0] and its end from element [1]
    period = record["所得期間情報"]
    assert (period[0], period[1]) == ({"所得期間開始年月": "202501"}, {"所得期間終了年月": "202512"})


def test_income_has_nulls_empty_strings_and_every_date_and_amount_spelling(portal: Portal) -> None:
    data = json.loads(raw_payload(portal, INCOME))
    setagaya = data[0][SETAGAYA]["地方税関係情報"][0]
    yokohama = data[1][YOKOHAMA]["地方税関係情報"][0]
    values = walk(data)
    assert None in values
    assert yokohama["所得控除情報"]["地震保険料控除額"] == ""
    assert {"公的年金等収入額": None} in yokohama["所得情報"]
    # wareki, YYYYMMDD, YYYYMM, YYYY-MM-DD
    assert (yokohama["課税年度"], setagaya["転入年月日"]) == ("令和8年度", "令和元年5月1日")
    assert setagaya["決定年月日"] == "20250601"
    assert yokohama["決定年月日"] == "2026-06-01"
    assert re.fullmatch(r"\d{6}", yokohama["所得期間情報"][0]["所得期間開始年月"])
    # a business loss with △ in full-width digits and commas; full-width and comma amounts elsewhere
    assert {"事業所得額": "△３００，０００"} in yokohama["所得情報"]
    assert {"給与所得額": "3,095,000"} in yokohama["所得情報"]
    assert {"給与収入額": "４３０００００"} in setagaya["所得情報"]


def test_income_before_june_comes_from_the_old_municipality_only(portal: Portal) -> None:
    data = json.loads(raw_payload(portal, INCOME, "Date=20260531"))
    assert [next(iter(entry)) for entry in data] == [SETAGAYA]


# -- vaccination ------------------------------------------------------------------------------------------------


def test_vaccination_uses_its_own_dataset_key_two_municipalities_and_a_duplicate(portal: Portal) -> None:
    payload = raw_payload(portal, VACCINATION)
    assert payload.isascii()
    data = json.loads(payload)
    assert [next(iter(entry)) for entry in data] == [NERIMA, SAITAMA]
    nerima = data[0][NERIMA]["予防接種情報"]
    saitama = data[1][SAITAMA]["予防接種情報"]
    assert "予防接種関係情報" not in data[0][NERIMA]
    assert isinstance(nerima, list)
    assert len(saitama) == 2
    # the exact duplicate, and the 2020 record left out by the 5-year window
    assert len(nerima) == 3
    assert nerima[1] == nerima[2]
    assert "令和2年6月10日" not in walk(data)
    # dates in three spellings; nulls; a nested array of single-key objects
    assert [r["接種年月日"] for r in nerima + saitama] == [
        "令和4年10月3日",
        "2022-10-31",
        "2022-10-31",
        "20250520",
        "20251015",
    ]
    assert (nerima[1]["接種医療機関"], nerima[1]["医師名"]) == (None, None)
    assert all(len(item) == 1 for item in nerima[0]["ワクチン情報"])


# -- what the relay should read: the documented records follow from the payload ---------------------------

_ERAS = {"令和": 2018, "平成": 1988}
_LOCAL_TAX = {
    "課税年度": "fiscal_year",
    "課税区分": "taxation_status",
    "給与収入額": "salary_revenue",
    "給与所得額": "salary_income",
    "公的年金等収入額": "public_pension_revenue",
    "事業所得額": "business_income",
    "合計所得金額": "total_income",
    "総所得金額等": "total_income_etc",
    "社会保険料控除額": "social_insurance_deduction",
    "配偶者控除額": "spouse_deduction",
    "扶養控除額": "dependant_deduction",
    "基礎控除額": "basic_deduction",
    "所得控除合計額": "total_deductions",
    "課税標準額": "taxable_base",
    "扶養親族数": "dependants",
    "市町村民税所得割額": "municipal_income_levy",
    "市町村民税均等割額": "municipal_per_capita_levy",
    "道府県民税所得割額": "prefectural_income_levy",
    "道府県民税均等割額": "prefectural_per_capita_levy",
    "年税額": "annual_tax",
}
_VACCINATION = {
    "予防接種の種類": "vaccine",
    "接種回数": "dose",
    "接種年月日": "date",
    "ロット番号": "lot_number",
    "医師名": "doctor",
}


def _flatten(value: Any) -> dict[str, Any]:
    """Groups (objects) and arrays of single-key objects, flattened to label → scalar."""
    flat: dict[str, Any] = {}
    items = value.items() if isinstance(value, dict) else (i for obj in value for i in obj.items())
    for key, inner in items:
        if isinstance(inner, dict | list):
            flat.update(_flatten(inner))
        else:
            flat[key] = inner
    return flat


def _year(text: str) -> int:
    match = re.fullmatch(r"(令和|平成)(元|\d+)年度?", text)
    assert match, text
    return _ERAS[match[1]] + (1 if match[2] == "元" else int(match[2]))


def _iso(text: str) -> str:
    wareki = re.fullmatch(r"(令和|平成)(元|\d+)年(\d+)月(\d+)日", text)
    if wareki:
        year = _ERAS[wareki[1]] + (1 if wareki[2] == "元" else int(wareki[2]))
        return date(year, int(wareki[3]), int(wareki[4])).isoformat()
    digits = text.replace("-", "")
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])).isoformat()


def _yen(text: str) -> int:
    folded = unicodedata.normalize("NFKC", text).replace(",", "")
    return -int(folded[1:]) if folded.startswith("△") else int(folded)


def _read(raw: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for label, value in _flatten(raw).items():
        name = names.get(label)
        if name is None or value is None or value == "":
            continue
        if name == "fiscal_year":
            record[name] = _year(value)
        elif name == "taxation_status":
            record[name] = {"課税": "taxable", "非課税": "non_taxable"}[value]
        elif name == "date":
            record[name] = _iso(value)
        elif names is _LOCAL_TAX:
            record[name] = _yen(value)
        else:
            record[name] = value
    return record


@pytest.mark.parametrize("persona_id", [INCOME, VACCINATION])
def test_the_documented_records_are_what_the_payload_says(portal: Portal, persona_id: str) -> None:
    persona = portal.personas[persona_id]
    expected = persona.relay_should_read
    assert expected is not None
    assert expected.inquiry == "Date=20261127"
    data = json.loads(raw_payload(portal, persona_id, expected.inquiry))
    names = _LOCAL_TAX if expected.dataset == "local_tax" else _VACCINATION
    read: list[dict[str, Any]] = []
    for entry in data:
        ((municipality, datasets),) = entry.items()
        for raw in next(iter(datasets.values())):
            record = {"municipality": municipality, **_read(raw, names)}
            if record not in read:  # an exact duplicate is one record
                read.append(record)
    assert read == [dict(record) for record in expected.records]


def test_the_documented_income_includes_a_negative_business_income() -> None:
    persona = load_personas(REAL_SHAPES_DIR)[INCOME]
    assert persona.relay_should_read is not None
    assert [r.get("business_income") for r in persona.relay_should_read.records] == [0, -300000]
