"""What stands on a device, across every network namespace of the node:
the kernel's view, which knows every network and every plugin, where the
plugin's own records know only its own attachments.

Two decisions rest on it:
  - the ipvlan port. The kernel keeps one mode and one flag per master
    (drivers/net/ipvlan: `port->mode`, `port->flags`), and each new link
    sets them for every link already on it (iproute2 always sends the
    flag, bridge when none is named). So an ADD whose mode or flag differs
    from what the master carries, made by any network or any plugin, is
    refused before its link is made (`settle`), under a lock for the master
    (/run/ipvlan-ip/locks/port-MASTER.lock): shared while the master
    carries links of the same settings, since another one changes nothing;
    exclusive when it carries none, so that two first ADDs of different
    settings cannot both go ahead.
  - whether a VLAN link the plugin made is still used by anything at all
    (vlan.py): a link stacked on it in any netns, or an address on it.

A link stacked on a device of another netns names it by ifindex and by the
id its own netns gives that netns (link-netnsid): both are compared.
"""
from __future__ import annotations

import contextlib
import os

from . import state
from .commands import Netns
from .errors import MASTER_FAILURE, CniError
from .rtnetlink import Link

HOST = "/proc/self/ns/net"


def lock_path(device: str) -> str:
    return f"{state.LOCKS}/port-{device}.lock"


def stacked(run, device: str, netns: Netns | None = None):
    """(netns path, Link) for each link stacked on `device` (in `netns`, None:
    the host's) in every netns the node shows, the host's first. A veth's
    lower is its peer, not a device it stands on: left out."""
    home = HOST if netns is None else netns.path
    index = run.host_index(device) if netns is None else next(
        (link.index for link in run.links(home) if link.name == device), 0)
    if not index:
        return
    home_inode = os.stat(home).st_ino
    for ns in run.namespaces(commands=False):
        with contextlib.suppress(OSError):      # a netns that went away meanwhile
            inode = os.stat(ns.path).st_ino
            nsid: list = []
            for link in run.links(ns.path):
                if link.lower != index or link.kind in ("veth", ""):
                    continue
                if link.lower_netnsid is None:
                    if inode == home_inode:
                        yield ns.path, link
                    continue
                if not nsid:     # asked once a netns, and only of one that has such a link
                    nsid.append(run.nsid(ns.path, home) if inode != home_inode else None)
                if nsid[0] is not None and nsid[0] == link.lower_netnsid:
                    yield ns.path, link


def settle(run, device: str, netns: Netns | None, mode: str, flag: str, exclusive: bool) -> bool:
    """Whether an ipvlan link of `mode` and `flag` may be made on `device`
    now: True when the ipvlan links already on it have the same settings,
    or when it has none and the lock held is `exclusive`; False when it has
    none under a shared lock (take it exclusively and ask again). Refused
    when they differ: the new link would change them for every other."""
    for where, link in stacked(run, device, netns):
        if link.kind != "ipvlan":
            continue
        if (link.mode, link.flag) != (mode, flag or "bridge"):
            raise CniError(MASTER_FAILURE, refusal(device, link, where, mode, flag or "bridge"))
        return True
    return exclusive


def refusal(device: str, link: Link, where: str, mode: str, flag: str) -> str:
    keys = [f'"mode": "{link.mode}"'] if link.mode != mode else []
    keys += [f'"flag": "{link.flag}"'] if link.flag != flag else []
    return (f"master {device!r} carries ipvlan links in mode {link.mode}, flag {link.flag} ({link.name} in "
            f"{where}, and maybe more); the kernel keeps one mode and one flag per master, and a link in mode "
            f"{mode}, flag {flag} would switch every link on it, so nothing was made. Set {' and '.join(keys)} "
            "in this network's config, or give it a master of its own (another NIC, or a VLAN of this one: "
            "\"vlan\": N)")
