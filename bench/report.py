"""The shape every benchmark returns, and the results files `make bench` writes.

Each benchmark module has ``measure() -> Section``: its headline figures (the keys of
``bench/results.json``), its detail for ``bench/RESULTS.md`` (markdown), and its raw data."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    limit: float | None  # None: reported, no target (informational)
    unit: str
    at_most: bool = True  # "at most"; False: "at least" (a capacity)

    def met(self, value: float) -> bool | None:
        if self.limit is None:
            return None
        return value <= self.limit if self.at_most else value >= self.limit

    @property
    def text(self) -> str:
        """ "≤ 16 calls", "≥ 250 /s", or "no target" for a figure that is only reported."""
        if self.limit is None:
            return "no target"
        unit = self.unit if self.unit == "x" else f" {self.unit}"
        return f"{'≤' if self.at_most else '≥'} {self.limit:g}{unit}".rstrip()


TARGETS: tuple[Target, ...] = (
    Target("cold_start_ratio", "Cold start (import + first request) vs bare Chalice + boto3", 1.5, "x"),
    Target("cpu_floor_ratio", "CPU per complete flow vs the JOSE/KMS floor", 6, "x"),
    Target("aws_calls_per_flow", "AWS calls per complete flow", 16, "calls"),
    Target("usd_per_10k_flows", "Cost of 10,000 onboardings (portal excluded)", 0.90, "USD"),
    Target(
        "usd_floor_per_10k",
        "Cheapest 10,000 onboardings these services allow (computed; reported, no target)",
        None,
        "USD",
    ),
    Target("usd_floor_ratio", "Cost of 10,000 onboardings vs that floor (reported, no target)", None, "x"),
    Target("errors_at_64", "Errors at 64 concurrent flows", 0, "errors"),
    Target("peak_rss_mib", "Peak resident memory after a complete flow", 128, "MiB"),
    Target(
        "audit_checkpoint_growth", "Checkpoint CPU at 10^7 audit leaves vs 10^4 (2,000 new records)", 1.5, "x"
    ),
    Target("audit_checkpoint_rru_at_1e7", "DynamoDB reads of a checkpoint at 10^7 leaves", 1000, "RRU"),
    Target("audit_proof_rru_at_1e7", "DynamoDB reads of an inclusion proof at 10^7 leaves", 20, "RRU"),
    Target(
        "audit_verify_peak_mib_at_1e6", "Peak memory of relayctl audit verify over 10^6 records", 256, "MiB"
    ),
    Target(
        "audit_partner_max_onboardings_per_s",
        "Onboardings per second the sharded audit indexes take (computed)",
        1000,
        "/s",
        at_most=False,
    ),
    Target(
        "max_onboardings_per_s_default_quotas",
        "Onboardings per second one account carries under default AWS quotas (computed)",
        250,
        "/s",
        at_most=False,
    ),
)


def target(key: str) -> Target:
    return next(t for t in TARGETS if t.key == key)


def limit_text(key: str) -> str:
    """The target of a figure as the texts quote it ("≤ 16 calls"), from TARGETS: no text repeats a limit."""
    return target(key).text


def limit(key: str) -> float:
    """The limit of a figure that has one."""
    value = target(key).limit
    if value is None:
        raise ValueError(f"{key} has no target")
    return value


@dataclass
class Section:
    title: str
    figures: dict[str, float] = field(default_factory=dict)
    detail: str = ""  # markdown
    data: dict[str, Any] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    packages = ("chalice", "boto3", "botocore", "moto", "joserfc", "cryptography", "pydantic")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "versions": versions,
    }


def write(sections: list[Section], info: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    figures: dict[str, float] = {}
    for section in sections:
        figures.update(section.figures)
    results: dict[str, Any] = dict(figures)
    results["targets"] = {
        t.key: {
            "limit": t.limit,
            "met": t.met(figures[t.key]) if t.key in figures else (None if t.limit is None else False),
        }
        for t in TARGETS
    }
    results["machine"] = info
    results["elapsed_s"] = round(elapsed_s, 1)
    results["detail"] = {section.title: section.data for section in sections}
    (BENCH / "results.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run`). Every figure is a ratio or a count measured",
        "in this one run, on a shared and noisy machine: compare ratios, not absolute times.",
        "",
        f"- date: {info['date']}, commit `{info['commit']}`, run took {elapsed_s:.0f} s",
        f"- machine: {info['platform']} ({info['machine']}), {info['cpus']} CPUs, "
        f"load average at start {info['load_average_at_start']}",
        f"- Python {info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for t in TARGETS:
        value = figures.get(t.key)
        shown = "not measured" if value is None else f"{value:g}{t.unit if t.unit == 'x' else ' ' + t.unit}"
        verdict = None if value is None else t.met(value)
        met = "—" if verdict is None else ("yes" if verdict else "**no**")
        lines.append(f"| {t.label} (`{t.key}`) | {shown} | {t.text} | {met} |")
    lines.append("")
    for section in sections:
        lines += [f"## {section.title}", "", section.detail.strip(), ""]
    (BENCH / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    return results
