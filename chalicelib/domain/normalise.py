"""The parser of ``selfPersonalData`` (IF001-06): the portal's JSON-in-a-string becomes typed records.

It exists so that exactly one function reads what the portal sends, in a fixed order: size, JSON,
shape, then the Individual Number guard over every key and value (番号法 第19条: we must never keep
one), and only then the mapping of Japanese labels (``portal_labels``) to typed fields
(``records``). Whatever cannot be read is dropped and counted, never passed through; whatever is
not of the requested dataset is dropped and counted too.

It must never put the payload, or any part of it, into an exception, a ``repr`` or a log line: the
counts in ``NormalisedResult.dropped`` say what happened without saying what the data was.
"""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, get_args

from pydantic import ValidationError

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.errors import ErrorCategory, RelayError
from chalicelib.domain.individual_number import contains_individual_number
from chalicelib.domain.portal_labels import DATASET_IDS, FIELD_NAMES, TAXATION_STATUSES
from chalicelib.domain.records import (
    MAX_AMOUNT,
    MAX_TEXT_LENGTH,
    RECORD_MODELS,
    DatasetRecord,
    LocalTaxRecord,
    TaxationStatus,
    VaccinationRecord,
)

DEFAULT_MAX_BYTES: Final = 2_000_000

DropReason = Literal[
    "unknown_dataset",  # a dataset name not in portal_labels: its records (counted per record)
    "other_dataset",  # a known dataset other than the one requested: its records (per record)
    "unknown_field",  # a field label not in portal_labels (per field)
    "invalid_value",  # a value its converter cannot read, or a municipality key that is not a name
    "blank_value",  # an empty or whitespace-only value: treated as absent (per field)
    "empty_record",  # a record with no field left after everything above (per record)
]
DROP_REASONS: Final[tuple[DropReason, ...]] = get_args(DropReason)

Scalar = str | int | float
RawRecord = dict[str, Scalar]
Entry = tuple[str, dict[str, list[RawRecord]]]  # (municipality, {dataset name: records})
Converted = int | str | date


class MalformedResult(RelayError):
    """IF001-06 answered, but ``selfPersonalData`` is not a document this parser can read.

    ``check`` is ``result.size``, ``result.json`` or ``result.shape``; ``detail`` names the rule that
    failed and, at most, a position, never a key or a value.
    """

    code: ClassVar[str] = "malformed-result"
    category: ClassVar[ErrorCategory] = "unavailable"
    title: ClassVar[str] = "The portal's result could not be read"


@dataclass(frozen=True, repr=False)
class NormalisedResult:
    """Typed records of one dataset, and counts of what was dropped on the way (never the values).

    ``dropped`` has every key of ``DROP_REASONS`` (zero when nothing was dropped for that reason).
    ``individual_numbers_removed`` counts removed items (a field, or a whole dataset or municipality
    entry whose key held one), not distinct numbers.
    """

    dataset: DatasetId
    records: tuple[LocalTaxRecord, ...] | tuple[VaccinationRecord, ...]
    dropped: Mapping[str, int] = field(default_factory=dict)
    individual_numbers_removed: int = 0

    def __post_init__(self) -> None:
        counts: dict[str, int] = {**dict.fromkeys(DROP_REASONS, 0), **self.dropped}
        object.__setattr__(self, "dropped", MappingProxyType(counts))

    def __repr__(self) -> str:
        return (
            f"NormalisedResult(dataset={self.dataset!r}, records=<{len(self.records)} withheld>, "
            f"dropped={dict(self.dropped)!r}, individual_numbers_removed={self.individual_numbers_removed})"
        )


def normalise(
    self_personal_data: str, *, dataset: DatasetId, max_bytes: int = DEFAULT_MAX_BYTES
) -> NormalisedResult:
    """Parse ``selfPersonalData`` into the records of ``dataset``; raise ``MalformedResult`` for a
    payload that is too large, not JSON, or not shaped as a list of ``{municipality: {dataset:
    [records]}}``. Pure: no I/O."""
    _check_size(self_personal_data, max_bytes)
    entries = _check_shape(_decode(self_personal_data))
    tally = _Tally()
    entries = _remove_individual_numbers(entries, tally)
    records = _map_records(entries, dataset, tally)
    typed: tuple[LocalTaxRecord, ...] | tuple[VaccinationRecord, ...]
    if dataset == "local_tax":
        typed = tuple(record for record in records if isinstance(record, LocalTaxRecord))
    else:
        typed = tuple(record for record in records if isinstance(record, VaccinationRecord))
    return NormalisedResult(
        dataset=dataset,
        records=typed,
        dropped=tally.dropped,
        individual_numbers_removed=tally.individual_numbers,
    )


@dataclass
class _Tally:
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    individual_numbers: int = 0

    def drop(self, reason: DropReason, count: int = 1) -> None:
        self.dropped[reason] += count


# -- size, JSON, shape -----------------------------------------------------------------------------


def _check_size(text: str, max_bytes: int) -> None:
    # len(text) bounds the UTF-8 size from below, so a huge payload is refused before encoding it;
    # surrogatepass: a lone surrogate (legal in a JSON string escape) must not make this step crash.
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MalformedResult(f"selfPersonalData is larger than {max_bytes} bytes", check="result.size")


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys would let one spelling of a field hide another (RFC 8259 section 4 leaves the
    # outcome to the parser); refuse them rather than guess which one the portal meant.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey("duplicate key")
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400 overflows to infinity
        raise ValueError("number out of range")
    return value


def _decode(text: str) -> object:
    # The decoder's own error is swallowed, not chained: JSONDecodeError keeps the whole document in
    # its ``doc`` attribute, and an exception context ends up in error reports.
    with contextlib.suppress(ValueError, RecursionError):
        return json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    raise MalformedResult(
        "selfPersonalData is not a JSON document (or has duplicate keys, NaN or Infinity)",
        check="result.json",
    )


def _shape_error(detail: str) -> MalformedResult:
    return MalformedResult(detail, check="result.shape")


def _check_shape(document: object) -> list[Entry]:
    """A list of single-key objects {municipality: {dataset name: [ {label: string or number} ]}}."""
    if not isinstance(document, list):
        raise _shape_error("selfPersonalData is not a list")
    entries: list[Entry] = []
    for index, entry in enumerate(document):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise _shape_error(f"selfPersonalData[{index}] is not an object with exactly one municipality")
        ((municipality, datasets),) = entry.items()
        if not isinstance(datasets, dict):
            raise _shape_error(f"selfPersonalData[{index}] does not hold an object of datasets")
        checked: dict[str, list[RawRecord]] = {}
        for position, (name, records) in enumerate(datasets.items()):
            where = f"selfPersonalData[{index}] dataset {position}"
            if not isinstance(records, list):
                raise _shape_error(f"{where} is not a list of records")
            for number, record in enumerate(records):
                if not isinstance(record, dict):
                    raise _shape_error(f"{where} record {number} is not an object")
                if not all(_is_scalar(value) for value in record.values()):
                    raise _shape_error(f"{where} record {number} has a value that is not a string or number")
            checked[name] = records
        entries.append((municipality, checked))
    return entries


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


# -- the Individual Number guard -----------------------------------------------------------------


def _scalar_holds_individual_number(value: Scalar) -> bool:
    if isinstance(value, float):
        # Both spellings: 123456789018.0 as written, and 6.21498320257e+20 as the integer it is.
        return contains_individual_number(repr(value)) or (
            value.is_integer() and contains_individual_number(int(value))
        )
    return contains_individual_number(value)


def _remove_individual_numbers(entries: list[Entry], tally: _Tally) -> list[Entry]:
    """Remove every item whose key or value holds a valid Individual Number, whatever the dataset:
    a field, or the whole dataset or municipality entry when the number is in its key."""
    cleaned: list[Entry] = []
    for municipality, datasets in entries:
        if contains_individual_number(municipality):
            tally.individual_numbers += 1
            continue
        kept_datasets: dict[str, list[RawRecord]] = {}
        for name, records in datasets.items():
            if contains_individual_number(name):
                tally.individual_numbers += 1
                continue
            kept_records: list[RawRecord] = []
            for record in records:
                kept: RawRecord = {}
                for label, value in record.items():
                    if contains_individual_number(label) or _scalar_holds_individual_number(value):
                        tally.individual_numbers += 1
                    else:
                        kept[label] = value
                kept_records.append(kept)
            kept_datasets[name] = kept_records
        cleaned.append((municipality, kept_datasets))
    return cleaned


# -- converters: portal text → typed value, or None when it cannot be read ----------------------------

_PLAIN_DIGITS: Final = re.compile(r"[0-9]+")
_GROUPED_DIGITS: Final = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+")  # thousands separators, grouped right
_MAX_AMOUNT_DIGITS: Final = len(str(MAX_AMOUNT))


def _as_text(value: Scalar) -> str | None:
    """The portal sends strings; a JSON number is read as the integer it spells, or not at all."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    return str(value)


def _folded(text: str) -> str:
    # NFKC turns full-width digits and the full-width comma into ASCII.
    return unicodedata.normalize("NFKC", text).strip()


def _amount(text: str) -> int | None:
    """Non-negative integer (yen or a count): ``3560000``, ``3,560,000``, ``３５６００００``."""
    folded = _folded(text)
    if not (_PLAIN_DIGITS.fullmatch(folded) or _GROUPED_DIGITS.fullmatch(folded)):
        return None
    digits = folded.replace(",", "").lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_AMOUNT_DIGITS else None


def _fiscal_year(text: str) -> int | None:
    folded = _folded(text)
    return int(folded) if re.fullmatch(r"[0-9]{4}", folded) and folded >= "1000" else None


def _date(text: str) -> date | None:
    """``YYYYMMDD``, or ``YYYYMM`` read as the first of the month."""
    folded = _folded(text)
    if not re.fullmatch(r"[0-9]{6}(?:[0-9]{2})?", folded):
        return None
    day = int(folded[6:8]) if len(folded) == 8 else 1
    try:
        return date(int(folded[:4]), int(folded[4:6]), day)
    except ValueError:
        return None


def _taxation_status(text: str) -> TaxationStatus | None:
    return TAXATION_STATUSES.get(_folded(text))


def _text(text: str) -> str | None:
    """Free text as the municipality wrote it (not NFKC-folded: names keep their spelling), trimmed;
    refused when too long or holding control characters or lone surrogates."""
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_TEXT_LENGTH:
        return None
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in stripped):
        return None
    return stripped


_AMOUNT_FIELDS: Final = (
    "salary_revenue",
    "salary_income",
    "public_pension_revenue",
    "business_income",
    "total_income",
    "total_income_etc",
    "social_insurance_deduction",
    "spouse_deduction",
    "dependant_deduction",
    "basic_deduction",
    "total_deductions",
    "taxable_base",
    "dependants",
    "municipal_income_levy",
    "municipal_per_capita_levy",
    "prefectural_income_levy",
    "prefectural_per_capita_levy",
    "annual_tax",
)

Converter = Callable[[str], Converted | None]

CONVERTERS: Final[Mapping[DatasetId, Mapping[str, Converter]]] = MappingProxyType(
    {
        "local_tax": MappingProxyType(
            {
                "fiscal_year": _fiscal_year,
                "taxation_status": _taxation_status,
                **dict.fromkeys(_AMOUNT_FIELDS, _amount),
            }
        ),
        "vaccination": MappingProxyType(
            {"vaccine": _text, "dose": _text, "date": _date, "lot_number": _text, "doctor": _text}
        ),
    }
)


# -- mapping -------------------------------------------------------------------------------------------


def _map_records(entries: list[Entry], dataset: DatasetId, tally: _Tally) -> list[DatasetRecord]:
    records: list[DatasetRecord] = []
    for municipality, datasets in entries:
        for name, raw_records in datasets.items():
            dataset_id = DATASET_IDS.get(name)
            if dataset_id is None:
                tally.drop("unknown_dataset", len(raw_records))
                continue
            if dataset_id != dataset:
                tally.drop("other_dataset", len(raw_records))
                continue
            provider = _text(municipality)
            if provider is None:
                tally.drop("invalid_value", len(raw_records))
                continue
            for raw in raw_records:
                record = _build_record(dataset_id, provider, raw, tally)
                if record is not None:
                    records.append(record)
    return records


def _build_record(dataset: DatasetId, provider: str, raw: RawRecord, tally: _Tally) -> DatasetRecord | None:
    labels = FIELD_NAMES[dataset]
    converters = CONVERTERS[dataset]
    values: dict[str, Converted] = {}
    for label, raw_value in raw.items():
        name = labels.get(label)
        if name is None:
            tally.drop("unknown_field")
            continue
        text = _as_text(raw_value)
        if text is not None and not text.strip():
            tally.drop("blank_value")
            continue
        value = None if text is None else converters[name](text)
        if value is None:
            tally.drop("invalid_value")
        elif not isinstance(value, date) and contains_individual_number(value):
            # Defence in depth: a converted value is checked again, whatever the converter did.
            tally.individual_numbers += 1
        else:
            values[name] = value
    return _validated(RECORD_MODELS[dataset], provider, values, tally)


def _validated(
    model: type[LocalTaxRecord] | type[VaccinationRecord],
    provider: str,
    values: dict[str, Converted],
    tally: _Tally,
) -> DatasetRecord | None:
    """The record, dropping (and counting) any field the model still refuses. The converters mirror
    the model's constraints, so this loop is a safety net; its ValidationError, which quotes the
    input, never leaves this function."""
    while values:
        try:
            return model.model_validate({"municipality": provider, **values})
        except ValidationError as exc:
            refused = {str(error["loc"][0]) for error in exc.errors(include_input=False) if error["loc"]}
        refused &= set(values)
        if not refused:
            tally.drop("invalid_value")
            return None
        for name in refused:
            del values[name]
            tally.drop("invalid_value")
    tally.drop("empty_record")
    return None
