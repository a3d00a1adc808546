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

from ..commands import Netns, is_host_link
from ..errors import MASTER_FAILURE, CniError
from . import state
from .rtnetlink import Link

HOST = "/proc/self/ns/net"
# The links that share a master's ipvlan port, and so its mode and flag.
PORT_KINDS = ("ipvlan", "ipvtap")
HINTS = "/run/ipvlan-ip/ports"


def lock_path(device: str) -> str:
    return f"{state.LOCKS}/port-{device}.lock"


def hint_path(device: str) -> str:
    return f"{HINTS}/{device}"


def stacked(run, device: str, netns: Netns | None = None, first: str = ""):
    """(netns path, Link) for each link stacked on `device` (in `netns`, None:
    the host's) in every netns the node shows, those of the netns at `first`
    before any other. A veth's lower is its peer, not a device it stands on:
    left out."""
    home = HOST if netns is None else netns.path
    index = run.host_index(device) if netns is None else next(
        (link.index for link in run.links(home) if link.name == device), 0)
    if not index:
        return
    home_inode = os.stat(home).st_ino
    seen = set()
    if first:
        with contextlib.suppress(OSError):      # gone since
            seen.add(os.stat(first).st_ino)
            yield from _on(run, first, index, home, home_inode)
    for ns in run.namespaces(commands=False):
        if ns.inode not in seen:
            yield from _on(run, ns.path, index, home, home_inode)


def _on(run, path: str, index: int, home: str, home_inode: int):
    """The links of the netns at `path` stacked on the device `index` of the netns at `home`."""
    with contextlib.suppress(OSError):      # a netns that went away meanwhile
        inode = os.stat(path).st_ino
        nsid: list = []
        for link in run.links(path):
            if link.lower != index or link.kind in ("veth", ""):
                continue
            if link.lower_netnsid is None:
                if inode == home_inode:
                    yield path, link
                continue
            if not nsid:     # asked once a netns, and only of one that has such a link
                nsid.append(run.nsid(path, home) if inode != home_inode else None)
            if nsid[0] is not None and nsid[0] == link.lower_netnsid:
                yield path, link


def carried(run, device: str, netns: Netns | None) -> tuple[str, Link] | None:
    """An ipvlan link on `device` (every one reports the same mode and flag:
    the port's), and the netns it is in; None when there is none. Looked for
    where the hint says first."""
    try:
        hint = run.load_record(hint_path(device)) or {}
    except state.RecordUnreadable:      # only a hint: written anew below
        hint = {}
    for where, link in stacked(run, device, netns, first=hint.get("netns", "")):
        if link.kind in PORT_KINDS:
            if where != hint.get("netns"):
                run.save_record(hint_path(device), {"netns": where})
            return where, link
    return None


def settle(run, device: str, netns: Netns | None, mode: str, flag: str, exclusive: bool) -> bool:
    """Whether an ipvlan link of `mode` and `flag` may be made on `device`
    under the lock held now (as _shared in operations.py asks): under a
    shared one when the links already on it have the same settings, under
    the `exclusive` one only when it has none (the first link sets them).
    False when the other lock is the one to hold. Refused when the settings
    differ: the new link would change them for every other."""
    found = carried(run, device, netns)
    if found and (found[1].mode, found[1].flag) != (mode, flag or "bridge"):
        carrying = [(where, link) for where, link in stacked(run, device, netns) if link.kind in PORT_KINDS]
        raise CniError(MASTER_FAILURE, refusal(device, found[1], carrying, mode, flag or "bridge"))
    return (found is None) == exclusive


def remember(run, device: str, where: str) -> None:
    """The first link on `device` is in the netns at `where`: the next ADDs look there first."""
    run.save_record(hint_path(device), {"netns": where})


def refusal(device: str, link: Link, carrying: list[tuple[str, Link]], mode: str, flag: str) -> str:
    """Why a link in `mode` and `flag` may not go on `device`, naming every link that carries its settings."""
    keys = [f'"mode": "{link.mode}"'] if link.mode != mode else []
    keys += [f'"flag": "{link.flag}"'] if link.flag != flag else []
    named = ", ".join(f"{on.name} in {where}" + (" (hostAccess's host link: it goes with the last container of "
                                                 "its network)" if is_host_link(on.name) else "")
                      for where, on in carrying)
    return (f"master {device!r} carries ipvlan links in mode {link.mode}, flag {link.flag} ({named}); "
            f"the kernel keeps one mode and one flag per master, and a link in mode "
            f"{mode}, flag {flag} would switch every link on it, so nothing was made. Set {' and '.join(keys)} "
            "in this network's config, or give it a master of its own (another NIC, or a VLAN of this one: "
            "\"vlan\": N)")
