"""Data minimisation: only the purpose's fields and derived claims leave, never the figure behind a
claim; the providing municipalities are kept for the audit record."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.minimise import ReleaseNotPossible, release
from chalicelib.domain.normalise import NormalisedResult, normalise
from chalicelib.domain.partners import Purpose
from chalicelib.domain.records import LocalTaxRecord, VaccinationRecord
from sandbox.personas import load_personas
from sandbox.portal import build_self_personal_data

KAWASAKI = "神奈川県川崎市"
YOKOHAMA = "神奈川県横浜市"


def purpose(
    dataset: DatasetId = "local_tax", fields: tuple[str, ...] = (), derived: dict[str, int] | None = None
) -> Purpose:
    return Purpose.model_validate(
        {
            "id": "test-purpose",
            "titles": {"ja": "テスト", "en": "Test"},
            "dataset": dataset,
            "fields": list(fields),
            "derived_claims": derived or {},
            "data_life": "PT10M",
        }
    )


def income_at_least(threshold: int) -> Purpose:
    return purpose(derived={"annual_income_at_least": threshold})


def tax(fiscal_year: int | None, total_income: int | None, municipality: str = KAWASAKI) -> LocalTaxRecord:
    return LocalTaxRecord(
        municipality=municipality,
        fiscal_year=fiscal_year,
        taxation_status="taxable",
        salary_revenue=5_200_000,
        total_income=total_income,
    )


def shot(given_on: date | None, vaccine: str = "BCG") -> VaccinationRecord:
    return VaccinationRecord(municipality=KAWASAKI, vaccine=vaccine, dose="1回目", date=given_on)


def local_tax_result(*records: LocalTaxRecord) -> NormalisedResult:
    return NormalisedResult(dataset="local_tax", records=records)


def vaccination_result(*records: VaccinationRecord) -> NormalisedResult:
    return NormalisedResult(dataset="vaccination", records=records)


def claims(result: NormalisedResult, applied: Purpose) -> dict[str, Any]:
    return release(result, applied).claims()


# -- fields --------------------------------------------------------------------------------------------


def test_only_the_purposes_fields_are_released_in_its_order() -> None:
    released = claims(local_tax_result(tax(2026, 3_680_000)), purpose(fields=("total_income", "fiscal_year")))
    assert released["records"] == [{"total_income": 3_680_000, "fiscal_year": 2026}]
    assert list(released["records"][0]) == ["total_income", "fiscal_year"]


def test_the_municipality_is_not_released_unless_listed() -> None:
    released = claims(local_tax_result(tax(2026, 3_680_000)), purpose(fields=("fiscal_year",)))
    assert "municipality" not in released["records"][0]
    assert KAWASAKI not in json.dumps(released, ensure_ascii=False)


def test_the_municipality_is_released_when_listed() -> None:
    released = claims(local_tax_result(tax(2026, 1)), purpose(fields=("municipality",)))
    assert released["records"] == [{"municipality": KAWASAKI}]


def test_the_providers_are_kept_for_the_audit_whatever_the_purpose_releases() -> None:
    result = local_tax_result(tax(2025, 1, KAWASAKI), tax(2026, 1, YOKOHAMA), tax(2024, 1, KAWASAKI))
    assert release(result, income_at_least(1)).providers == (KAWASAKI, YOKOHAMA)


def test_a_listed_field_the_record_lacks_is_released_as_null() -> None:
    released = claims(local_tax_result(tax(2026, None)), purpose(fields=("total_income",)))
    assert released["records"] == [{"total_income": None}]


def test_a_purpose_without_fields_does_not_reveal_how_many_records_there_were() -> None:
    released = claims(local_tax_result(tax(2025, 1), tax(2026, 1)), income_at_least(1))
    assert released["records"] == []


def test_the_payload_names_the_dataset_and_is_json() -> None:
    released = claims(
        vaccination_result(shot(date(2022, 9, 12))), purpose("vaccination", ("vaccine", "date"))
    )
    assert json.loads(json.dumps(released)) == {
        "dataset": "vaccination",
        "records": [{"vaccine": "BCG", "date": "2022-09-12"}],
        "derived": {},
    }


# -- vaccination order ------------------------------------------------------------------------------------


def test_vaccinations_are_released_in_date_order() -> None:
    result = vaccination_result(shot(date(2025, 5, 20)), shot(date(2022, 9, 12)), shot(date(2022, 10, 10)))
    released = claims(result, purpose("vaccination", ("date",)))
    assert [record["date"] for record in released["records"]] == ["2022-09-12", "2022-10-10", "2025-05-20"]


def test_undated_vaccinations_come_last_in_the_order_received() -> None:
    result = vaccination_result(shot(None, "A"), shot(date(2025, 5, 20), "B"), shot(None, "C"))
    released = claims(result, purpose("vaccination", ("vaccine",)))
    assert [record["vaccine"] for record in released["records"]] == ["B", "A", "C"]


# -- derived claims ---------------------------------------------------------------------------------------


def test_income_at_the_threshold_satisfies_the_claim() -> None:
    assert claims(local_tax_result(tax(2026, 4_000_000)), income_at_least(4_000_000))["derived"] == {
        "annual_income_at_least": True
    }


def test_income_below_the_threshold_does_not_satisfy_the_claim() -> None:
    assert claims(local_tax_result(tax(2026, 3_999_999)), income_at_least(4_000_000))["derived"] == {
        "annual_income_at_least": False
    }


def test_the_claim_is_about_the_latest_fiscal_year_not_the_best_one() -> None:
    # GIVEN a higher income in FY2025 than in FY2026, received in any order
    result = local_tax_result(tax(2026, 3_000_000), tax(2025, 5_000_000))
    # THEN only FY2026 counts
    assert claims(result, income_at_least(4_000_000))["derived"]["annual_income_at_least"] is False


def test_the_claim_is_unknown_without_local_tax_records() -> None:
    assert claims(local_tax_result(), income_at_least(1))["derived"] == {"annual_income_at_least": None}


def test_the_claim_is_unknown_when_the_latest_year_has_no_total_income() -> None:
    # An older year's figure never stands in for the latest one.
    result = local_tax_result(tax(2025, 9_000_000), tax(2026, None))
    assert claims(result, income_at_least(1))["derived"]["annual_income_at_least"] is None


def test_the_claim_is_unknown_when_records_of_the_latest_year_disagree() -> None:
    result = local_tax_result(tax(2026, 3_000_000, KAWASAKI), tax(2026, 5_000_000, YOKOHAMA))
    assert claims(result, income_at_least(4_000_000))["derived"]["annual_income_at_least"] is None


def test_the_claim_ignores_records_without_a_fiscal_year() -> None:
    result = local_tax_result(tax(None, 9_000_000))
    assert claims(result, income_at_least(1))["derived"]["annual_income_at_least"] is None


def test_the_figure_behind_a_claim_is_not_released_unless_listed() -> None:
    released = claims(local_tax_result(tax(2026, 3_680_000)), income_at_least(3_000_000))
    text = json.dumps(released)
    assert "3680000" not in text
    assert "total_income" not in text
    assert released["derived"] == {"annual_income_at_least": True}


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_the_claim_is_exactly_income_at_least_threshold(income: int, threshold: int) -> None:
    released = claims(local_tax_result(tax(2026, income)), income_at_least(threshold))
    assert released["derived"]["annual_income_at_least"] is (income >= threshold)


# -- refusals and hygiene -------------------------------------------------------------------------------------


def test_a_result_of_another_dataset_is_refused() -> None:
    with pytest.raises(ReleaseNotPossible) as caught:
        release(vaccination_result(shot(date(2022, 9, 12))), purpose(fields=("fiscal_year",)))
    assert caught.value.check == "purpose.dataset"


def test_released_data_does_not_show_values_in_its_repr() -> None:
    shown = repr(
        release(local_tax_result(tax(2026, 3_680_000)), purpose(fields=("total_income", "municipality")))
    )
    assert "3680000" not in shown
    assert KAWASAKI not in shown


def test_released_records_are_read_only() -> None:
    released = release(local_tax_result(tax(2026, 1)), purpose(fields=("total_income",)))
    with pytest.raises(TypeError):
        released.records[0]["total_income"] = 2  # type: ignore[index]


def test_the_salaried_persona_passes_a_4m_check_only_with_a_lower_threshold() -> None:
    # GIVEN what the sandbox portal returns for the salaried persona (FY2026: 3,680,000 yen)
    data = build_self_personal_data(load_personas()["salaried"], ("地方税関係情報",), date(2026, 11, 27))
    result = normalise(json.dumps(data, ensure_ascii=False), dataset="local_tax")
    # THEN the lender learns yes or no, and which municipality provided it, for the audit only
    assert claims(result, income_at_least(3_000_000))["derived"] == {"annual_income_at_least": True}
    assert claims(result, income_at_least(4_000_000))["derived"] == {"annual_income_at_least": False}
    assert release(result, income_at_least(1)).providers == (KAWASAKI,)
