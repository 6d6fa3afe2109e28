"""Scenarios: how the simulated portal misbehaves. Selectable per persona (its data file), for the
whole sandbox (configuration), or per test (``Portal.set_scenario`` or ``POST /sandbox/scenario``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sandbox import inferred
from sandbox.personas import CallbackStyle


class Scenario(StrEnum):
    NORMAL = "normal"
    SLOW_PROVIDER = "slow-provider"  # the result takes minutes
    NEVER_NOTIFIES = "never-notifies"  # no completion notice ever comes
    NOTIFIES_EARLY = "notifies-early"  # the notice arrives before the result is ready
    DUPLICATE_NOTICES = "duplicate-notices"  # the notice is sent twice
    TOKEN_5XX = "token-5xx"
    TOKEN_TIMEOUT = "token-timeout"
    REQUEST_5XX = "request-5xx"
    REQUEST_TIMEOUT = "request-timeout"
    RESULT_5XX = "result-5xx"
    RESULT_TIMEOUT = "result-timeout"
    MALFORMED_JSON = "malformed-json"  # selfPersonalData is not valid JSON
    ERROR_CODE = "error-code"  # the result answers a provider errorCode
    OVERSIZED_PAYLOAD = "oversized-payload"  # selfPersonalData is megabytes long
    # /result answers an errorCode the relay cannot know (EQ0999) until the completion notice has been
    # sent, then the data
    UNKNOWN_ERROR_BEFORE_NOTICE = "unknown-error-before-notice"


Step = Literal["token", "request", "result"]
Fault = Literal["5xx", "timeout"]

FAULTS: dict[Scenario, tuple[Step, Fault]] = {
    Scenario.TOKEN_5XX: ("token", "5xx"),
    Scenario.TOKEN_TIMEOUT: ("token", "timeout"),
    Scenario.REQUEST_5XX: ("request", "5xx"),
    Scenario.REQUEST_TIMEOUT: ("request", "timeout"),
    Scenario.RESULT_5XX: ("result", "5xx"),
    Scenario.RESULT_TIMEOUT: ("result", "timeout"),
}


@dataclass
class Override:
    """A scenario set by a test; ``remaining`` counts down the faulty calls (None: every call)."""

    scenario: Scenario
    remaining: int | None = None


class ScenarioBook:
    """Which scenario applies: test override for the persona > test override for all > the persona's
    own > the configured default. Not thread-safe on its own; the portal holds its lock."""

    def __init__(
        self, default: Scenario = Scenario.NORMAL, *, callback_style: CallbackStyle | None = None
    ) -> None:
        self.default = default
        self.callback_style_default: CallbackStyle = callback_style or inferred.DEFAULT_CALLBACK_STYLE
        self._by_persona: dict[str, Override] = {}
        self._everyone: Override | None = None
        self._style_by_persona: dict[str, CallbackStyle] = {}
        self._style_everyone: CallbackStyle | None = None

    def set(self, scenario: Scenario, *, persona: str | None = None, times: int | None = None) -> None:
        override = Override(scenario, times)
        if persona is None:
            self._everyone = override
        else:
            self._by_persona[persona] = override

    def clear(self) -> None:
        self._by_persona.clear()
        self._everyone = None
        self._style_by_persona.clear()
        self._style_everyone = None

    def set_callback_style(self, style: CallbackStyle, *, persona: str | None = None) -> None:
        if persona is None:
            self._style_everyone = style
        else:
            self._style_by_persona[persona] = style

    def callback_style(self, persona: str | None, persona_default: CallbackStyle | None) -> CallbackStyle:
        """How a cancel or an expired certificate is sent back, in the same order as scenarios: test
        override for the persona > for all > the persona's own > the configured default. A cancel
        before a card is chosen has no persona."""
        if persona is not None and persona in self._style_by_persona:
            return self._style_by_persona[persona]
        return self._style_everyone or persona_default or self.callback_style_default

    def _override(self, persona: str) -> Override | None:
        return self._by_persona.get(persona) or self._everyone

    def current(self, persona: str, persona_default: str | None) -> Scenario:
        override = self._override(persona)
        if override is not None and override.remaining != 0:
            return override.scenario
        if persona_default:
            return Scenario(persona_default)
        return self.default

    def fault(self, persona: str, persona_default: str | None, step: Step) -> Fault | None:
        """The fault for this call, if any; a counted override is used up by the calls it breaks."""
        scenario = self.current(persona, persona_default)
        fault = FAULTS.get(scenario)
        if fault is None or fault[0] != step:
            return None
        override = self._override(persona)
        if override is not None and override.scenario == scenario and override.remaining is not None:
            override.remaining -= 1
        return fault[1]
