"""Sends signed webhook events to partners' registered URLs.

The URL was validated at registration (https, a public host; loopback http only in local/test).
Because a public name can still resolve to a private address (a partner's DNS changed, or
rebinding), the sender resolves the host itself, refuses the call unless every address is a public
one (outside the local and test stages), and connects to an address it checked, with the name kept
for SNI, certificate verification and ``Host``: no second lookup between check and connect (SSRF,
OWASP A10:2021). Redirects are never followed, every call has a connect and a read timeout, and a
partner's failure is an answer (False), not an exception: retries with backoff are the delivery
service's, from the outbox.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Final
from urllib.parse import urlsplit

import urllib3

from chalicelib.domain.partners import is_public_address
from chalicelib.telemetry import logger

CONTENT_TYPE: Final = "application/jwt"
MAX_POOLS: Final = 32

Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, in the order the system would try them (duplicates dropped)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class AddressRefused(Exception):
    """The webhook's host resolves to an address outside the public internet."""


class HttpWebhookSender:
    def __init__(
        self,
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        allow_private: bool = False,
        resolver: Resolver = resolve,
        ca_certs: str | None = None,
    ) -> None:
        """``ca_certs``: a CA bundle to trust instead of the system's (tests; None in the service)."""
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._allow_private = allow_private
        self._resolve = resolver
        self._ca_certs = ca_certs
        self._pools: dict[tuple[str, str, str, int], urllib3.HTTPConnectionPool] = {}

    def send(self, url: str, body: str, *, event_id: str) -> bool:
        """POST the signed event; True on a 2xx answer."""
        parts = urlsplit(url)
        host, scheme = parts.hostname or "", parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        headers = {
            "Host": parts.netloc,
            "Content-Type": CONTENT_TYPE,
            "Webhook-Id": event_id,
            "User-Agent": "myna-relay-webhooks",
        }
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        try:
            addresses = self._addresses(host, port)
            answer = self._post(scheme, host, port, addresses, target, body.encode(), headers)
        except AddressRefused:
            logger.warning("webhook not sent", extra={"event_id": event_id, "reason": "address_not_public"})
            return False
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            logger.info("webhook not delivered", extra={"event_id": event_id, "reason": type(exc).__name__})
            return False
        delivered = 200 <= answer.status < 300
        if not delivered:
            logger.info("webhook refused", extra={"event_id": event_id, "status": answer.status})
        return delivered

    def _addresses(self, host: str, port: int) -> Sequence[str]:
        addresses = self._resolve(host, port)
        if not addresses:
            raise OSError(f"no address for {host}")
        if not self._allow_private and not all(is_public_address(a) for a in addresses):
            raise AddressRefused(host)
        return addresses

    def _post(
        self,
        scheme: str,
        host: str,
        port: int,
        addresses: Sequence[str],
        target: str,
        body: bytes,
        headers: dict[str, str],
    ) -> urllib3.BaseHTTPResponse:
        """To each checked address in turn until one connects (as the system's own connect would)."""
        for index, address in enumerate(addresses):
            try:
                return self._pool(scheme, host, address, port).urlopen(
                    "POST",
                    target,
                    body=body,
                    headers=headers,
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=True,
                )
            except urllib3.exceptions.NewConnectionError:
                if index == len(addresses) - 1:
                    raise
        raise OSError("no address")  # not reached: addresses is never empty

    def _pool(self, scheme: str, host: str, address: str, port: int) -> urllib3.HTTPConnectionPool:
        key = (scheme, host, address, port)
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= MAX_POOLS:
                self._pools.pop(next(iter(self._pools))).close()
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address,
                    port,
                    timeout=self._timeout,
                    retries=False,
                    maxsize=2,
                    server_hostname=host,
                    assert_hostname=host,
                    ca_certs=self._ca_certs,
                )
            else:
                pool = urllib3.HTTPConnectionPool(
                    address, port, timeout=self._timeout, retries=False, maxsize=2
                )
            self._pools[key] = pool
        return pool
