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

import struct
from collections import namedtuple

NETLINK_ROUTE, AF_UNSPEC = 0, 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_LINK_NETNSID = 1, 3, 5, 18, 20, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_IPVLAN_MODE, IFLA_IPVLAN_FLAGS = 1, 2     # in an ipvlan link's IFLA_INFO_DATA
IFLA_VLAN_ID = 1                               # in a VLAN link's
RT_SCOPE_LINK = 253

MODES = {0: "l2", 1: "l3", 2: "l3s"}
# The port's flag as the config names it; bridge is the kernel's 0.
FLAGS = {0: "bridge", 1: "private", 2: "vepa"}


class Link(namedtuple("Link", "index name kind mac alias lower lower_netnsid mode flag vlan")):
    """An interface as rtnetlink dumps it: `kind` "" for a device with no
    link kind (a NIC, lo); `lower` the ifindex of the device it is stacked
    on (0: none), in the netns whose id is `lower_netnsid` (None: its own);
    `mode` and `flag` an ipvlan link's (its port's: every link on a master
    reports the same), `vlan` a VLAN link's id (0 otherwise)."""
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
    lower, lower_netnsid, mode, flag, vlan = 0, None, "", "", 0
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
        elif attr == IFLA_LINKINFO:
            info = dict(_attributes(value, 0, len(value)))
            kind = _text(info.get(IFLA_INFO_KIND, b""))
            details = dict(_attributes(info.get(IFLA_INFO_DATA, b""), 0, len(info.get(IFLA_INFO_DATA, b""))))
            if kind == "ipvlan":
                mode = MODES.get(struct.unpack_from("H", details.get(IFLA_IPVLAN_MODE, b"\0\0"))[0], "")
                flag = FLAGS.get(struct.unpack_from("H", details.get(IFLA_IPVLAN_FLAGS, b"\0\0"))[0] & 3, "")
            elif kind == "vlan":
                vlan = struct.unpack_from("H", details.get(IFLA_VLAN_ID, b"\0\0"))[0]
    return Link(index, name, kind, mac, alias, lower if lower != index else 0, lower_netnsid, mode, flag, vlan)


def _dump(sock, request_type: int, body: bytes, answer_type: int, parse) -> list:
    sock.send(struct.pack("IHHII", 16 + len(body), request_type, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
    found: list = []
    while True:
        data = sock.recv(65536)
        pos = 0
        while pos + 16 <= len(data):
            length, kind = struct.unpack_from("IH", data, pos)
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                error = -struct.unpack_from("i", data, pos + 16)[0]
                raise OSError(error, f"rtnetlink dump: error {error}")
            if kind == answer_type:
                found.append(parse(data, pos + 16, pos + length))
            pos += (length + 3) & ~3


def links(sock) -> list[Link]:
    """Every interface of the netns `sock` (a NETLINK_ROUTE socket) was made in."""
    return _dump(sock, RTM_GETLINK, struct.pack("BxHiII", AF_UNSPEC, 0, 0, 0, 0), RTM_NEWLINK, _link)


def addressed(sock) -> set[int]:
    """The ifindex of each interface that holds an address of global (or
    site) scope: the node put it there. A link-local one the kernel adds by itself."""
    def index(data: bytes, pos: int, end: int):
        # struct ifaddrmsg: family, prefixlen, flags, scope, then the ifindex
        return struct.unpack_from("I", data, pos + 4)[0] if data[pos + 3] < RT_SCOPE_LINK else 0
    return set(_dump(sock, RTM_GETADDR, struct.pack("BBBBI", AF_UNSPEC, 0, 0, 0, 0), RTM_NEWADDR, index)) - {0}
