"""The walls of product.md: dependencies point inward, and nothing shipped imports what is not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def python_files(*parts: str) -> list[Path]:
    return sorted(REPO_ROOT.joinpath(*parts).rglob("*.py"))


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in paths
        for module in sorted(imported_modules(path))
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    ]


def test_domain_imports_no_framework_no_sdk_and_no_outer_layer() -> None:
    forbidden = (
        "chalice",
        "boto3",
        "botocore",
        "aws_lambda_powertools",
        "chalicelib.api",
        "chalicelib.events",
        "chalicelib.adapters",
        "chalicelib.container",
        "chalicelib.settings",
    )
    assert offending(python_files("chalicelib", "domain"), forbidden) == []


def test_shipped_code_imports_nothing_that_is_not_shipped() -> None:
    forbidden = ("sandbox", "scripts", "partner_kit", "infra", "relayctl", "tests", "moto")
    assert offending(python_files("chalicelib"), forbidden) == []


@pytest.mark.parametrize("package", ["sandbox", "partner_kit"])
def test_stand_ins_for_portal_and_partner_know_only_the_protocol(package: str) -> None:
    assert offending(python_files(package), ("chalicelib", "app")) == []


def test_chalice_stays_at_the_edge() -> None:
    edge = {REPO_ROOT / "app.py", *python_files("chalicelib", "api"), *python_files("chalicelib", "events")}
    inner = [path for path in python_files("chalicelib") if path not in edge]
    assert offending(inner, ("chalice",)) == []


def test_boto_stays_in_adapters() -> None:
    adapters = set(python_files("chalicelib", "adapters"))
    others = [path for path in python_files("chalicelib") if path not in adapters]
    assert offending(others, ("boto3", "botocore")) == []


def test_the_operator_tool_stays_off_chalice() -> None:
    """relayctl renders the consent page (preview) through chalicelib.page_rendering, never through
    the HTTP layer: importing chalicelib.api imports Chalice."""
    assert offending(python_files("relayctl"), ("chalice", "chalicelib.api", "app")) == []
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, relayctl.cli, relayctl.preview, chalicelib.page_rendering; "
            "print(sorted(m for m in sys.modules if m == 'chalice' or m.startswith(('chalice.', 'chalicelib.api'))))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_the_pages_load_with_the_first_page_not_at_cold_start() -> None:
    """Importing the handler (Lambda's init) loads no page machinery: the labels, Jinja and the
    audit models they read load with the first page a resident opens (bench: cold start)."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, app; "
            "print(sorted(m for m in sys.modules if m in "
            "('jinja2', 'chalicelib.page_rendering', 'chalicelib.api.pages', 'chalicelib.domain.audit')))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_the_relay_builds_botocore_clients_without_boto3() -> None:
    """The adapters build botocore clients from a botocore session: ``import boto3`` would add
    s3transfer and boto3's resource factory to every cold start (bench: cold start), and the relay
    uses neither resources nor S3's transfer methods."""
    shipped = [REPO_ROOT / "app.py", *python_files("chalicelib")]
    assert offending(shipped, ("boto3", "s3transfer")) == []


def test_importing_the_handler_leaves_the_collector_running() -> None:
    """app.py pauses garbage collection while it builds the app (Lambda's Init) and freezes what it
    built; collection must be running again afterwards, for everything requests make."""
    state = subprocess.run(
        [sys.executable, "-c", "import gc, app; print(gc.isenabled(), gc.get_freeze_count() > 0)"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert state.stdout.strip() == "True True"
