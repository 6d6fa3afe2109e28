"""Sends signed webhook events to partners' registered URLs.

The URL was validated at registration (https; loopback only in local/test); redirects are never
followed, every call has a connect and a read timeout, and a partner's failure is an answer
(False), not an exception: retries with backoff are the delivery service's, from the outbox.
"""

from __future__ import annotations

from typing import Final

import urllib3

from chalicelib.telemetry import logger

CONTENT_TYPE: Final = "application/jwt"


class HttpWebhookSender:
    def __init__(self, *, connect_timeout_s: float = 2.0, read_timeout_s: float = 5.0) -> None:
        self._pool = urllib3.PoolManager(
            num_pools=8,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=False,
        )

    def send(self, url: str, body: str, *, event_id: str) -> bool:
        """POST the signed event; True on a 2xx answer."""
        try:
            answer = self._pool.request(
                "POST",
                url,
                body=body.encode(),
                headers={
                    "Content-Type": CONTENT_TYPE,
                    "Webhook-Id": event_id,
                    "User-Agent": "myna-relay-webhooks",
                },
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            logger.info("webhook not delivered", extra={"event_id": event_id, "reason": type(exc).__name__})
            return False
        delivered = 200 <= answer.status < 300
        if not delivered:
            logger.info("webhook refused", extra={"event_id": event_id, "status": answer.status})
        return delivered
