"""Partner registrations in DynamoDB (the ``partners`` table).

The document is stored as canonical JSON and re-validated on every read, so a hand-edited item can
never smuggle in a loose redirect URI. Writes are conditional (create: the id is free; replace: the
version is the one read); ``ConditionalCheckFailed`` becomes a domain error right here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain.errors import ConcurrentUpdate, PartnerAlreadyRegistered, PartnerNotFound
from chalicelib.domain.partners import Partner, parse_partner_document
from chalicelib.domain.ports import PartnerRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# Named condition parts, in the Powertools idempotency style.
PARTNER_IS_NEW = "attribute_not_exists(partner_id)"
VERSION_UNCHANGED = "attribute_exists(partner_id) AND #version = :expected"


class DynamoPartnerStore:
    def __init__(self, client: DynamoDBClient, table_name: str, *, allow_loopback: bool) -> None:
        self._client = client
        self._table = table_name
        self._allow_loopback = allow_loopback

    def get(self, partner_id: str) -> PartnerRecord:
        """One consistent read."""
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"partner_id": {"S": partner_id}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "GetItem", exc) from exc
        if item is None:
            raise PartnerNotFound(f"no partner is registered as {partner_id!r}", check="partner_id")
        return self._record(item)

    def create(self, partner: Partner, *, now: datetime) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(partner, version=1, created_at=now, updated_at=now),
                ConditionExpression=PARTNER_IS_NEW,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise PartnerAlreadyRegistered(
                    f"partner {partner.id!r} is already registered; use update or rotate-keys",
                    check="id",
                ) from None
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc

    def replace(self, partner: Partner, *, expected_version: int, now: datetime) -> None:
        current = self.get(partner.id)
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._item(
                    partner, version=expected_version + 1, created_at=current.created_at, updated_at=now
                ),
                ConditionExpression=VERSION_UNCHANGED,
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":expected": {"N": str(expected_version)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                if "Item" not in exc.response:
                    raise PartnerNotFound(
                        f"no partner is registered as {partner.id!r}", check="partner_id"
                    ) from None
                raise ConcurrentUpdate(
                    f"partner {partner.id!r} changed since it was read; retry", check="version"
                ) from None
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc

    def list(self) -> Iterator[PartnerRecord]:
        try:
            for page in self._client.get_paginator("scan").paginate(
                TableName=self._table, ConsistentRead=True
            ):
                for item in page.get("Items", []):
                    yield self._record(item)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "Scan", exc) from exc

    @staticmethod
    def _item(partner: Partner, *, version: int, created_at: datetime, updated_at: datetime) -> Any:
        document = json.dumps(partner.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)
        return {
            "partner_id": {"S": partner.id},
            "document": {"S": document},
            "enabled": {"BOOL": partner.enabled},
            "version": {"N": str(version)},
            "created_at": {"S": created_at.isoformat()},
            "updated_at": {"S": updated_at.isoformat()},
        }

    def _record(self, item: Any) -> PartnerRecord:
        partner = parse_partner_document(
            json.loads(item["document"]["S"]), allow_loopback=self._allow_loopback
        )
        return PartnerRecord(
            partner=partner,
            version=int(item["version"]["N"]),
            created_at=datetime.fromisoformat(item["created_at"]["S"]),
            updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        )
