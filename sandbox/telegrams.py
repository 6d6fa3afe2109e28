"""The portal's JSON messages (telegrams), as the sandbox reads and writes them.

[O] every message carries a ``commonHeader`` with exactly these five string fields.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CommonHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    telegramId: str = Field(max_length=64)  # the portal's own field names
    telegramType: str = Field(max_length=32)
    mode: str = Field(max_length=8)
    processId: str = Field(max_length=64)
    errorCode: str = Field(max_length=16)


class InquiryRequestInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inquiryCondition: str = Field(max_length=64)


class RequestTelegram(BaseModel):
    """IF001-04 ``POST /online-resource-web/request``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commonHeader: CommonHeader
    selfProvisionDataReqInfo: InquiryRequestInfo


class ResultTelegram(BaseModel):
    """IF001-06 ``POST /online-resource-web/result``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commonHeader: CommonHeader
