"""The benchmark drives its own onboarding (bench/cpu_flow.py, not the test harness): run one flow
of it here, so a change to the browser journey breaks a test, not the next `make bench`."""

from __future__ import annotations

from bench import cpu_flow


def test_the_benchmarks_own_onboarding_still_completes_and_counts_every_step() -> None:
    # WHEN the benchmark's world runs one complete onboarding
    with cpu_flow.world() as world:
        flow, scheduled = cpu_flow.one_flow(world)
    # THEN every step of its table was invoked and made its AWS calls
    assert set(flow) == {step for step, _, _ in cpu_flow.STEPS}
    assert sum(sum(usage.calls.values()) for usage in flow.values()) > 0
    assert scheduled is not None
