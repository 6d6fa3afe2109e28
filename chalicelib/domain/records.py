"""Typed records of the two self-information datasets, as the rest of the service sees them.

They exist so that nothing after the parser (``normalise.py``) handles the portal's loose JSON:
every value here has been through the Individual Number guard and a converter, and is an ``int``
yen amount, a ``date``, an English status or a short text. Field names are exactly those of
``datasets.py``, the vocabulary partners register against. Every field but ``municipality`` (the
providing municipality, taken from the portal's grouping key) is optional, because any field may
be missing or dropped as unreadable.

These models hold personal data: their ``repr`` names the fields present, never the values, so that
a record can never reach a log line or an error message by accident.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chalicelib.domain.datasets import DatasetId

MAX_TEXT_LENGTH = 200

TaxationStatus = Literal["taxable", "non_taxable", "per_capita_only", "undeclared"]
# At most 15 digits: more than any resident's tax figure, and every value stays exact in a partner's
# JSON parser (IEEE 754 doubles are exact up to 2**53, about 9.007e15).
MAX_AMOUNT = 10**15 - 1

Yen = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
# Business income (事業所得) is a loss when expenses exceed revenue; the portal may write it with △.
SignedYen = Annotated[int, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
Count = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
FiscalYear = Annotated[int, Field(ge=1000, le=9999)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH)]


class PortalRecord(BaseModel):
    """Base of the dataset records: frozen values, no unknown fields, values kept out of ``repr``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    municipality: Text

    def __repr__(self) -> str:
        present = ", ".join(name for name in type(self).model_fields if getattr(self, name) is not None)
        return f"{type(self).__name__}(<values withheld; fields: {present}>)"

    def __str__(self) -> str:
        return repr(self)


class LocalTaxRecord(PortalRecord):  # 地方税関係情報
    """One fiscal year of resident tax, as levied by ``municipality``."""

    fiscal_year: FiscalYear | None = None
    taxation_status: TaxationStatus | None = None
    salary_revenue: Yen | None = None
    salary_income: Yen | None = None
    public_pension_revenue: Yen | None = None
    business_income: SignedYen | None = None
    total_income: Yen | None = None
    total_income_etc: Yen | None = None
    social_insurance_deduction: Yen | None = None
    spouse_deduction: Yen | None = None
    dependant_deduction: Yen | None = None
    basic_deduction: Yen | None = None
    total_deductions: Yen | None = None
    taxable_base: Yen | None = None
    dependants: Count | None = None
    municipal_income_levy: Yen | None = None
    municipal_per_capita_levy: Yen | None = None
    prefectural_income_levy: Yen | None = None
    prefectural_per_capita_levy: Yen | None = None
    annual_tax: Yen | None = None


class VaccinationRecord(PortalRecord):  # 予防接種関係情報
    """One routine or temporary vaccination given in ``municipality`` (予防接種法施行規則 第3条)."""

    vaccine: Text | None = None
    dose: Text | None = None
    date: dt.date | None = None
    lot_number: Text | None = None
    doctor: Text | None = None


DatasetRecord = LocalTaxRecord | VaccinationRecord
RECORD_MODELS: Final[Mapping[DatasetId, type[LocalTaxRecord] | type[VaccinationRecord]]] = MappingProxyType(
    {"local_tax": LocalTaxRecord, "vaccination": VaccinationRecord}
)
