"""The SSRF guard for MCP `server_url`s: which hosts a request may make Loom connect to.

A request names a URL; Loom would connect to it from inside the operator's network. The
policy, in order of precedence:
1. a host name, address or network in `mcp_guard.deny` is refused;
2. one in `mcp_guard.allow` is accepted;
3. link-local, cloud metadata, multicast and unspecified addresses are refused;
4. loopback, private, shared (CGNAT) and other non-global addresses are refused;
5. any other (public) address is accepted, unless `allow_public` is false.

The check runs on the addresses a name resolves to, every one of them, so a public name
pointing at 127.0.0.1 or 169.254.169.254 is refused. It runs twice: when the request is
read (a refusal is a 400 naming `tools[i].server_url`), and again inside the HTTP client at
connect time, where `GuardedBackend` resolves the name, checks the addresses and connects
to the checked address itself. So the address checked is the address connected to: a DNS
answer that changes between the two (rebinding) is checked again, not trusted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore2
import httpx2

from loom.config import ConfigError, McpGuardSettings
from loom.errors import InvalidRequestError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never reachable by default: link-local (where cloud metadata lives), the IPv6 ULA block
# clouds use for metadata (fd00:ec2::254), Alibaba's metadata address, "this network",
# multicast and broadcast.
BUILTIN_DENY_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00::/8",
        "100.100.100.200/32",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "ff00::/8",
    )
)
BUILTIN_DENY_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})


@dataclass(frozen=True)
class _Entries:
    networks: tuple[Network, ...]
    hosts: frozenset[str]  # exact names, or ".example.com" for a domain and its subdomains

    @classmethod
    def parse(cls, entries: Iterable[str], where: str) -> _Entries:
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in entries:
            text = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            name = text[2:] if text.startswith("*.") else text.lstrip(".")
            if not name or "/" in name or ":" in name:
                raise ConfigError(f"{where}: {entry!r} is neither a host name nor a network")
            hosts.add("." + name if text.startswith(("*.", ".")) else name)
        return cls(tuple(networks), frozenset(hosts))

    def names(self, host: str) -> bool:
        if host in self.hosts:
            return True
        return any(h.startswith(".") and (host.endswith(h) or host == h[1:]) for h in self.hosts)

    def covers(self, address: Address) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class UrlPolicy:
    def __init__(self, settings: McpGuardSettings) -> None:
        self.allow = _Entries.parse(settings.allow, "mcp_guard.allow")
        self.deny = _Entries.parse(settings.deny, "mcp_guard.deny")
        self.allow_public = settings.allow_public

    def name_refusal(self, host: str) -> str | None:
        """Why `host` is refused by its name alone (before any DNS lookup), or None."""
        if self.deny.names(host):
            return f"host '{host}' is denied"
        if host in BUILTIN_DENY_HOSTS and not self.allow.names(host):
            return f"host '{host}' is a cloud metadata service"
        return None

    def refusal(self, host: str, addresses: list[Address]) -> str | None:
        """Why connecting to `host` at these addresses is refused, or None if it is not."""
        host = host.lower().rstrip(".")
        reason = self.name_refusal(host)
        if reason:
            return reason
        addresses = [_plain(a) for a in addresses]
        for address in addresses:
            if self.deny.covers(address):
                return f"address {address} is denied"
        if self.allow.names(host):
            return None
        for address in addresses:
            reason = self._address_refusal(host, address)
            if reason:
                return reason
        return None

    def _address_refusal(self, host: str, address: Address) -> str | None:
        if self.allow.covers(address):
            return None
        if any(address in net for net in BUILTIN_DENY_NETWORKS if net.version == address.version):
            return f"address {address} is link-local, metadata or otherwise never allowed"
        if not address.is_global:
            return (
                f"address {address} is loopback or private; allow it with mcp_guard.allow "
                "(LOOM_MCP_ALLOW)"
            )
        if not self.allow_public:
            return f"address {address} is not in mcp_guard.allow"
        return None

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Every address `host` resolves to (an address literal resolves to itself)."""
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        out: list[Address] = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in out:
                out.append(address)
        return out

    async def checked_addresses(self, host: str, port: int) -> list[Address]:
        """Resolve `host` and return its addresses; raise PermissionError if refused."""
        reason = self.name_refusal(host.lower().rstrip("."))
        if reason:
            raise PermissionError(reason)
        addresses = await self.resolve(host, port)
        if not addresses:
            raise PermissionError(f"host '{host}' has no address")
        reason = self.refusal(host, addresses)
        if reason:
            raise PermissionError(reason)
        return addresses

    async def check_url(self, url: str, param: str, timeout: float) -> None:
        """A 400 naming `param` if `url` is refused. A name that does not resolve (or not
        in time) passes here: connecting will fail, and the turn reports the server as
        unreachable, as for any server that is down; the connect-time check still runs."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(timeout):
                await self.checked_addresses(host, port)
        except PermissionError as exc:
            raise InvalidRequestError(
                f"'{param}' is not allowed: {exc}.", param=param, code="invalid_value"
            ) from None
        except (OSError, TimeoutError):
            return


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """A network backend that resolves, checks, and connects to the checked address."""

    def __init__(self, policy: UrlPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await self._policy.checked_addresses(host, port)
        except PermissionError as exc:
            raise httpcore2.ConnectError(f"refused by the MCP URL guard: {exc}") from None
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        failure: Exception | None = None
        for address in addresses:  # every one was checked; try them in order
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore2.ConnectError(f"no address to connect to for {host}")

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise httpcore2.ConnectError("the MCP URL guard allows TCP connections only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: UrlPolicy) -> httpx2.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`; it ignores
    proxy environment variables, which would otherwise take the connection elsewhere."""
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    # The transport has no public hook for the network backend; its pool does.
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=transport._pool._ssl_context,
        network_backend=GuardedBackend(policy),
    )
    return transport
