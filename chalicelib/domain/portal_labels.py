"""The Japanese labels of ``selfPersonalData`` and the English names they become: the one place
where the portal's vocabulary meets ours.

[I] The whole mapping is inferred. The official interface specification (which names the datasets
and fields as the portal sends them) is given only to approved API users; the labels below are the
documented item names (docs/mynaportal.md) as the sandbox spells them. When the real specification
is in hand, this module alone is corrected: the parser takes every portal label from here. (The
Japanese names in ``datasets.py`` are display text for residents, not what the portal sends.)

The providing municipality is not a field: ``selfPersonalData`` groups records under the
municipality's name, and the parser takes ``municipality`` from that key.

Never put a converter, a default or a fallback here: a label that is not listed is an unknown field
and is dropped (and counted) by the parser, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.records import TaxationStatus

# [I] dataset names, as the keys under each municipality.
_DATASET_IDS: dict[str, DatasetId] = {
    "地方税関係情報": "local_tax",
    "予防接種関係情報": "vaccination",
}

# [I] field labels of 地方税関係情報 → LocalTaxRecord fields.
_LOCAL_TAX_FIELDS: dict[str, str] = {
    "課税年度": "fiscal_year",
    "課税区分": "taxation_status",
    "給与収入額": "salary_revenue",
    "給与所得額": "salary_income",
    "公的年金等収入額": "public_pension_revenue",
    "事業所得": "business_income",
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

# [I] field labels of 予防接種関係情報 → VaccinationRecord fields (items of 予防接種法施行規則 第3条).
_VACCINATION_FIELDS: dict[str, str] = {
    "予防接種の種類": "vaccine",
    "接種回数": "dose",
    "接種日": "date",
    "ロット番号": "lot_number",
    "医師名": "doctor",
}

# [I] values of 課税区分 (the four statuses docs/mynaportal.md lists).
_TAXATION_STATUSES: dict[str, TaxationStatus] = {
    "課税": "taxable",
    "非課税": "non_taxable",
    "均等割のみ": "per_capita_only",
    "未申告": "undeclared",
}

DATASET_IDS: Final[Mapping[str, DatasetId]] = MappingProxyType(_DATASET_IDS)
FIELD_NAMES: Final[Mapping[DatasetId, Mapping[str, str]]] = MappingProxyType(
    {
        "local_tax": MappingProxyType(_LOCAL_TAX_FIELDS),
        "vaccination": MappingProxyType(_VACCINATION_FIELDS),
    }
)
TAXATION_STATUSES: Final[Mapping[str, TaxationStatus]] = MappingProxyType(_TAXATION_STATUSES)
