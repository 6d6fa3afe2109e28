"""`make bench`: every benchmark in one run, then bench/RESULTS.md and bench/results.json.

Run a subset with ``python -m bench.run cold_start cpu_flow``."""

from __future__ import annotations

import importlib
import sys
import time

from bench import quotas
from bench.report import Section, machine, write

BENCHMARKS = ("cold_start", "cpu_flow", "memory", "concurrency", "audit_scale")


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    info = machine()
    started = time.monotonic()
    sections: list[Section] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"bench: {name} ...", flush=True)
        began = time.monotonic()
        section: Section = module.measure()
        print(f"bench: {name} done in {time.monotonic() - began:.0f} s: {section.figures}", flush=True)
        sections.append(section)
    derived = quotas.section(sections)  # computed from the sections above: after them
    if derived is not None:
        sections.append(derived)
    results = write(sections, info, time.monotonic() - started)
    missed = [key for key, target in results["targets"].items() if key in results and target["met"] is False]
    print(
        "bench: results in bench/RESULTS.md and bench/results.json; targets missed: "
        + (", ".join(missed) or "none")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
