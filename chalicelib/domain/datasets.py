"""The two self-information datasets this service relays, and the fields a purpose may release.

Field names are ours (English, snake_case); each carries its Japanese label once, where the code
meets the portal. Which portal labels map to which field is refined with the portal parser; the
vocabulary here is what partners register against. Field lists follow docs/mynaportal.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DatasetId = Literal["local_tax", "vaccination"]


@dataclass(frozen=True)
class FieldInfo:
    name: str
    label_ja: str
    label_en: str


@dataclass(frozen=True)
class Dataset:
    id: DatasetId
    name_ja: str
    name_en: str
    code: str  # [I] the portal's 14-digit TM code: unpublished, placeholder until the spec is in hand
    fields: tuple[FieldInfo, ...]

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)


LOCAL_TAX = Dataset(  # 地方税関係情報 (shown as 所得・個人住民税情報)
    id="local_tax",
    name_ja="地方税関係情報",
    name_en="Local tax (income)",
    code="TM000000000002",
    fields=(
        FieldInfo("fiscal_year", "課税年度", "Fiscal year"),
        FieldInfo("municipality", "課税市区町村", "Levying municipality"),
        FieldInfo("taxation_status", "課税区分", "Taxation status"),
        FieldInfo("salary_revenue", "給与収入額", "Salary revenue"),
        FieldInfo("salary_income", "給与所得額", "Salary income"),
        FieldInfo("public_pension_revenue", "公的年金等収入額", "Public pension revenue"),
        FieldInfo("business_income", "事業所得", "Business income"),
        FieldInfo("total_income", "合計所得金額", "Total income"),
        FieldInfo("total_income_etc", "総所得金額等", "Total income etc."),
        FieldInfo("social_insurance_deduction", "社会保険料控除額", "Social insurance deduction"),
        FieldInfo("spouse_deduction", "配偶者控除額", "Spouse deduction"),
        FieldInfo("dependant_deduction", "扶養控除額", "Dependant deduction"),
        FieldInfo("basic_deduction", "基礎控除額", "Basic deduction"),
        FieldInfo("total_deductions", "所得控除合計額", "Total deductions"),
        FieldInfo("taxable_base", "課税標準額", "Taxable base"),
        FieldInfo("dependants", "扶養親族数", "Number of dependants"),
        FieldInfo("municipal_income_levy", "市町村民税所得割額", "Municipal income levy"),
        FieldInfo("municipal_per_capita_levy", "市町村民税均等割額", "Municipal per-capita levy"),
        FieldInfo("prefectural_income_levy", "道府県民税所得割額", "Prefectural income levy"),
        FieldInfo("prefectural_per_capita_levy", "道府県民税均等割額", "Prefectural per-capita levy"),
        FieldInfo("annual_tax", "年税額", "Annual tax"),
    ),
)

VACCINATION = Dataset(  # 予防接種関係情報 (予防接種法施行規則 第3条)
    id="vaccination",
    name_ja="予防接種関係情報",
    name_en="Vaccination",
    code="TM000000000003",
    fields=(
        FieldInfo("vaccine", "予防接種の種類", "Vaccine"),
        FieldInfo("dose", "接種回数・期", "Dose or period"),
        FieldInfo("date", "接種日", "Date"),
        FieldInfo("municipality", "実施市区町村", "Municipality"),
        FieldInfo("lot_number", "ロット番号", "Lot number"),
        FieldInfo("doctor", "医師名", "Doctor"),
    ),
)

DATASETS: dict[str, Dataset] = {LOCAL_TAX.id: LOCAL_TAX, VACCINATION.id: VACCINATION}


@dataclass(frozen=True)
class DerivedClaimInfo:
    """A claim computed from a dataset so that the underlying figure need not be released."""

    name: str
    dataset: DatasetId
    parameter: Literal["yen"]
    description_en: str
    description_ja: str


DERIVED_CLAIMS: dict[str, DerivedClaimInfo] = {
    "annual_income_at_least": DerivedClaimInfo(
        name="annual_income_at_least",
        dataset="local_tax",
        parameter="yen",
        description_en="Whether total income is at least the threshold",
        description_ja="合計所得金額が基準額以上かどうか",
    ),
}
