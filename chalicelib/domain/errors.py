"""Domain errors: one base class, specific subclasses with a stable ``code``.

The ``code`` is part of the public contract (it becomes the RFC 9457 problem ``type``); the
``category`` is what the HTTP layer maps to a status code, so the domain never speaks HTTP.
``detail`` names the failed check and must never contain personal data, tokens or key material.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorCategory = Literal[
    "invalid_input", "unauthorized", "forbidden", "not_found", "conflict", "gone", "unavailable"
]


class RelayError(Exception):
    """Base of every error the service raises on purpose."""

    code: ClassVar[str] = "relay-error"
    category: ClassVar[ErrorCategory] = "unavailable"
    title: ClassVar[str] = "The request could not be completed"

    def __init__(self, detail: str, *, check: str | None = None, errors: tuple[str, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.check = check
        self.errors = errors


class InvalidRequest(RelayError):
    """A parameter or body failed validation; ``check`` names the field."""

    code = "invalid-request"
    category = "invalid_input"
    title = "The request is invalid"


class InvalidPartnerDocument(RelayError):
    """A partner registration document failed validation; ``errors`` lists every failed field."""

    code = "invalid-partner-document"
    category = "invalid_input"
    title = "The partner document is invalid"


class PartnerNotFound(RelayError):
    """No partner is registered under this id."""

    code = "partner-not-found"
    category = "not_found"
    title = "Unknown partner"


class PartnerAlreadyRegistered(RelayError):
    """A partner with this id exists; registering again would silently replace its keys."""

    code = "partner-already-registered"
    category = "conflict"
    title = "Partner already registered"


class PartnerDisabled(RelayError):
    """The partner exists but the operator has disabled it."""

    code = "partner-disabled"
    category = "forbidden"
    title = "Partner disabled"


class ConcurrentUpdate(RelayError):
    """Someone else changed the record between our read and our conditional write."""

    code = "concurrent-update"
    category = "conflict"
    title = "Concurrent update"


class DependencyUnavailable(RelayError):
    """An AWS service or the portal failed after the retries that are safe to make."""

    code = "dependency-unavailable"
    category = "unavailable"
    title = "A dependency is unavailable"


class PageError(RelayError):
    """A browser step that cannot continue and must not redirect (unknown client, unusable
    request_uri, forged or replayed callback): shown as an error page."""

    code = "invalid-authorization-request"
    category: ClassVar[ErrorCategory] = "invalid_input"
    title = "This sign-in link cannot be used"


class CsrfFailure(PageError):
    """The form was not posted from our own page (missing or wrong CSRF token)."""

    code = "csrf-check-failed"
    category: ClassVar[ErrorCategory] = "forbidden"
    title = "The form could not be verified"
