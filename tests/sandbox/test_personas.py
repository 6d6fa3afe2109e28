"""The personas: at least the eight kinds the sandbox promises, each a valid data file."""

from __future__ import annotations

import re

from sandbox.personas import load_personas

REQUIRED = {
    "salaried",
    "moved",
    "pensioner",
    "non-taxable",
    "no-data",
    "parent-vaccination",
    "individual-number",
    "expired-certificate",
    "locked-card",
}


def individual_number_is_valid(digits: str) -> bool:
    """総務省令第85号 第5条, as docs/mynaportal.md states it."""
    weights = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    remainder = sum(w * int(d) for w, d in zip(weights, digits[:11], strict=True)) % 11
    check = 0 if remainder <= 1 else 11 - remainder
    return int(digits[11]) == check


def test_every_promised_persona_exists() -> None:
    personas = load_personas()
    assert len(personas) >= 8
    assert set(personas) >= REQUIRED


def test_card_states() -> None:
    personas = load_personas()
    assert personas["expired-certificate"].card.status == "expired"
    assert personas["locked-card"].card.status == "locked"
    others = [p for name, p in personas.items() if name not in {"expired-certificate", "locked-card"}]
    assert all(p.card.status == "active" for p in others)


def test_the_moved_persona_has_two_municipalities_across_the_june_switch() -> None:
    moved = load_personas()["moved"]
    assert len({record.municipality for record in moved.local_tax}) == 2
    assert sorted(record.fields["課税年度"] for record in moved.local_tax) == ["2025", "2026"]


def test_the_parents_vaccination_history_spans_more_than_five_years() -> None:
    dates = sorted(r.fields["接種日"] for r in load_personas()["parent-vaccination"].vaccination)
    assert int(dates[-1][:4]) - int(dates[0][:4]) > 5


def test_the_individual_number_persona_hides_valid_numbers_in_three_spellings() -> None:
    persona = load_personas()["individual-number"]
    values = [value for record in persona.local_tax for value in record.fields.values()]
    candidates = [
        re.sub(r"[ -]", "", match)
        for value in values
        for match in re.findall(r"\d{4}[ -]?\d{4}[ -]?\d{4}", value)
    ]
    assert len(candidates) == 3
    assert all(individual_number_is_valid(candidate) for candidate in candidates)


def test_no_other_persona_contains_a_valid_individual_number() -> None:
    for persona in load_personas().values():
        if persona.id == "individual-number":
            continue
        for record in (*persona.local_tax, *persona.vaccination):
            for value in record.fields.values():
                for match in re.findall(r"(?<!\d)\d{12}(?!\d)", value):
                    assert not individual_number_is_valid(match), (persona.id, match)
