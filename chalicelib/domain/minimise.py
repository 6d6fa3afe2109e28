"""Data minimisation: from the normalised records, only what the partner's purpose releases.

It exists so that the sealed payload is built from a purpose, never from the records: a field is
released only if the purpose lists it, and a derived claim (``annual_income_at_least``) answers
true, false or null without the figure it was computed from. The providing municipalities are kept
apart (``ReleasedData.providers``) for the audit record (情報提供等記録: the provider), and reach the
partner only if the purpose lists ``municipality``.

It must never release a field the purpose does not list, never reveal how many records there were
when no field is released, and never put a value into a ``repr`` or an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any, ClassVar, Final

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.errors import ErrorCategory, RelayError
from chalicelib.domain.normalise import NormalisedResult
from chalicelib.domain.partners import Purpose
from chalicelib.domain.records import RECORD_MODELS, DatasetRecord, LocalTaxRecord, VaccinationRecord

FieldValue = str | int | date | None
ClaimValue = bool | None


class ReleaseNotPossible(RelayError):
    """The purpose cannot be applied to this result (another dataset, a field or claim this service
    does not know): release nothing rather than something else. ``check`` names the purpose part."""

    code: ClassVar[str] = "release-not-possible"
    category: ClassVar[ErrorCategory] = "unavailable"
    title: ClassVar[str] = "The data could not be prepared for the partner"


@dataclass(frozen=True, repr=False)
class ReleasedData:
    """What one purpose releases from one result; still plaintext personal data, so kept in memory
    only until it is sealed.

    ``records`` hold exactly the purpose's fields, in its order (absent values as ``None``);
    ``derived`` the purpose's derived claims; ``providers`` the distinct providing municipalities of
    the records received, for the audit record only.
    """

    dataset: DatasetId
    records: tuple[Mapping[str, FieldValue], ...]
    derived: Mapping[str, ClaimValue]
    providers: tuple[str, ...]

    def claims(self) -> dict[str, Any]:
        """The JSON-ready payload: ``{"dataset", "records": [{field: value}], "derived": {...}}``,
        dates as ISO 8601 strings."""
        return {
            "dataset": self.dataset,
            "records": [{name: _as_json(value) for name, value in record.items()} for record in self.records],
            "derived": dict(self.derived),
        }

    def __repr__(self) -> str:
        return (
            f"ReleasedData(dataset={self.dataset!r}, records=<{len(self.records)} withheld>, "
            f"derived=<{len(self.derived)} withheld>, providers=<{len(self.providers)} withheld>)"
        )


def release(result: NormalisedResult, purpose: Purpose) -> ReleasedData:
    """Apply ``purpose`` to ``result``: its fields, its derived claims, nothing else. Raise
    ``ReleaseNotPossible`` if the purpose does not fit the result. Pure: no I/O."""
    if result.dataset != purpose.dataset:
        raise ReleaseNotPossible("the result is not of the purpose's dataset", check="purpose.dataset")
    known_fields = RECORD_MODELS[result.dataset].model_fields
    if any(name not in known_fields for name in purpose.fields):
        raise ReleaseNotPossible("the purpose lists a field records do not have", check="purpose.fields")
    if any(name not in CLAIM_RULES for name in purpose.derived_claims):
        raise ReleaseNotPossible("the purpose lists an unknown derived claim", check="purpose.derived_claims")
    records = _ordered(result.records)
    released: tuple[Mapping[str, FieldValue], ...] = ()
    if purpose.fields:  # with no field listed, not even the number of records is released
        released = tuple(
            MappingProxyType({name: getattr(record, name) for name in purpose.fields}) for record in records
        )
    derived = {
        name: CLAIM_RULES[name](threshold, records) for name, threshold in purpose.derived_claims.items()
    }
    return ReleasedData(
        dataset=result.dataset,
        records=released,
        derived=MappingProxyType(derived),
        providers=tuple(dict.fromkeys(record.municipality for record in records)),
    )


def annual_income_at_least(threshold: int, records: Sequence[DatasetRecord]) -> ClaimValue:
    """Whether total income (合計所得金額) of the latest fiscal year is at least ``threshold`` yen.

    ``None`` (unknown) when no local-tax record carries a fiscal year, when the latest year's records
    carry no total income, or when they disagree; an older year's figure never stands in for it.
    """
    dated = [
        (record.fiscal_year, record)
        for record in records
        if isinstance(record, LocalTaxRecord) and record.fiscal_year is not None
    ]
    if not dated:
        return None
    latest = max(year for year, _ in dated)
    incomes = {
        record.total_income for year, record in dated if year == latest and record.total_income is not None
    }
    if len(incomes) != 1:
        return None
    return incomes.pop() >= threshold


CLAIM_RULES: Final[Mapping[str, Callable[[int, Sequence[DatasetRecord]], ClaimValue]]] = MappingProxyType(
    {"annual_income_at_least": annual_income_at_least}
)


def _ordered(records: Sequence[DatasetRecord]) -> tuple[DatasetRecord, ...]:
    """Vaccinations by date (undated last, otherwise as received); local tax as received."""
    if all(isinstance(record, VaccinationRecord) for record in records):
        return tuple(sorted(records, key=_vaccination_order))
    return tuple(records)


def _vaccination_order(record: DatasetRecord) -> tuple[bool, date]:
    given = record.date if isinstance(record, VaccinationRecord) else None
    return (given is None, given or date.min)


def _as_json(value: FieldValue) -> str | int | None:
    return value.isoformat() if isinstance(value, date) else value
