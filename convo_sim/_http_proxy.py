"""Which proxy the environment names for a URL, as the `openai` SDK decides it.

The SDK's HTTP client (httpx, `trust_env=True`) reads the proxies from
`urllib.request.getproxies()` (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, in
either case, lower case first) and skips them for the hosts `NO_PROXY`
names. The lean transport follows the same rules, so both transports send a
request the same way:

- the scheme's own proxy wins over `ALL_PROXY`; a proxy given without a
  scheme is `http://`;
- `NO_PROXY=*` turns every proxy off; otherwise each comma-separated entry
  exempts: `example.com` that host and its subdomains, `.example.com` and
  `*.example.com` its subdomains only, `localhost` itself, an IPv4 or IPv6
  address (bracketed or not) itself, `192.168.0.0/16` or `fd00::/8` a
  network, and `scheme://host[:port]` exactly that; an entry with a port
  exempts that port only, and never a URL that leaves its scheme's default
  port implicit or spells it out (httpx drops default ports before
  comparing). Entries it cannot read are ignored.

Loopback is not exempt unless `NO_PROXY` says so, as in the SDK.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["proxy_from_environment"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def proxy_from_environment(url: str, proxies: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL to reach `url` through, or None to connect directly.

    Args:
        url: an `http(s)://host[:port]/...` URL.
        proxies: the `getproxies()`-style mapping (scheme, `all` or `no` to
            a value); default `urllib.request.getproxies()`.
    """
    found = urllib.request.getproxies() if proxies is None else proxies
    target = urlsplit(url)
    scheme = target.scheme.lower()
    proxy = found.get(scheme) or found.get("all")
    if not proxy:
        return None
    host = (target.hostname or "").lower()
    # httpx compares ports with the scheme's default dropped.
    port = None if target.port == _DEFAULT_PORTS.get(scheme) else target.port
    for entry in (part.strip() for part in found.get("no", "").split(",")):
        if entry == "*":
            return None
        if entry and _exempts(entry, scheme, host, port):
            return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _exempts(entry: str, scheme: str, host: str, port: int | None) -> bool:
    """Whether one `NO_PROXY` entry covers the target (False for unreadable entries)."""
    exact = "://" in entry  # `scheme://host[:port]`: that host only, as httpx reads it
    if exact:
        want, _, entry = entry.partition("://")
        if want.lower() not in ("all", scheme):
            return False
    if "/" in entry:
        network = _network(entry)
        return network is not None and _in_network(host, network)
    if _address(entry) is not None:  # a bare IPv6 address has colons urlsplit would misread
        return _same_host(host, entry)
    try:
        parsed = urlsplit(f"//{entry}")
        name, want_port = (parsed.hostname or "").lower(), parsed.port
    except ValueError:
        return False
    if not name or (want_port is not None and want_port != port):
        return False
    if name == "*":
        return True
    if name.startswith("*."):
        return host.endswith(name[1:])
    if exact or _address(name) is not None or name == "localhost":
        return _same_host(host, name)
    if name.startswith("."):
        return host.endswith(name)
    name = name.removeprefix("*")
    return host == name or host.endswith(f".{name}")


def _same_host(host: str, name: str) -> bool:
    mine, theirs = _address(host), _address(name)
    if mine is not None and theirs is not None:
        return mine == theirs
    return host == name


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    address, slash, prefix = entry.partition("/")
    if not slash or not prefix.isdigit() or _address(address) is None:
        return None
    try:
        return ipaddress.ip_network(f"{address.strip('[]')}/{prefix}", strict=False)
    except ValueError:
        return None


def _in_network(host: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    address = _address(host)
    return address is not None and address.version == network.version and address in network
