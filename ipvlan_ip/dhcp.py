"""Addresses from the LAN's own DHCP server: `"ipam": {"type": "dhcp"}`.

The CNI `dhcp` plugin hands the request to its daemon (`dhcp daemon`),
which runs a DHCP client per container inside the container's netns, on
CNI_IFNAME, and renews the lease for as long as the container lives. Three
things make that work with ipvlan, whose links all carry the master's MAC:

- the daemon sends a client identifier of its own per attachment (container
  ID, network name, ifname), so the server tells the containers apart even
  though their MACs are the same;
- the server's replies must be broadcast (the daemon's `-broadcast` flag):
  a reply sent to the shared MAC reaches the slave by IP, and the slave has
  none yet. In l2 a broadcast reaches every slave; in l3 and l3s no
  broadcast reaches a slave at all, so dhcp is refused there (config.py);
- clients that share a MAC must not ask at the same time: their DISCOVERs
  then carry the same transaction ID, every one of them takes the first ACK,
  and all but one end with an address already in use. ADD holds a lock per
  master around the acquisition (operations.py). The daemon renews leases
  on its own, outside that lock: an acquisition that meets another client's
  renewal can take that client's ACK. The kernel then refuses the address
  (another slave has it), and ADD fails with "try again later".

This module says where the daemon listens, names the lock, and turns the
daemon's failures into what to do about them.
"""
from __future__ import annotations

import zlib

from .errors import IPAM_FAILURE, TRY_AGAIN_LATER, CniError
from .node.state import LOCKS

DEFAULT_SOCKET = "/run/cni/dhcp.sock"
TAKEN = ("Address already assigned to an ipvlan device", "Address already in use")
START = ("start it first: `/usr/lib/cni/dhcp daemon -broadcast` (the dhcp file of your CNI bin dir), or "
         "Debian's cni-dhcp.socket and cni-dhcp.service with -broadcast added to its ExecStart (see "
         "docs/dhcp.md)")


def socket_path(ipam: dict) -> str:
    return ipam.get("daemonSocketPath") or DEFAULT_SOCKET


def lock_path(master: str) -> str:
    """One lock per master: the clients that share its MAC take turns."""
    return f"{LOCKS}/dhcp-{zlib.crc32(master.encode()):08x}.lock"


def daemon_missing(path: str) -> CniError:
    return CniError(IPAM_FAILURE, f"the CNI dhcp daemon is not listening on {path}; {START}")


def not_listening(error: CniError) -> bool:
    return "error dialing DHCP daemon" in error.details


def explain(error: CniError, path: str) -> CniError:
    """The dhcp plugin's failure, with what to do about it where we know."""
    if not_listening(error):
        return daemon_missing(path)
    if error.code == TRY_AGAIN_LATER or "no DHCP packet received" in error.details:
        return CniError(error.code, f"{error.details}: no DHCP lease arrived. With ipvlan the server's "
                        "replies reach the container only when broadcast: is the daemon started with "
                        "`-broadcast` (`dhcp daemon -broadcast`)? Else check that a DHCP server answers "
                        "on the master's network", error.msg)
    return error


def explain_taken(error: CniError) -> CniError:
    """A lease for an address another link on the master has: another client's ACK.
    The kernel says so (extack), or, without the message, EADDRINUSE."""
    if not any(text in error.details for text in TAKEN):
        return error
    return CniError(TRY_AGAIN_LATER, f"{error.details}: the DHCP answer was for another container's address. "
                    "Clients on one master share its MAC, and this request met another client's exchange (a "
                    "renewal, which the daemon runs on its own); nothing was kept, try again", error.msg)
