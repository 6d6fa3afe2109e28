"""Test cards (personas): who signs in, with which PIN, and what municipalities hold about them.

Personas are data files in ``sandbox/personas/``; field names and values are the portal's own
(Japanese labels, amounts and dates as strings) as the sandbox returns them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PERSONAS_DIR = Path(__file__).resolve().parent / "personas"


class Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pin: str = Field(pattern=r"^\d{4}$")
    status: Literal["active", "expired", "locked"]


class MunicipalRecord(BaseModel):
    """One record as a municipality's intermediate server holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    municipality: str
    fields: dict[str, str]


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    display_name: str
    description_en: str
    card: Card
    scenario: str | None = None
    local_tax: tuple[MunicipalRecord, ...] = ()
    vaccination: tuple[MunicipalRecord, ...] = ()


def load_personas(directory: Path = PERSONAS_DIR) -> dict[str, Persona]:
    personas: dict[str, Persona] = {}
    for path in sorted(directory.glob("*.json")):
        persona = Persona.model_validate(json.loads(path.read_text(encoding="utf-8")))
        if persona.id in personas:
            raise ValueError(f"persona id {persona.id!r} is defined twice ({path.name})")
        personas[persona.id] = persona
    return personas
