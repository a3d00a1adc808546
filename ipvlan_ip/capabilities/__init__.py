"""The opt-in capabilities, in the order operations.py walks them (the
shape each has: capability.py). A new capability is a module of its own
with one line here."""
from __future__ import annotations

from . import host_access, proxy_neighbors, service_cidrs, slaac, vlan

# hostAccess first: its routes are the ones serviceCIDRs' go by, and the one proxyNeighbors relies on where
# both are asked for.
ALL = (host_access.CAPABILITY, service_cidrs.CAPABILITY, proxy_neighbors.CAPABILITY, vlan.CAPABILITY,
       slaac.CAPABILITY)


def wanted(conf) -> list:
    """The capabilities the config asks for."""
    return [c for c in ALL if c.wanted(conf)]
