"""rtnetlink's link and address dumps, read in-process (what `ip -j -d link
show` and `ip -j address show` print, without a process): the interfaces
of one network namespace with the details the plugin decides by, namely
the kind, MAC, alias, lower device (and the netns it is in), an ipvlan
link's mode and flag, a VLAN link's id; and which interfaces hold an
address of global scope.

Only the parsing of the kernel's answers is here; kernel.py opens the
socket inside the netns to read.
"""
from __future__ import annotations

import os
import struct
from collections import namedtuple

NETLINK_ROUTE, AF_UNSPEC = 0, 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 16, 18, 20, 22, 24, 26
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
MSG_TRUNC = 0x20
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_LINK_NETNSID = \
    1, 3, 5, 10, 18, 20, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_IPVLAN_MODE, IFLA_IPVLAN_FLAGS = 1, 2     # in an ipvlan link's IFLA_INFO_DATA
IFLA_VLAN_ID = 1                               # in a VLAN link's
RT_SCOPE_LINK = 253
IFA_ADDRESS, IFA_LOCAL = 1, 2                  # in an address's answer
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE, RTA_VIA = 1, 4, 5, 15, 18     # in a route's
RT_TABLE_MAIN, RTN_UNICAST = 254, 1

MODES = {0: "l2", 1: "l3", 2: "l3s"}
# The port's flag as the config names it; bridge is the kernel's 0.
FLAGS = {0: "bridge", 1: "private", 2: "vepa"}


# A dump the kernel says it interrupted (a link came or went meanwhile) is asked for again, this many times.
DUMP_TRIES = 5


class DumpFailed(Exception):
    """A dump the kernel could not finish, or finished with an error: its
    list would be shorter than the truth. Not an OSError, so that no caller
    that passes over a netns gone meanwhile passes over this too."""


class Link(namedtuple("Link", "index name kind mac alias lower lower_netnsid mode flag vlan master",
                      defaults=(0,))):
    """An interface as rtnetlink dumps it: `kind` "" for a device with no
    link kind (a NIC, lo); `lower` the ifindex of the device it is stacked
    on (0: none), in the netns whose id is `lower_netnsid` (None: its own);
    `mode` and `flag` an ipvlan (or ipvtap) link's (its port's: every link
    on a master reports the same), `vlan` a VLAN link's id (0 otherwise),
    `master` the ifindex of the bridge or bond it is a port of (0: none)."""
    __slots__ = ()


def _attributes(data: bytes, pos: int, end: int):
    while pos + 4 <= end:
        length, kind = struct.unpack_from("HH", data, pos)
        if length < 4:
            return
        yield kind & 0x3FFF, data[pos + 4:pos + length]     # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
        pos += (length + 3) & ~3


def _text(value: bytes) -> str:
    return value.split(b"\0")[0].decode(errors="replace")


def _link(data: bytes, pos: int, end: int) -> Link:
    index = struct.unpack_from("i", data, pos + 4)[0]      # struct ifinfomsg: family, pad, type, index, ...
    name = kind = mac = alias = ""
    lower, lower_netnsid, mode, flag, vlan, master = 0, None, "", "", 0, 0
    for attr, value in _attributes(data, pos + 16, end):
        if attr == IFLA_IFNAME:
            name = _text(value)
        elif attr == IFLA_ADDRESS:
            mac = value.hex(":")
        elif attr == IFLA_IFALIAS:
            alias = _text(value)
        elif attr == IFLA_LINK:
            lower = struct.unpack_from("i", value)[0]
        elif attr == IFLA_LINK_NETNSID:
            lower_netnsid = struct.unpack_from("i", value)[0]
        elif attr == IFLA_MASTER:
            master = struct.unpack_from("i", value)[0]
        elif attr == IFLA_LINKINFO:
            info = dict(_attributes(value, 0, len(value)))
            kind = _text(info.get(IFLA_INFO_KIND, b""))
            details = dict(_attributes(info.get(IFLA_INFO_DATA, b""), 0, len(info.get(IFLA_INFO_DATA, b""))))
            if kind in ("ipvlan", "ipvtap"):
                mode = MODES.get(struct.unpack_from("H", details.get(IFLA_IPVLAN_MODE, b"\0\0"))[0], "")
                flag = FLAGS.get(struct.unpack_from("H", details.get(IFLA_IPVLAN_FLAGS, b"\0\0"))[0] & 3, "")
            elif kind == "vlan":
                vlan = struct.unpack_from("H", details.get(IFLA_VLAN_ID, b"\0\0"))[0]
    # The kernel leaves IFLA_LINK out where a link's lower is itself; a lower of the same ifindex in
    # another netns (a pod's first link, ifindex 2, on the node's NIC, ifindex 2) is a real one.
    return Link(index, name, kind, mac, alias, lower, lower_netnsid, mode, flag, vlan, master)


def _dump(sock, request_type: int, body: bytes, answer_type: int, parse) -> list:
    """Every answer of a dump, parsed; asked again when the kernel says the
    dump was interrupted. DumpFailed rather than a shorter list."""
    for attempt in range(1, DUMP_TRIES + 1):
        found, interrupted = _dump_once(sock, request_type, body, answer_type, parse, attempt)
        if not interrupted:
            return found
    raise DumpFailed(f"rtnetlink dump interrupted by changes {DUMP_TRIES} times running")


def _dump_once(sock, request_type: int, body: bytes, answer_type: int, parse, seq: int) -> tuple[list, bool]:
    sock.send(struct.pack("IHHII", 16 + len(body), request_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
    found: list = []
    interrupted = False
    while True:
        data, _, flags, _ = sock.recvmsg(65536)
        if flags & MSG_TRUNC:
            raise DumpFailed("rtnetlink dump: an answer did not fit the buffer")
        pos = 0
        while pos + 16 <= len(data):
            length, kind, msg_flags = struct.unpack_from("IHH", data, pos)
            if length < 16:
                raise DumpFailed(f"rtnetlink dump: a message of {length} bytes")
            interrupted |= bool(msg_flags & NLM_F_DUMP_INTR)
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                # Both carry an error number (0: none); DONE's when the dump itself failed part way.
                error = -struct.unpack_from("i", data, pos + 16)[0] if length >= 20 else 0
                if error:
                    raise DumpFailed(f"rtnetlink dump: {os.strerror(error)}")
                return found, interrupted
            if kind == answer_type:
                found.append(parse(data, pos + 16, pos + length))
            pos += (length + 3) & ~3


def links(sock) -> list[Link]:
    """Every interface of the netns `sock` (a NETLINK_ROUTE socket) was made in."""
    return _dump(sock, RTM_GETLINK, struct.pack("BxHiII", AF_UNSPEC, 0, 0, 0, 0), RTM_NEWLINK, _link)


class Address(namedtuple("Address", "index address prefixlen scope")):
    """An address of an interface: `address` as text, `scope` the kernel's (RT_SCOPE_LINK: one it added)."""
    __slots__ = ()


def _address(data: bytes, pos: int, end: int) -> Address:
    import socket
    family, prefixlen, _, scope, index = struct.unpack_from("BBBBI", data, pos)     # struct ifaddrmsg
    found = dict(_attributes(data, pos + 8, end))
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS, b"")
    return Address(index, socket.inet_ntop(family, raw) if raw else "", prefixlen, scope)


def addresses(sock) -> list[Address]:
    """Every address of the netns `sock` was made in."""
    return _dump(sock, RTM_GETADDR, struct.pack("BBBBI", AF_UNSPEC, 0, 0, 0, 0), RTM_NEWADDR, _address)


def addressed(sock) -> set[int]:
    """The ifindex of each interface that holds an address of global (or
    site) scope: the node put it there. A link-local one the kernel adds by itself."""
    return {a.index for a in addresses(sock) if a.scope < RT_SCOPE_LINK}


def _on_link(data: bytes, pos: int, end: int) -> tuple[int, str] | None:
    """(ifindex, prefix) of a main-table unicast route with no gateway, else None."""
    import socket
    family, dst_len, _, _, table, _, _, kind = struct.unpack_from("BBBBBBBB", data, pos)     # struct rtmsg
    found = dict(_attributes(data, pos + 12, end))
    table = struct.unpack_from("I", found[RTA_TABLE])[0] if RTA_TABLE in found else table
    if table != RT_TABLE_MAIN or kind != RTN_UNICAST or RTA_GATEWAY in found or RTA_VIA in found \
            or RTA_OIF not in found or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    raw = found.get(RTA_DST, b"")
    dst = socket.inet_ntop(family, raw.ljust(4 if family == socket.AF_INET else 16, b"\0"))
    return struct.unpack_from("I", found[RTA_OIF])[0], f"{dst}/{dst_len}"


def on_link(sock) -> list[tuple[int, str]]:
    """(ifindex, prefix) of each route of the main table that reaches its
    destinations on the link itself, no gateway: what the node holds to be
    on each link's LAN."""
    body = struct.pack("BBBBBBBBI", AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
    return [r for r in _dump(sock, RTM_GETROUTE, body, RTM_NEWROUTE, _on_link) if r is not None]
