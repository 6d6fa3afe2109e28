"""axe-core for the browser tests: the pinned package (tests/a11y/package.json and its lockfile),
installed with `npm ci --ignore-scripts` once per lockfile, and a run of its WCAG 2.0/2.1 A and AA
rules in a page.

Node.js and npm are needed for the install only (axe itself runs in Chromium). Without them the
tests skip locally, with the reason, and FAIL under CI (CI=true), where `.ci/run` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.npm import npm_ci

A11Y_DIR = Path(__file__).resolve().parent
NODE_MODULES = A11Y_DIR / "node_modules"
AXE_SCRIPT = NODE_MODULES / "axe-core" / "axe.min.js"
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
RUN = f"axe.run(document, {{runOnly: {{type: 'tag', values: {json.dumps(list(WCAG_TAGS))}}}, resultTypes: ['violations']}})"


def require_npm() -> str:
    npm = shutil.which("npm")
    if npm is not None and shutil.which("node") is not None:
        return npm
    message = "node and npm are needed to install axe-core for the accessibility checks (apt-get install nodejs npm)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def install() -> Path:
    """axe.min.js, from `npm ci` into tests/a11y/node_modules unless this lockfile is installed."""
    npm_ci(A11Y_DIR, require_npm(), needs=AXE_SCRIPT)
    return AXE_SCRIPT


def violations(page: Any, axe_script: Path) -> list[dict[str, Any]]:
    """axe's WCAG 2.0/2.1 A and AA violations in the page as it is now: rule, impact, help and the
    offending elements. axe is evaluated through the DevTools protocol, which the page's CSP does
    not govern: a script tag would be refused (the pages forbid every script), and bypassing the
    CSP would also let through the inline styles it blocks for the resident."""
    if not page.evaluate("typeof axe === 'object'"):
        page.evaluate(axe_script.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(RUN)
    return [
        {
            "id": violation["id"],
            "impact": violation["impact"],
            "help": violation["help"],
            "nodes": [
                {"target": node["target"], "summary": node.get("failureSummary", "")}
                for node in violation["nodes"]
            ],
        }
        for violation in result["violations"]
    ]
