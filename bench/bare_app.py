"""The baseline of the cold-start benchmark: a bare Chalice + boto3 app, written the way a minimal
Lambda API usually is. ``GET /item`` creates a DynamoDB client and does one GetItem (one AWS call,
like the relay's ``GET /.well-known/jwks.json`` does one KMS GetPublicKey); ``GET /hello`` touches
no AWS (like the relay's ``GET /health``). Never deployed: only ``bench/cold_start.py`` runs it."""

from __future__ import annotations

import os
from typing import Any

import boto3
from chalice.app import Chalice

app = Chalice(app_name="bench-bare")


@app.route("/item", methods=["GET"])
def item() -> dict[str, Any]:
    client = boto3.client("dynamodb")
    answer = client.get_item(
        TableName=os.environ["BARE_TABLE"], Key={"partner_id": {"S": "bench-missing-partner"}}
    )
    return {"found": "Item" in answer}


@app.route("/hello", methods=["GET"])
def hello() -> dict[str, str]:
    return {"hello": "world"}
