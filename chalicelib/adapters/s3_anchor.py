"""Signed tree heads copied where the operator cannot rewrite them: an S3 bucket with Object Lock
in compliance mode (retention set on the bucket: a head can be neither deleted nor overwritten by
anyone, the account's root included, until it ends; see docs/security.md "threat model").

Why: a DynamoDB administrator can delete the latest checkpoint and every record after the one
before it, and the table alone would look whole. Against the bucket, ``relayctl audit verify``
names the missing checkpoint. Writing a head is idempotent (the same head twice is one head);
a *different* head under an anchored sequence number is refused: that would be a fork.

One object per head, ``checkpoints/<seq, 12 digits>.json``: ``{"document", "signed_head"}``,
the head as the audit table stores it. Listing after a sequence number is one request per 1,000
heads; nothing on the service's own path lists the bucket.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain.checkpoints import LogInconsistent, TreeHead

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

PREFIX = "checkpoints/"


def object_key(seq: int) -> str:
    return f"{PREFIX}{seq:012d}.json"


@dataclass(frozen=True)
class AnchoredHead:
    seq: int
    document: str
    signed_head: str


class S3HeadAnchor:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def anchor(self, head: TreeHead, document: str) -> None:
        body = json.dumps({"document": document, "signed_head": head.signed_head}, separators=(",", ":"))
        try:
            # Object Lock buckets take only writes carrying a checksum; the bucket's default
            # retention locks the object (compliance mode) as it is written. If-None-Match: the
            # first head written under a sequence number is the only one (no second version).
            self._client.put_object(
                Bucket=self._bucket,
                Key=object_key(head.seq),
                Body=body.encode(),
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
            )
            return
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "412"):
                raise unavailable("s3", "PutObject", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("s3", "PutObject", exc) from exc
        existing = self.get(head.seq)  # anchored before: by a run that crashed before marking it
        if existing is None or existing.signed_head != head.signed_head or existing.document != document:
            raise LogInconsistent(
                f"checkpoint {head.seq} is anchored with another head: refusing a fork", check="audit.anchor"
            )

    def get(self, seq: int) -> AnchoredHead | None:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=object_key(seq))
            data = json.loads(answer["Body"].read())
        except ClientError as exc:
            # (without s3:ListBucket, S3 answers a missing key 403: only relayctl asks for those)
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise unavailable("s3", "GetObject", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("s3", "GetObject", exc) from exc
        except ValueError:
            return AnchoredHead(seq, "", "")  # unreadable: compared, it differs from any head
        return AnchoredHead(seq, str(data.get("document", "")), str(data.get("signed_head", "")))

    def sequence_numbers(self, *, after: int = 0) -> Iterator[int]:
        """The anchored heads' sequence numbers above ``after``, in order (paginated listing)."""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=PREFIX, StartAfter=object_key(after)
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    name = entry["Key"].removeprefix(PREFIX).removesuffix(".json")
                    if name.isdigit():
                        yield int(name)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("s3", "ListObjectsV2", exc) from exc
