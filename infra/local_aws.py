"""Makes the AWS emulator (moto) honour one DynamoDB guarantee our code relies on.

DynamoDB applies each request atomically: a conditional write or a TransactWriteItems checks its
conditions and writes as one step, so of two concurrent conditional writes on one item exactly one
succeeds. moto evaluates conditions and applies writes without a lock, so concurrent requests can
interleave and both "succeed". Serialising moto's DynamoDB request handling restores the
guarantee for local runs and tests; it never applies to real AWS (``infra`` is not shipped).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_PATCHED = False


def make_dynamodb_requests_atomic() -> None:
    """Idempotent; call before the first DynamoDB request reaches moto."""
    global _PATCHED  # a process-wide patch of the emulator, applied once
    if _PATCHED:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    _PATCHED = True
