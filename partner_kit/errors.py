"""What can go wrong for a partner, as exceptions. Every one is a ``RelayError``.

``RelayError`` carries what the relay said: the HTTP status, the OAuth ``error`` /
``error_description`` (RFC 6749) or the RFC 9457 problem (``type``, ``detail``, ``check``).
"""

from __future__ import annotations

from typing import Any, Literal


class RelayError(Exception):
    """The relay refused a request, or answered something the kit cannot use."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
        check: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.description = description
        self.check = check
        self.problem = problem


class AuthorizationError(RelayError):
    """The redirect back carried ``error=...``: ``access_denied`` (the resident cancelled or the card
    could not be used), ``temporarily_unavailable`` (Mynaportal is down) or ``server_error``."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(
            f"authorization failed: {error}" + (f" ({description})" if description else ""),
            error=error,
            description=description,
        )


class CallbackMismatch(RelayError):
    """The redirect back does not belong to this authorization (wrong ``iss`` or ``state``, or no
    ``code``): it may be forged or mixed up, so nothing is exchanged."""


class DeliveryGone(RelayError):
    """``410``: nothing to pick up (any more). ``check`` says why: ``delivery.picked_up``,
    ``delivery.expired``, ``delivery.failed``, ``delivery.unreadable_result`` (the portal answered
    with data the relay could not read: not "no data"), ``delivery.revoked`` or ``delivery.cancelled``."""

    def __init__(self, check: str | None, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"delivery gone: {check}", status=410, check=check, problem=problem)


class DeliveryTimeout(RelayError):
    """The delivery was still being prepared (``202``) when the wait ran out. Come again later (or
    wait for the ``delivery.ready`` webhook) with the same ``Delivery``."""


class VerificationError(RelayError):
    """A sealed payload, a webhook or a signed tree head did not decrypt, verify or carry the
    expected claims."""


class InconsistentLog(VerificationError):
    """The relay's audit log contradicts a signed tree head the partner kept (docs/partner-audit.md):

    - ``fork``: the relay shows another tree under the kept checkpoint's number, or a next head that
      does not link to it (``previous``);
    - ``rollback``: its head is older or smaller than the kept one, or it denies the kept one;
    - ``proof``: the RFC 9162 section 2.1.4 consistency proof does not verify.

    Signed heads the partner verified say otherwise, so this is evidence, not an outage: keep the
    kept head and the relay's answer, report them to the operator, and do not replace the kept head.
    """

    def __init__(self, kind: Literal["fork", "rollback", "proof"], message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
