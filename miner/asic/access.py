"""Who may use the API: cgminer's ``--api-allow`` list, ``[W:]address[/prefix],...``.

Without a list only loopback may connect, read-only; ``W:`` grants the privileged (write) commands and
``0/0`` means every address. A client no entry admits is closed without a reply, as cgminer does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@dataclass(frozen=True)
class AllowEntry:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None  # None: 0/0, everyone
    privileged: bool


def parse_allow(allow: str) -> list[AllowEntry]:
    """Parse ``[W:]address[/prefix],...``; ValueError with one line for a bad entry."""
    entries = []
    for raw in allow.split(","):
        item = raw.strip()
        if not item:
            continue
        privileged = False
        if len(item) > 2 and item[1] == ":" and item[0].isalpha():
            privileged = item[0].upper() == "W"  # R: and the api-groups letters are read-only here
            item = item[2:]
        if item == "0/0":
            entries.append(AllowEntry(None, privileged))
            continue
        addr, slash, prefix = item.partition("/")
        addr = addr.strip("[]")
        if ":" not in addr:  # cgminer pads short IPv4 forms: "10/8" means 10.0.0.0/8
            octets = addr.split(".")
            addr = ".".join(octets + ["0"] * (4 - len(octets)))
        try:
            network = ipaddress.ip_network(addr + (slash + prefix if slash else ""), strict=False)
        except ValueError:
            raise ValueError(f"invalid entry '{raw.strip()}' (expected [W:]address[/prefix] or 0/0)") from None
        if slash and network.prefixlen == 0:
            entries.append(AllowEntry(None, privileged))
        else:
            entries.append(AllowEntry(network, privileged))
    if not entries:
        raise ValueError("no address given (expected [W:]address[/prefix],...)")
    return entries


def client_access(address: str, entries: list[AllowEntry] | None) -> bool | None:
    """None: refuse the connection; else whether privileged commands are allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if entries is None:
        return False if any(ip.version == n.version and ip in n for n in LOOPBACK) else None
    for entry in entries:
        if entry.network is None or (ip.version == entry.network.version and ip in entry.network):
            return entry.privileged
    return None
