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


_DIGEST = threading.local()
_KMS_PATCHED = False


def make_kms_honour_digest() -> None:
    """moto ignores ``MessageType=DIGEST`` on KMS Sign and hashes the digest again, so a signature
    over a pre-hashed message (how KMS signs inputs above 4 KiB) never verifies. Honour it, as AWS
    does (upstream fix: getmoto/moto PR #10202). Idempotent; local runs and tests only."""
    global _KMS_PATCHED  # a process-wide patch of the emulator, applied once
    if _KMS_PATCHED:
        return
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from moto.kms.responses import KmsResponse
    from moto.kms.utils import ECDSAPrivateKey

    original_response = KmsResponse.sign
    original_sign = ECDSAPrivateKey.sign

    @functools.wraps(original_response)
    def response_sign(self: Any) -> Any:
        _DIGEST.active = self._get_param("MessageType") == "DIGEST"
        try:
            return original_response(self)
        finally:
            _DIGEST.active = False

    @functools.wraps(original_sign)
    def key_sign(self: Any, message: bytes, signing_algorithm: str) -> bytes:
        if not getattr(_DIGEST, "active", False):
            return original_sign(self, message, signing_algorithm)
        hash_algorithm = self._ECDSAPrivateKey__hash_algorithm(signing_algorithm)
        signature: bytes = self.private_key.sign(message, ec.ECDSA(Prehashed(hash_algorithm)))
        return signature

    KmsResponse.sign = response_sign  # type: ignore[method-assign]
    ECDSAPrivateKey.sign = key_sign  # type: ignore[method-assign]
    _KMS_PATCHED = True


_TRANSACTION = threading.local()
_TRANSACTIONS_PATCHED = False


def make_transactions_back_up_items() -> None:
    """moto backs up every table a TransactWriteItems names (``copy.deepcopy`` of the whole table,
    once per item it names) so that it can roll back. Each transaction then costs time and memory in
    proportion to the tables, and the local stack slows down with every request it has served: a
    few hundred flows make a transaction take seconds and leave gigabytes of cyclic garbage. A
    transaction writes only the items it names, so back up and restore those items instead (what
    moto applies, its conditions and its errors are unchanged). Idempotent; local runs and tests only."""
    global _TRANSACTIONS_PATCHED  # a process-wide patch of the emulator, applied once
    if _TRANSACTIONS_PATCHED:
        return
    import copy

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items

    def table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
        if getattr(_TRANSACTION, "items_backed_up", False):
            return self  # the transaction's own items are backed up; the table is not copied
        clone = object.__new__(type(self))  # otherwise what copy.deepcopy does for any object
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def item_key(self: Any, operation: dict[str, Any]) -> tuple[Any, DynamoType, DynamoType | None]:
        table = self.tables[operation["TableName"]]
        key = operation["Key"] if "Key" in operation else operation["Item"]
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        return table, DynamoType(key[table.hash_key_attr]), range_value

    def restore(table: Any, hash_value: DynamoType, range_value: DynamoType | None, item: Any) -> None:
        if item is None:
            table.delete_item(hash_value, range_value)
        elif range_value is None:
            table.items[hash_value] = item
        else:
            table.items[hash_value][range_value] = item

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        try:
            keys = [item_key(self, next(iter(entry.values()))) for entry in transact_items]
        except (KeyError, TypeError, AttributeError, StopIteration):
            return original(self, transact_items)  # malformed: moto's own checks answer it
        backups = [(*key, copy.deepcopy(key[0].get_item(key[1], key[2]))) for key in keys]
        _TRANSACTION.items_backed_up = True
        try:
            original(self, transact_items)
        except Exception:
            for backup in reversed(backups):  # the first backup of an item is its state before
                restore(*backup)
            raise
        finally:
            _TRANSACTION.items_backed_up = False

    Table.__deepcopy__ = table_deepcopy  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _TRANSACTIONS_PATCHED = True


_IDEMPOTENCY_WINDOW_S = 600.0  # DynamoDB remembers a transaction's ClientRequestToken for 10 minutes
_IDEMPOTENT: dict[str, tuple[float, str, Any]] = {}
_IDEMPOTENT_PATCHED = False


def make_transactions_idempotent() -> None:
    """DynamoDB makes TransactWriteItems idempotent through its ``ClientRequestToken``: a call
    repeated with the token of one that succeeded (within 10 minutes) succeeds again without
    writing. botocore fills the token in and keeps it across its own retries, so a transaction
    whose answer was lost (a read timeout) is retried safely in AWS. moto ignores the token: the
    retry fails the conditions its own first attempt made true, which the relay must read as a
    lost race (a "reused" code revokes the flow). Remember successful tokens as DynamoDB does.
    Runs under the request lock of ``make_dynamodb_requests_atomic``. Idempotent; local runs and
    tests only."""
    global _IDEMPOTENT_PATCHED  # a process-wide patch of the emulator, applied once
    if _IDEMPOTENT_PATCHED:
        return
    import hashlib
    import json
    import time

    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any) -> Any:
        token = self.body.get("ClientRequestToken")
        if not token:
            return original(self)
        now = time.monotonic()
        for stale in [key for key, (expires, _, _) in _IDEMPOTENT.items() if expires <= now]:
            del _IDEMPOTENT[stale]
        # moto hands binary (B) values over already decoded: encode them back to compare requests.
        canonical = json.dumps(
            self.body["TransactItems"], sort_keys=True, default=lambda value: bytes(value).hex()
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        if token in _IDEMPOTENT:
            _, seen_digest, result = _IDEMPOTENT[token]
            if seen_digest != digest:
                raise JsonRESTError(
                    "IdempotentParameterMismatchException",
                    "The request uses the same client token as a previous, but non-identical request.",
                )
            return result  # it succeeded before: succeed again, write nothing
        result = original(self)  # raises (and is not remembered) when it fails
        _IDEMPOTENT[token] = (now + _IDEMPOTENCY_WINDOW_S, digest, result)
        return result

    DynamoHandler.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _IDEMPOTENT_PATCHED = True


def make_emulator_faithful() -> None:
    """Every emulator fix above, for the launcher and the test suite."""
    make_dynamodb_requests_atomic()
    make_kms_honour_digest()
    make_transactions_back_up_items()
    make_transactions_idempotent()
