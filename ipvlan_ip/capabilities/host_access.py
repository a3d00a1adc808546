"""hostAccess: the host and its containers reach each other.

Why they cannot by default: ipvlan keeps the master's own stack out of its
links' traffic. The host sends to a container's address out of the master,
onto the wire, and nothing brings it back. A container's packet for the
host does arrive (ipvlan hands a packet for an address that no link holds to
the master), but the host's answer leaves the same wrong way.

What `"hostAccess": true` adds, opt-in:
  - the host gets one ipvlan link of its own on the master, `ipvh` and a hash
    of the master's name, in the master's mode, shared by every container on
    that master; made once, under an exclusive lock for the master, which
    the ADDs that find it made hold shared;
  - a route on the host to each of the container's addresses through that
    link, with the host's own address on the master as the source, added
    once the container holds the address (attach says why); in l2, a
    permanent neighbour entry too (the master's MAC, which every ipvlan link
    carries): the container's answer to the host link's ARP or neighbour
    solicitation asks for the host's address, which no ipvlan link holds, so
    ipvlan hands it to the master and the host link would never learn it;
  - in the container, an on-link route to each of the host's addresses on
    the master that its subnets do not cover; in l2, a permanent neighbour
    entry for each too (the master's MAC): Linux answers a neighbour
    solicitation only for an address of the interface it came in on, and an
    ARP request so only where arp_ignore allows, and the host's addresses are
    on the master, not on the host's link.
ADD then runs 3 `ip` (the host's routes are the third, after the container's
configuring batch), DEL 2.

What an attachment added on the host is recorded in
/run/ipvlan-ip/host-access/NETWORK/CONTAINERID:IFNAME: DEL removes it without
the container's netns, and GC finds what attachments that are gone left
behind. The shared link goes with the last record that names it, under the
master's lock held exclusively: an ADD records itself under the same lock
held shared before it routes through the link, so the DEL either sees that
record or comes first, and the ADD then makes the link anew. GC removes a
link that no record names (an ADD killed before it recorded itself).

The first part builds commands (pure, like commands.py); the second runs
them through the runner, for operations.py to compose.
"""

from __future__ import annotations

from ..commands import Command, LinkDelete, batch_line, is_host_link
from ..commands import host_link_name as link_name  # hostAccess's link: port.py names it too
from ..errors import LINK_FAILURE, MASTER_FAILURE, CniError
from ..node import state
from ..results import family
from .capability import Call, Capability, CreateLines, SharedLink, refuse_held

STATE = "/run/ipvlan-ip/host-access"
# A route, neighbour entry or link already removed.
GONE = ("No such process", "Cannot find device", "No such file or directory")


# ---------------------------------------------------------------- the commands


def lock_path(link: str) -> str:
    return f"{state.LOCKS}/{link}.lock"


# Each attachment's routes, under the lock of the host's link they go through.
LEDGER = state.Ledger(STATE, "hostAccess", lambda held: lock_path(held["link"]))
record_path = LEDGER.path


def network_dir(network: str) -> str:
    return state.network_dir(STATE, network)


def link_lines(master: str, mode: str, flag: str, exists: bool) -> tuple[str, ...]:
    """The create batch's lines for the host's link: made when missing (it
    comes up after the batch, commands.quiet_host_link), else brought up."""
    name = link_name(master)
    if exists:
        return (batch_line("link", "set", "dev", name, "up"),)
    return (batch_line("link", "add", "link", master, "name", name, "type", "ipvlan", "mode", mode,
                       *((flag,) if flag else ())),)


def host_addresses(master_read: dict) -> list[str]:
    """The host's own addresses on the master, from `ip -j address show`."""
    return [f"{a['local']}/{a['prefixlen']}" for a in master_read.get("addr_info", []) if a.get("scope") == "global"]


def single(address: str) -> str:
    """'10.1.2.3/24' as the route destination of that one address."""
    return address.split("/")[0] + ("/128" if family(address) == 6 else "/32")


def routes_on_host(link: str, container_ips: list[str], host_ips: list[str], mac: str = "",
                   stale: frozenset[str] = frozenset(), neighboured: list[str] | None = None) -> Command:
    """To each container address through the host's link, from the host's
    own address of that family on the master; with `mac` (l2), a neighbour
    entry for each of `neighboured` (by default the same addresses) after
    the routes. `route add`, never replace: a route to the address that is
    there already is another attachment's, and stays its own, except the
    `stale` ones (see attach). No -force: the batch stops at its first
    failure, so the lines before it are what this call made."""
    routes = []
    for address in container_ips:
        source = next((h.split("/")[0] for h in host_ips if family(h) == family(address)), None)
        dst = single(address)
        routes.append(batch_line("route", "replace" if dst in stale else "add", dst, "dev", link,
                                 *(("src", source) if source else ())))
    neighbours = [batch_line("neigh", "replace", address.split("/")[0], "lladdr", mac, "dev", link, "nud", "permanent")
                  for address in (container_ips if neighboured is None else neighboured)] if mac else []
    return Command(f"route the container's addresses through the host's link {link}", ("ip", "-batch", "-"),
                   (*routes, *neighbours))


def unroute(record: dict) -> Command:
    """Take back what routes_on_host made, as the record lists it. A
    neighbour entry goes by `neigh flush`: `neigh del` of an entry already
    gone makes iproute2 exit mid-batch, and the lines after it never run."""
    link = record["link"]
    lines = [batch_line("route", "del", dst, "dev", link) for dst in record["routes"]]
    lines += [batch_line("neigh", "flush", "to", address, "dev", link, "nud", "permanent")
              for address in record["neighbours"]]
    return Command(f"remove the routes through the host's link {link}", ("ip", "-force", "-batch", "-"),
                   tuple(lines), ok_if=GONE)


def routes_in_container(container_ips: list[str], host_ips: list[str]) -> tuple[str, ...]:
    """The host's addresses that no subnet of the container covers, of a
    family the container has: each gets an on-link route there."""
    import ipaddress
    networks = [ipaddress.ip_interface(a).network for a in container_ips]
    wanted = []
    for host in host_ips:
        address = ipaddress.ip_interface(host).ip
        same_family = [n for n in networks if n.version == address.version]
        if same_family and not any(address in n for n in same_family):
            wanted.append(single(host))
    return tuple(wanted)


def toward_host(ifname: str, container_ips: list[str], host_ips: list[str],
                mac: str = "") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The container's side, for ADD and `plan` alike: the on-link routes it
    needs (they go into the result), and the configure batch's lines."""
    on_link = routes_in_container(container_ips, host_ips)
    return on_link, container_lines(ifname, on_link, host_ips, container_ips, mac)


def container_lines(ifname: str, on_link: tuple[str, ...], host_ips: list[str], container_ips: list[str],
                    mac: str = "") -> tuple[str, ...]:
    """The configure batch's lines toward the host: the on-link routes, and
    with `mac` (l2) a neighbour entry for each host address of a family the
    container has."""
    lines = [batch_line("route", "add", dst, "dev", ifname) for dst in on_link]
    families = {family(a) for a in container_ips}
    if mac:
        lines += [batch_line("neigh", "replace", h.split("/")[0], "lladdr", mac, "dev", ifname, "nud", "permanent")
                  for h in host_ips if family(h) in families]
    return tuple(lines)


def inspect_host(link: str, master: str) -> Command:
    """CHECK's read of the host side: the master's addresses (the
    container's neighbour entries point at them), the link, and the routes
    and neighbour entries through it. `address show -d` for both: a
    `link show` in the batch would leave iproute2's filter set so that a
    later `address show` lists no address."""
    return Command(f"read {master}'s addresses, the host's link {link}, and the routes and neighbours through it",
                   ("ip", "-j", "-d", "-batch", "-"),
                   (batch_line("address", "show", "dev", master), batch_line("address", "show", "dev", link),
                    batch_line("route", "show", "table", "all", "dev", link), batch_line("neigh", "show", "dev", link)))


# ---------------------------------------------------------------- the steps

def claim(run, master: str, mode: str, flag: str, make: bool) -> tuple[str, ...] | None:
    """The lines that give the host its link on `master`, to run under the
    master's lock: shared to use the link that exists (ADDs then run
    together, and GC, which takes it exclusively, cannot remove it
    meanwhile), exclusive to `make` it. None when the lock held is the wrong
    one: the link is missing under a shared lock, or there under an
    exclusive one (made meanwhile). Refuses an interface of that name that
    is not ours."""
    name = link_name(master)
    present = run.interfaces(None).get(name)
    if present and present.kind != "ipvlan":
        raise CniError(MASTER_FAILURE, f"hostAccess: the host's interface {name} is a {present.kind or 'device'} "
                       "of another program, not ipvlan; it was left alone")
    if (present is None) != make:
        return None
    return link_lines(master, mode, flag, exists=not make)


def require_address(run, master_read: dict, made_link: bool) -> None:
    """Refuse a master without an address of the host's: it is the source of
    the host's routes and what the container answers. A host link this call
    `made_link` (under the master's lock held exclusively) is taken back."""
    if host_addresses(master_read):
        return
    master = master_read["ifname"]
    if made_link:
        remove_link(run, link_name(master))
    raise CniError(MASTER_FAILURE, f"hostAccess: the host has no address on {master!r}, so its containers could "
                   f"not answer it; give it one first (ip address add ADDRESS/PREFIX dev {master})")


def record(run, path: str, master: str, container_ips: list[str], neighbours: bool = False) -> None:
    """What the attachment whose record is at `path` has, or is about to have, on the host."""
    run.save_record(path, {"master": master, "link": link_name(master), "routes": [single(a) for a in container_ips],
                           "neighbours": [a.split("/")[0] for a in container_ips] if neighbours else []})


def attach(call: Call, master_read: dict, container_ips: list[str]) -> None:
    """Route the container's addresses through the host's link, once the
    container holds them. Recorded first, so that a crash halfway leaves
    nothing a DEL does not find; after a failure, the record keeps only
    what this call made, so that the rollback takes nothing of another's."""
    run, own = call.run, LEDGER.of(call)
    master, mac = master_read["ifname"], master_read["address"] if call.conf.mode == "l2" else ""
    link, host_ips = link_name(master), host_addresses(master_read)
    record(run, own, master, container_ips, neighbours=bool(mac))
    made: list[str] = []
    pending, stale = list(container_ips), frozenset[str]()
    failures: list = []
    while pending:
        cmd = routes_on_host(link, pending, host_ips, mac, stale, neighboured=[*made, *pending])
        _, failures = run.run_batch(cmd)
        if not failures:
            return
        failed = cmd.batch.index(failures[0].line)
        if failed >= len(pending):      # a neighbour entry: every route of this batch was made
            made += pending
            pending = []
            break
        made += pending[:failed]
        pending = pending[failed:]
        dst = single(pending[0])
        if "File exists" not in failures[0].message or dst in stale or not _forget_stale(run, link, dst, own):
            break
        stale |= {dst}
    record(run, own, master, made, neighbours=bool(mac))
    failure = failures[0]   # the loop ends early only on a failure
    if pending and "File exists" in failure.message:
        dst = single(pending[0])
        raise CniError(LINK_FAILURE, f"hostAccess: the host already has a route to {dst} that no attachment of "
                       "ours on this master made (a container of another master with the same address, or the "
                       f"node's own route); it was left alone. See it with: ip route show {dst}")
    raise CniError(LINK_FAILURE, f"hostAccess: failed to `{failure.line}`: {failure.message}")


def _forget_stale(run, link: str, dst: str, own: str) -> bool:
    """Whether a record of another attachment than `own` claims the route to `dst`
    through `link`; if so, it claims it no more. Such a route is stale: the
    container this call serves holds the address now, and the kernel lets
    one ipvlan link of a master hold an address, so that attachment's link
    lost it. Its DEL or GC would otherwise remove the route from under this
    one. Under the master's lock held exclusively, as detach reads and
    removes a record: that DEL then reads the record as it is after this."""
    address = dst.split("/")[0]
    with run.exclusive(lock_path(link), create=True):
        return bool(LEDGER.take_over(
            run, own, lambda held: [dst] if held.get("link") == link and dst in held.get("routes", []) else [],
            lambda held, _: {**held, "routes": [r for r in held["routes"] if r != dst],
                             "neighbours": [n for n in held["neighbours"] if n != address]}))


def detach(run, path: str) -> None:
    """Remove what attach added on the host (nothing, and no process, when
    nothing was recorded), under the master's lock held exclusively: the
    record is read again under it, since an ADD may have taken a route
    over from it meanwhile (_forget_stale). The host's link goes with the
    last record that names it: idle, it would still hold the master's
    ipvlan mode (port.py) against every other network, and runtimes rarely
    call GC."""
    def undo(held: dict) -> None:
        if held["routes"]:
            run.run_batch_ok(unroute(held))

    def then(held: dict) -> None:
        if held["link"] not in LEDGER.in_use(run, "link"):
            remove_link(run, held["link"])
    LEDGER.detach(run, path, undo, then)


def check(call: Call, container_ips: list[str], neighbours_in_container: list) -> list[str]:
    """Each way the host side differs from what ADD made: the host's link,
    its routes and (l2) neighbour entries to the container, and (l2) the
    container's neighbour entries for the host's addresses, as
    `ip -j neigh show dev IFNAME` in the container listed them."""
    run, conf, env = call
    recorded = run.load_record(LEDGER.of(call))
    if recorded is None:
        return [f"hostAccess: nothing is recorded for {env.container_id}:{env.ifname} in {network_dir(conf.name)}"]
    link = recorded["link"]
    try:
        (master,), (shown,), routes, neighbours = run.run_json(inspect_host(link, recorded["master"]))
    except CniError as e:
        return [f"hostAccess: the host's link {link} or its master {recorded['master']} is missing: {e.details}"]
    problems = []
    if shown.get("linkinfo", {}).get("info_kind") != "ipvlan" or "UP" not in shown.get("flags", []):
        problems.append(f"hostAccess: the host's link {link} is not an ipvlan link that is up")
    # `table main` would list IPv4 routes alone: every table, then main's.
    routed = {r.get("dst") for r in routes if r.get("table", "main") == "main"}
    for address in container_ips:
        dst = single(address)
        if dst not in routed and dst.split("/")[0] not in routed:
            problems.append(f"hostAccess: the host has no route to {dst} through {link}")
    if conf.mode != "l2":
        return problems
    mac = master.get("address", "")
    for address in container_ips:
        if not _permanent(neighbours, address.split("/")[0], mac):
            problems.append(f"hostAccess: the host has no permanent neighbour entry for {address.split('/')[0]} "
                            f"with {mac} on {link}")
    families = {family(a) for a in container_ips}
    for host in host_addresses(master):
        if family(host) in families and not _permanent(neighbours_in_container, host.split("/")[0], mac):
            problems.append(f"hostAccess: {env.ifname} has no permanent neighbour entry for the host's "
                            f"{host.split('/')[0]} with {mac}")
    return problems


def _permanent(neighbours: list, address: str, mac: str) -> bool:
    return any(n.get("dst") == address and n.get("lladdr", "").lower() == mac.lower()
               and "PERMANENT" in n.get("state", []) for n in neighbours)


def collect(run, network: str, valid: set[tuple[str, str]]) -> list[CniError]:
    """GC: the records of this network's attachments that are not valid any
    more, and their routes; then each host link that no record names. Goes
    on past a step that fails; what failed is returned."""
    failed = LEDGER.collect(run, network, valid,
                            lambda container_id, ifname: detach(run, record_path(network, container_id, ifname)))
    in_use = LEDGER.in_use(run, "link")
    for link, interface in run.interfaces(None).items():
        if is_host_link(link) and interface.kind == "ipvlan" and link not in in_use:
            try:
                with run.exclusive(lock_path(link), create=True):
                    if link not in LEDGER.in_use(run, "link"):     # an ADD may have claimed it meanwhile
                        remove_link(run, link)
            except CniError as e:
                failed.append(e.wrap(f"hostAccess: removing the host's link {link}"))
    return failed


def remove_link(run, link: str) -> None:
    """Remove the host's link, under the master's lock held exclusively, once no container uses it
    (in-process: the last DEL runs no more `ip` than the others)."""
    found = run.interfaces(None).get(link)
    if found is not None and found.kind == "ipvlan":
        run.delete_link(LinkDelete(f"remove the host's link {link}: no container uses it", link, found.index))


# ---------------------------------------------------------------- the capability

class HostAccess(Capability):
    """hostAccess as operations walks it (capability.py)."""

    key = "hostAccess"
    option = "host_access"

    def refusal(self, data: dict) -> str:
        flag = data.get("flag", "")
        if flag in ("private", "vepa"):
            return (f"hostAccess cannot work with flag {flag!r}: the host reaches its containers through an ipvlan "
                    f"link of its own, and with {flag} one ipvlan link may not talk to another")
        if data.get("linkInContainer"):
            return ("hostAccess cannot work with linkInContainer: the master is then in the container's netns, not "
                    "the host's")
        return ""

    def wanted(self, conf) -> bool:
        return conf.host_access

    def shared_link(self, call: Call, master: str) -> SharedLink:
        conf = call.conf

        def lines(make: bool) -> CreateLines:
            return CreateLines((batch_line("address", "show", "dev", master),),
                               link_lines(master, conf.mode, conf.flag, exists=not make),
                               f"read master {master} and its addresses, and make or bring up the host's "
                               f"own link {link_name(master)} on it", link_name(master) if make else "")

        def claimed(make: bool) -> CreateLines | None:
            return None if claim(call.run, master, conf.mode, conf.flag, make) is None else lines(make)

        def created(made_link: bool, master_read: dict) -> None:
            # Recorded before the lock goes, so that GC keeps the host's link.
            require_address(call.run, master_read, made_link)
            record(call.run, LEDGER.of(call), master, [])
        return SharedLink(lock_path(link_name(master)), f"hostAccess: the host's link on {master!r}", claimed, created)

    def admit(self, call: Call, ips: list[str], master_read: dict) -> None:
        refuse_held(call.run, self.key, ips)

    def container_lines(self, call: Call, ips: list[str], master_read: dict):
        mac = master_read["address"] if call.conf.mode == "l2" else ""
        on_link, lines = toward_host(call.env.ifname, ips, host_addresses(master_read), mac)
        return tuple({"dst": dst} for dst in on_link), lines

    def attach(self, call: Call, master_read: dict, ips: list[str]) -> None:
        # Only now: the kernel lets one ipvlan link of a master hold an address,
        # so once the container holds its own, no live container's host route is in the way.
        attach(call, master_read, ips)

    def detach(self, call: Call) -> None:
        detach(call.run, LEDGER.of(call))

    def check(self, call: Call, link: dict, ips: list[str], neighbours: list) -> list[str]:
        return check(call, ips, neighbours)

    def collect(self, run, network: str, valid: set[tuple[str, str]]) -> list[CniError]:
        return collect(run, network, valid)


CAPABILITY = HostAccess()
