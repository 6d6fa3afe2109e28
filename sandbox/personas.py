"""Test cards (personas): who signs in, with which PIN, and what municipalities hold about them.

Personas are data files in ``sandbox/personas/``; field names and values are the portal's own
(Japanese labels, amounts and dates as the portal would write them) as the sandbox returns them.
A record's fields are JSON values: the early personas use flat strings, the ``real-shapes-*``
personas the nested shapes the research expects (groups, arrays of single-key objects, ``null``,
wareki and other date spellings, ``△`` negatives, full-width digits).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue

PERSONAS_DIR = Path(__file__).resolve().parent / "personas"
# The real-shapes personas (nested JSON values) live apart, so that ``load_personas()`` still means the
# flat ones: relay-side tests that walk every persona expect flat string fields and complete reads.
# The sandbox server offers both sets (``ALL_PERSONA_DIRS``).
REAL_SHAPES_DIR = PERSONAS_DIR / "real-shapes"
ALL_PERSONA_DIRS = (PERSONAS_DIR, REAL_SHAPES_DIR)

CallbackStyle = Literal["observed", "oauth"]
"""How the portal sends the resident back after a cancel or an expired certificate.

``observed``: ``code=access_denied`` (cancel) and ``state=Certificate expired`` (the state replaced
by that text), as a working integration reads them [O]. ``oauth``: ``error=access_denied`` /
``error=certificate_expired`` with the relay's state (the OAuth-style form, [I])."""
CALLBACK_STYLES: tuple[CallbackStyle, ...] = get_args(CallbackStyle)


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pin: str = Field(pattern=r"^\d{4}$")
    status: Literal["active", "expired", "locked"]


class MunicipalRecord(BaseModel):
    """One record as a municipality's intermediate server holds it.

    ``fields`` is sent as it is. ``fiscal_year`` and ``given_on`` are the sandbox's own selection
    keys (never sent): needed when the fields spell the year or date in a way the sandbox's data
    rules should not have to parse (令和8年度, 令和4年10月3日). Without them the flat fields
    ``課税年度`` (digits) and ``接種日`` (YYYYMMDD) are read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    municipality: str
    fields: dict[str, JsonValue]
    fiscal_year: int | None = None
    given_on: date | None = None

    def fiscal_year_key(self) -> int:
        if self.fiscal_year is not None:
            return self.fiscal_year
        return int(str(self.fields["課税年度"]))

    def given_on_key(self) -> date | None:
        if self.given_on is not None:
            return self.given_on
        value = self.fields.get("接種日")
        if not isinstance(value, str) or len(value) != 8 or not value.isdigit():
            return None
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            return None


class ExpectedReading(BaseModel):
    """What the relay SHOULD read from this persona's ``/result`` (documentation for relay-side tests,
    never used by the sandbox): normalised records in the relay's vocabulary (docs/data-model.md,
    ``chalicelib/domain/datasets.py``), ISO dates, integer yen; a ``null`` or absent source field is
    an absent field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_item: str
    inquiry: str = Field(pattern=r"^Date=\d{8}$")
    dataset: Literal["local_tax", "vaccination"]
    records: tuple[dict[str, JsonValue], ...]
    notes: tuple[str, ...] = ()


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    display_name: str
    description_en: str
    card: Card
    scenario: str | None = None
    callback_style: CallbackStyle | None = None  # None: the sandbox's configured style
    # The dataset key used in selfPersonalData for a registered item, where it differs from the
    # item's name (e.g. 予防接種関係情報 registered, 予防接種情報 sent).
    dataset_labels: dict[str, str] = Field(default_factory=dict)
    # "latest": only the latest fiscal year decided on the inquiry date; "all-decided": every year
    # already decided (so a resident who moved is seen in two municipalities).
    local_tax_selection: Literal["latest", "all-decided"] = "latest"
    # selfPersonalData with every non-ASCII character written as \uXXXX.
    escape_unicode: bool = False
    local_tax: tuple[MunicipalRecord, ...] = ()
    vaccination: tuple[MunicipalRecord, ...] = ()
    relay_should_read: ExpectedReading | None = None


def load_personas(*directories: Path) -> dict[str, Persona]:
    """The personas of each directory (not its subdirectories); by default the flat ones only."""
    personas: dict[str, Persona] = {}
    paths = [
        path for directory in directories or (PERSONAS_DIR,) for path in sorted(directory.glob("*.json"))
    ]
    for path in paths:
        persona = Persona.model_validate(json.loads(path.read_text(encoding="utf-8")))
        if persona.id in personas:
            raise ValueError(f"persona id {persona.id!r} is defined twice ({path.name})")
        personas[persona.id] = persona
    return personas
