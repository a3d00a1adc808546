"""The command builder: from a config and an IPAM result to `ip` invocations.

Pure: data in, argument lists out, nothing executed or read. Every function
returns Commands that the runner executes and that `plan` prints, so what is
shown is what runs.

Three processes make an ADD:
  1. read the master:            ip -j -d link show dev MASTER
  2. create the link, already in the container's netns, under a temporary name
     (the host may have an interface called like CNI_IFNAME):
                                 ip link add link MASTER name TMP netns NS type ipvlan mode l2
  3. everything inside the netns, as one batch, ending with a JSON read-back:
                                 ip -n NS -j -force -batch -   (rename, addresses, up, routes, show)
"""

import os
import zlib
from dataclasses import dataclass

from .results import family

SYSCTL_ROOT = "/proc/sys"


@dataclass(frozen=True)
class Netns:
    """A network namespace as given in CNI_NETNS. `name` is set when the path
    is a named netns under /run/netns, which `ip -n` can enter itself; any
    other nsfs path (/proc/PID/ns/net) is entered with nsenter."""
    path: str
    name: str = ""


@dataclass(frozen=True)
class Command:
    why: str                      # one line for debug output and `plan`
    argv: tuple[str, ...]
    batch: tuple[str, ...] = ()   # lines fed to `ip -batch -` on stdin
    # stderr texts that mean "already in the wanted state" (DEL of a missing link)
    ok_if: tuple[str, ...] = ()


@dataclass(frozen=True)
class SysctlWrite:
    why: str
    netns: Netns
    # as sysctl(8) takes it, with slashes: an interface name may hold dots
    key: str
    value: str

    @property
    def path(self) -> str:
        return f"{SYSCTL_ROOT}/{self.key}"


@dataclass(frozen=True)
class LinkSpec:
    master: str
    tmp_name: str
    ifname: str
    mode: str = "l2"
    flag: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class Addressing:
    ips: tuple[dict, ...] = ()
    routes: tuple[dict, ...] = ()


NAMED_NETNS_DIRS = ("/run/netns", "/var/run/netns")


def netns_at(path: str) -> Netns:
    """CNI_NETNS as a Netns: named when it is a file under /run/netns."""
    parent, name = os.path.split(os.path.normpath(path))
    return Netns(path, name if parent in NAMED_NETNS_DIRS else "")


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


def _line(*words: str) -> str:
    return " ".join(batch_word(w) for w in words)


def show_link(netns: Netns | None, name: str, why: str = "") -> Command:
    return Command(why or f"read interface {name}", ip(netns, "-j", "-d", "link", "show", "dev", name))


def show_master(netns: Netns | None, name: str) -> Command:
    return show_link(netns, name, f"read master {name}: it must exist, be up and not be an ipvlan link")


def show_default_routes(netns: Netns | None, version: int) -> Command:
    return Command(f"find the IPv{version} default-route interface",
                   ip(netns, "-j", f"-{version}", "route", "show", "default"))


def create_link(spec: LinkSpec, target: Netns, in_container: bool) -> Command:
    """With linkInContainer the master lives in the container's netns, so the
    link is made there; otherwise it is made on the host and placed in the
    container's netns by the same call."""
    mtu = ("mtu", str(spec.mtu)) if spec.mtu else ()
    flag = (spec.flag,) if spec.flag else ()
    place = () if in_container else ("netns", target.path)
    return Command(
        f"create ipvlan {spec.tmp_name} on {spec.master} (mode {spec.mode}{' ' + spec.flag if spec.flag else ''})",
        ip(target if in_container else None, "link", "add", "link", spec.master, "name", spec.tmp_name,
           *place, *mtu, "type", "ipvlan", "mode", spec.mode, *flag))


def notify_sysctls(target: Netns, tmp_name: str, addressing: Addressing) -> list[SysctlWrite]:
    """As upstream: announce the addresses (gratuitous ARP, unsolicited NA)
    when the link comes up, so that neighbours learn them at once. Set on the
    temporary name, before the link is renamed and brought up."""
    writes = [SysctlWrite("send gratuitous ARP when the link comes up", target,
                          f"net/ipv4/conf/{tmp_name}/arp_notify", "1")]
    if any(family(i["address"]) == 6 for i in addressing.ips):
        writes += [
            # Some runtimes create netns with IPv6 off by default.
            SysctlWrite("make sure IPv6 is on for this link", target,
                        f"net/ipv6/conf/{tmp_name}/disable_ipv6", "0"),
            SysctlWrite("send unsolicited neighbour advertisements when the link comes up", target,
                        f"net/ipv6/conf/{tmp_name}/ndisc_notify", "1")]
    return writes


def configure_link(target: Netns, spec: LinkSpec, addressing: Addressing) -> Command:
    """Rename, address, bring up, route, read back: one `ip` process.

    -force keeps the batch going past a route that already exists (another
    network of the same container may have set the default route first: the
    first one wins, as upstream); the runner decides which failures matter."""
    lines = [_line("link", "set", "dev", spec.tmp_name, "name", spec.ifname)]
    for ipc in addressing.ips:
        # nodad: the IPAM plugin already made the address unique, and a
        # tentative address would not be usable when ADD returns.
        nodad = ("nodad",) if family(ipc["address"]) == 6 else ()
        lines.append(_line("address", "add", ipc["address"], "dev", spec.ifname, *nodad))
    lines.append(_line("link", "set", "dev", spec.ifname, "up"))
    for route in route_plan(addressing):
        lines.append(_line("route", "add", *route_words(route), "dev", spec.ifname))
    lines.append(_line("link", "show", "dev", spec.ifname))
    return Command(f"configure {spec.ifname} in {target.path}: name, addresses, up, routes, read back",
                   ip(target, "-j", "-force", "-batch", "-"), tuple(lines))


def link_steps(spec: LinkSpec, target: Netns, in_container: bool,
               addressing: Addressing) -> list[Command | SysctlWrite]:
    """What ADD does once the master is known and the addresses allocated."""
    return [create_link(spec, target, in_container), *notify_sysctls(target, spec.tmp_name, addressing),
            configure_link(target, spec, addressing)]


def route_plan(addressing: Addressing) -> list[dict]:
    """The routes to add, each with its gateway filled in: a route without
    `gw` goes through the gateway of the first IP of its family."""
    gateways = {}
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


def remove_attachment(netns: Netns, ifname: str, tmp_name: str) -> Command:
    """DEL's one command: the link, and its temporary name in case an ADD died
    before renaming it. A missing one is a failed line the caller forgives."""
    return Command(f"delete {ifname} (or a leftover {tmp_name}) in {netns.path}",
                   ip(netns, "-force", "-batch", "-"),
                   (_line("link", "del", "dev", ifname), _line("link", "del", "dev", tmp_name)))


def inspect_container(netns: Netns, ifname: str) -> Command:
    """One read of everything CHECK compares against prevResult. `address show -d`
    carries the link details too; a `link show` before it in the same batch
    would leave iproute2's filter state set so that no address is listed."""
    return Command(f"read {ifname}, its addresses and the routes in {netns.path}",
                   ip(netns, "-j", "-d", "-batch", "-"),
                   (_line("address", "show", "dev", ifname), _line("route", "show", "table", "all")))
