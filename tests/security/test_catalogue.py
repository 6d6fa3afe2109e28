"""The catalogue's own guards: at least 40 attack cases, each naming the standard or threat it comes
from and a threat of its own, and ``docs/security.md`` listing exactly these cases with the same
source and threat, so that neither the tests nor the document can drift from the other.

The cases are the marks seen when tests/security was collected (``conftest.py``). When only part
of the directory was selected, the whole directory is collected again in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.conftest import CATALOGUE, DUMP_VARIABLE, HERE

REPO_ROOT = HERE.parents[1]
DOC = REPO_ROOT / "docs" / "security.md"
SECTION = "## Attack catalogue (tests/security)"
MIN_CASES = 40

Cases = dict[str, dict[str, str]]


def _collect_whole_directory(tmp_path: Path) -> tuple[Cases, list[str]]:
    dump = tmp_path / "catalogue.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(HERE)],
        cwd=REPO_ROOT,
        env={**os.environ, DUMP_VARIABLE: str(dump)},
        check=True,
        capture_output=True,
        timeout=300,
    )
    data = json.loads(dump.read_text(encoding="utf-8"))
    return data["cases"], data["unmarked"]


@pytest.fixture(scope="module")
def catalogue(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Cases, list[str]]:
    """(attack cases by node id, tests without an attack mark) of the whole directory."""
    seen = pytestconfig.stash.get(CATALOGUE, None)
    every_file = {path.name for path in HERE.glob("test_*.py")}
    if seen is not None and seen.files >= every_file:
        return seen.cases, seen.unmarked
    return _collect_whole_directory(tmp_path_factory.mktemp("catalogue"))


def documented_cases() -> dict[str, dict[str, str]]:
    """The rows of the catalogue section of docs/security.md, by the test they name."""
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DOC} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, str]] = {}
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| id ") or set(line) <= {"|", "-", " "}:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 5, f"a catalogue row needs 5 cells: {line}"
        case_id, source, threat, test, refusal = cells
        test = test.strip("`")
        assert test not in rows, f"{test} is listed twice"
        rows[test] = {"id": case_id, "source": source, "threat": threat, "refusal": refusal}
    return rows


def test_the_catalogue_counts_at_least_40_attack_cases(catalogue: tuple[Cases, list[str]]) -> None:
    cases, _ = catalogue
    assert len(cases) >= MIN_CASES, f"only {len(cases)} attack cases"


def test_every_test_here_is_an_attack_case_with_its_own_source_and_threat(
    catalogue: tuple[Cases, list[str]],
) -> None:
    cases, unmarked = catalogue
    own = Path(__file__).name
    assert [node for node in unmarked if f"/{own}::" not in node] == []
    for node, mark in cases.items():
        assert mark["source"].strip(), f"{node} names no source"
        assert mark["threat"].strip(), f"{node} names no threat"
    threats = [mark["threat"] for mark in cases.values()]
    repeated = sorted({threat for threat in threats if threats.count(threat) > 1})
    assert repeated == [], "each case must be a distinct attack"


def test_docs_security_lists_every_attack_case_with_its_source_and_threat(
    catalogue: tuple[Cases, list[str]],
) -> None:
    cases, _ = catalogue
    rows = documented_cases()
    assert sorted(set(cases) - set(rows)) == [], "attack cases missing from docs/security.md"
    assert sorted(set(rows) - set(cases)) == [], "docs/security.md lists cases that do not exist"
    for node, mark in cases.items():
        assert (rows[node]["source"], rows[node]["threat"]) == (mark["source"], mark["threat"]), node
        assert rows[node]["refusal"], f"{node}: no expected refusal in the document"
    ids = [row["id"] for row in rows.values()]
    assert len(set(ids)) == len(ids), "case ids repeat"
