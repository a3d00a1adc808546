"""The command builder: from a config and an IPAM result to `ip` invocations.

Pure: data in, argument lists out, nothing executed or read. Every function
returns Commands that the runner executes and that `plan` prints, so what is
shown is what runs.

Two `ip` processes make an ADD:
  1. on the host (the master's netns), read the master and create the link,
     already in the container's netns, under a temporary name (the host may
     have an interface called like CNI_IFNAME), as one batch:
                                 ip -j -d -batch -   (link show dev MASTER, link add link MASTER ...)
  2. everything inside the netns, as one batch, ending with a JSON read-back:
                                 ip -n NS -j -force -batch -   (addresses, up, routes, show)
A third reads the default route first when no master is named. Between the
two, the sysctls are written and the link renamed to CNI_IFNAME from a thread
inside the netns, with no process (SysctlWrite, Rename).
"""
from __future__ import annotations

import os
import zlib
from collections import namedtuple

from .results import family

SYSCTL_ROOT = "/proc/sys"

# The builder's types are namedtuples rather than dataclasses: importing
# dataclasses pulls in inspect, which cost each plugin call more start-up
# than this whole module.


class Netns(namedtuple("Netns", "path name", defaults=("",))):
    """A network namespace as given in CNI_NETNS. `name` is set when the path
    is a named netns under /run/netns, which `ip -n` can enter itself; any
    other nsfs path (/proc/PID/ns/net) is entered with nsenter."""
    __slots__ = ()


class Command(namedtuple("Command", "why argv batch ok_if", defaults=((), ()))):
    """One `ip` process: `why` is one line for the debug echo and `plan`,
    `batch` the lines fed to `ip -batch -` on stdin, `ok_if` the stderr texts
    that mean the wanted state is already there (DEL of a missing link)."""
    __slots__ = ()


class SysctlWrite(namedtuple("SysctlWrite", "why netns key value missing_ok", defaults=(False,))):
    """A sysctl set inside a netns (None: the host's); `key` as sysctl(8) takes it, with slashes,
    since an interface name may hold dots. `missing_ok`: a kernel without
    the key (IPv6 turned off at boot) has nothing to set."""
    __slots__ = ()

    @property
    def path(self) -> str:
        return f"{SYSCTL_ROOT}/{self.key}"


class Rename(namedtuple("Rename", "why netns old new")):
    """A link renamed inside a netns. Not a line of the configuring batch:
    `ip -force` would go on past a failed rename (another plugin's interface
    holding the name meanwhile) and configure that interface as ours."""
    __slots__ = ()


class LinkUp(namedtuple("LinkUp", "why netns name")):
    """A link brought up inside a netns (None: the host's), with no process (as Rename)."""
    __slots__ = ()


class LinkDelete(namedtuple("LinkDelete", "why name index", defaults=(0,))):
    """A link of the host's that the plugin made (a VLAN link, the host's
    link of hostAccess) removed, with no process, by its ifindex (`plan`
    shows it by name alone)."""
    __slots__ = ()


class LinkSpec(namedtuple("LinkSpec", "master tmp_name ifname mode flag mtu alias", defaults=("l2", "", 0, ""))):
    """The ipvlan link to make: `flag` "" is the kernel's default (bridge),
    `mtu` 0 the master's, `alias` the mark of the network that makes it."""
    __slots__ = ()


class Addressing(namedtuple("Addressing", "ips routes", defaults=((), ()))):
    """The IPs and routes to configure, as tuples of result-shaped dicts."""
    __slots__ = ()


NAMED_NETNS_DIRS = ("/run/netns", "/var/run/netns")


def netns_at(path: str) -> Netns:
    """CNI_NETNS as a Netns: named when it is a file under /run/netns."""
    parent, name = os.path.split(os.path.normpath(path))
    return Netns(path, name if parent in NAMED_NETNS_DIRS else "")


MARK = "ipvlan-ip:"
IFALIASZ = 255      # the kernel's limit on an alias, without the terminating NUL


def mark(network: str) -> str:
    """The alias ADD gives its link (and the kernel keeps with it), by which
    a DEL tells the link its own network made from another network's in the
    same container: both are ipvlan links of one master, with its MAC."""
    text = MARK + network
    return text if len(text) <= IFALIASZ else f"{MARK}crc32-{zlib.crc32(network.encode()):08x}"


def host_link_name(master: str) -> str:
    """hostAccess's link of the host on `master`: derived, so that every call finds the same one."""
    return f"ipvh{zlib.crc32(master.encode()):08x}"


def is_host_link(name: str) -> bool:
    """Whether `name` is the name host_link_name gives (port.py names such a link in its refusal)."""
    return len(name) == 12 and name.startswith("ipvh") and all(c in "0123456789abcdef" for c in name[4:])


def temporary_name(container_id: str, ifname: str) -> str:
    """The link's name until it is renamed to CNI_IFNAME inside the container.
    Derived from the attachment, not random, so that a DEL after a crash
    between create and rename knows what to remove; it only has to be unique
    in the container's netns, where the link is created."""
    # crc32 rather than hashlib: loading OpenSSL would cost every call start-up time.
    return f"ipvl{zlib.crc32(f'{container_id}/{ifname}'.encode()):08x}"


def ip(netns: Netns | None, *args: str) -> tuple[str, ...]:
    """`ip ARGS`, run inside `netns` when given."""
    if netns is None:
        return ("ip", *args)
    if netns.name:
        return ("ip", "-n", netns.name, *args)
    return ("nsenter", f"--net={netns.path}", "ip", *args)


def batch_word(word: str) -> str:
    """`word` as iproute2's batch parser reads it back: a word that starts
    with a quote, or holds whitespace, would otherwise be split or unquoted.
    ('#' cannot be carried at all: iproute2 cuts the line there, so names
    holding one are refused before they get here.)"""
    if word and not any(c in "\"'" or c.isspace() for c in word):
        return word
    quote = '"' if '"' not in word else "'"
    if quote in word:
        raise ValueError(f"{word!r} holds both kinds of quote; iproute2's batch mode cannot read it")
    return f"{quote}{word}{quote}"


def batch_line(*words: str) -> str:
    return " ".join(batch_word(w) for w in words)


def show_default_routes(netns: Netns | None, version: int) -> Command:
    return Command(f"find the IPv{version} default-route interface",
                   ip(netns, "-j", f"-{version}", "route", "show", "default"))


def create_on_master(spec: LinkSpec, target: Netns, in_container: bool, lines=None) -> Command:
    """Read the master and create the link on it, in one process. Without
    -force the batch stops at a master that does not exist; the caller checks
    what the read shows (up, not ipvlan, MTU) and removes the link when the
    master turns out to be unusable. With linkInContainer the master lives in
    the container's netns, so both run there; otherwise the link is made on
    the host and placed in the container's netns by the same call. `lines`
    (capability.CreateLines) are a shared link's: reads in place of the
    master's, and lines after them."""
    mtu = ("mtu", str(spec.mtu)) if spec.mtu else ()
    flag = (spec.flag,) if spec.flag else ()
    place = () if in_container else ("netns", target.path)
    reads = lines.reads if lines and lines.reads else (batch_line("link", "show", "dev", spec.master),)
    what = lines.says if lines and lines.says else \
        f"read master {spec.master} (it must exist, be up and not be an ipvlan link)"
    return Command(
        f"{what}, then create ipvlan {spec.tmp_name} on {spec.master} (mode {spec.mode}"
        f"{' ' + spec.flag if spec.flag else ''})",
        ip(target if in_container else None, "-j", "-d", "-batch", "-"),
        (*reads,
         *(lines.extra if lines else ()),
         batch_line("link", "add", "link", spec.master, "name", spec.tmp_name, *place, *mtu,
                    "type", "ipvlan", "mode", spec.mode, *flag)))


def show_master(netns: Netns | None, name: str) -> Command:
    """CHECK's and STATUS's read of the master."""
    return Command(f"read master {name}: it must exist, be up and not be an ipvlan link",
                   ip(netns, "-j", "-d", "link", "show", "dev", name))


def notify_sysctls(target: Netns, tmp_name: str, addressing: Addressing) -> list[SysctlWrite]:
    """As upstream: announce the addresses (gratuitous ARP, unsolicited NA)
    when the link comes up, so that neighbours learn them at once. Set on the
    temporary name, before the link is renamed and brought up."""
    writes = [SysctlWrite("send gratuitous ARP when the link comes up", target,
                          f"net/ipv4/conf/{tmp_name}/arp_notify", "1"),
              # In l2 every router advertisement on the LAN reaches the link; its addresses are IPAM's alone.
              SysctlWrite("take no address or route from router advertisements (SLAAC)", target,
                          f"net/ipv6/conf/{tmp_name}/accept_ra", "0", missing_ok=True)]
    if not any(family(i["address"]) == 6 for i in addressing.ips):
        # No link-local address, no multicast groups joined, no router advertisement heard: an IPv4 network
        # opens nothing of IPv6 on the LAN (as Docker's ipvlan does since CVE-2024-32473). ipv6.slaac turns it on.
        writes.append(SysctlWrite("IPv6 off for this link: IPAM gave it no IPv6 address", target,
                                  f"net/ipv6/conf/{tmp_name}/disable_ipv6", "1", missing_ok=True))
    else:
        writes += [
            # Some runtimes create netns with IPv6 off by default.
            SysctlWrite("make sure IPv6 is on for this link", target,
                        f"net/ipv6/conf/{tmp_name}/disable_ipv6", "0"),
            SysctlWrite("send unsolicited neighbour advertisements when the link comes up", target,
                        f"net/ipv6/conf/{tmp_name}/ndisc_notify", "1")]
    return writes


def quiet_host_link(name: str) -> list[SysctlWrite | LinkUp]:
    """A link the plugin makes on the host (a VLAN link, the host's link of
    hostAccess) is made down, and comes up only once it takes nothing from
    router advertisements: else, on a LAN with a router, the node would gain
    an address on every tenant VLAN, and the link would read as the node's."""
    return [SysctlWrite(f"{name} takes no router advertisement", None, f"net/ipv6/conf/{name}/accept_ra", "0",
                        missing_ok=True),
            SysctlWrite(f"{name} makes no address from one", None, f"net/ipv6/conf/{name}/autoconf", "0",
                        missing_ok=True),
            LinkUp(f"bring {name} up", None, name)]


def rename(target: Netns, spec: LinkSpec) -> Rename:
    return Rename(f"rename {spec.tmp_name} to {spec.ifname}; a name taken meanwhile stops ADD here", target,
                  spec.tmp_name, spec.ifname)


def name_link(spec: LinkSpec, target: Netns, addressing: Addressing,
              more: tuple[SysctlWrite, ...] = ()) -> list[SysctlWrite | Rename]:
    """Give the link CNI_IFNAME: the announcing sysctls and the
    capabilities' (`more`, which may change them), then the rename."""
    return [*notify_sysctls(target, spec.tmp_name, addressing), *more, rename(target, spec)]


def ready_for_dhcp(spec: LinkSpec, target: Netns,
                   more: tuple[SysctlWrite, ...] = ()) -> list[SysctlWrite | Rename | LinkUp]:
    """The dhcp daemon looks the link up by CNI_IFNAME in the netns and sends
    through it, so it is named and up before IPAM runs (dhcp.py), with no
    address yet: IPv4 only, as the daemon is."""
    return [*name_link(spec, target, Addressing(), more),
            LinkUp(f"bring {spec.ifname} up, for the dhcp daemon to send through it", target, spec.ifname)]


def configure_link(target: Netns, spec: LinkSpec, addressing: Addressing, extra: tuple[str, ...] = (),
                   is_up: bool = False) -> Command:
    """Address, bring up, route, read back the renamed link: one `ip` process.

    -force keeps the batch going past a route that already exists (another
    network of the same container may have set the default route first: the
    first one wins, as upstream); the runner decides which failures matter.
    A link that `is_up` already (dhcp's) is taken down first: arp_notify
    announces the addresses a link has when it comes up, and it had none."""
    lines = [batch_line("link", "set", "dev", spec.ifname, "down")] if is_up else []
    for ipc in addressing.ips:
        # nodad: the IPAM plugin already made the address unique, and a
        # tentative address would not be usable when ADD returns.
        nodad = ("nodad",) if family(ipc["address"]) == 6 else ()
        lines.append(batch_line("address", "add", ipc["address"], "dev", spec.ifname, *nodad))
    lines.append(batch_line("link", "set", "dev", spec.ifname, *(("alias", spec.alias) if spec.alias else ()), "up"))
    for route in route_plan(addressing):
        lines.append(batch_line("route", "add", *route_words(route), "dev", spec.ifname))
    lines += extra          # hostAccess's routes and neighbour entries toward the host
    lines.append(batch_line("link", "show", "dev", spec.ifname))
    return Command(f"configure {spec.ifname} in {target.path}: addresses, up, routes, read back",
                   ip(target, "-j", "-force", "-batch", "-"), tuple(lines))


def route_plan(addressing: Addressing) -> list[dict]:
    """The routes to add, each with its gateway filled in: a route without
    `gw` goes through the gateway of the first IP of its family."""
    gateways: dict[int, str] = {}
    for ipc in addressing.ips:
        if ipc.get("gateway"):
            gateways.setdefault(family(ipc["address"]), ipc["gateway"])
    planned, seen = [], set()
    for route in addressing.routes:
        route = dict(route)
        if not route.get("gw") and family(route["dst"]) in gateways:
            route["gw"] = gateways[family(route["dst"])]
        key = (route["dst"], route.get("table"), route.get("priority"))
        if key not in seen:          # a duplicate would only fail: first one wins
            seen.add(key)
            planned.append(route)
    return planned


def route_words(route: dict) -> list[str]:
    words = [route["dst"]]
    if route.get("gw"):
        words += ["via", route["gw"]]
    for key, word in (("table", "table"), ("priority", "metric"), ("mtu", "mtu"),
                      ("advmss", "advmss"), ("scope", "scope")):
        if route.get(key) is not None:
            words += [word, str(route[key])]
    return words


def delete_link(netns: Netns, name: str) -> Command:
    return Command(f"delete {name} in {netns.path}", ip(netns, "link", "del", "dev", name),
                   ok_if=("Cannot find device",))


def remove_attachment(netns: Netns, names: list[str]) -> Command:
    """DEL's one command: delete these links (CNI_IFNAME, or a temporary name
    left by an ADD that died before renaming it), all in one process."""
    return Command(f"delete {' and '.join(names)} in {netns.path}", ip(netns, "-force", "-batch", "-"),
                   tuple(batch_line("link", "del", "dev", name) for name in names))


def inspect_container(netns: Netns, ifname: str) -> Command:
    """One read of everything CHECK compares against prevResult: the link
    with its addresses, the IPv4 and the IPv6 routes of every table (apart,
    since `ip -j` does not say a route's family, and a default route without
    a gateway looks alike in both), and the link's neighbour entries.
    `address show -d` carries the link details too; a `link show` before it
    in the same batch would leave iproute2's filter state set so that no
    address is listed."""
    return Command(f"read {ifname}, its addresses, the routes and its neighbour entries in {netns.path}",
                   ip(netns, "-j", "-d", "-batch", "-"),
                   (batch_line("address", "show", "dev", ifname),
                    batch_line("route", "show", "table", "all", "root", "0.0.0.0/0"),
                    batch_line("route", "show", "table", "all", "root", "::/0"),
                    batch_line("neigh", "show", "dev", ifname)))


def list_addresses(netns: Netns | None) -> Command:
    """`ipvlan-ip show`'s one read of a netns: every link, with its details
    (kind, mode, master's index and netnsid) and addresses."""
    return Command(f"read every link and address in {netns.path if netns else 'the host netns'}",
                   ip(netns, "-j", "-d", "address", "show"))
