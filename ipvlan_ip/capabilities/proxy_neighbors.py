"""`"proxyNeighbors": true` (l3s): hosts on the master's LAN reach the
containers with no route added anywhere, the host answering the LAN's ARP
requests and neighbour solicitations for each container address on the
master, as Incus does for its ipvlan NICs.

Why the LAN cannot reach an l3 or l3s container otherwise: ipvlan links in
those modes answer no ARP or neighbour solicitation (the kernel sets NOARP
on them), so a LAN host never learns where a container's address is.

What it adds on the host, per attachment:
  - a proxy neighbour entry for each of the container's addresses on the
    master (the link's master: the VLAN link with `vlan`). The kernel answers
    for such an entry with the master's MAC, which is the container's too,
    when the master forwards (net.ipv4.conf.MASTER.forwarding;
    net.ipv6.conf.MASTER.forwarding and proxy_ndp for IPv6);
  - for IPv4, a route to the address through `lo`: the kernel answers an
    ARP request for a proxied address only where its route leads out of
    another device than the one the request came in on. With hostAccess,
    the route through the host's link does that, and none is added.
l3 is refused (config.py): in l3 ipvlan hands an ARP request for a
container's address to the container's link, which drops it, so the host
never sees it (IPv6's solicitations go to a multicast address, and would
reach it). The plugin sets none of the sysctls: forwarding makes the host a
router between all its interfaces, and IPv6 forwarding stops it taking
router advertisements on them; ADD refuses a master without them, and
`ipvlan-ip doctor` says how to set them (docs/modes.md).

Recorded, before anything is added, in
/run/ipvlan-ip/proxy-neighbors/NETWORK/CONTAINERID:IFNAME; DEL and GC take
back what the record lists. An address belongs to one container at a time
(the kernel lets one ipvlan link of a master hold it), so an ADD whose
address another attachment's record still lists (one killed before its
DEL) takes it over: under the master's lock, that record forgets it, so
that its DEL leaves the new container's entry alone.
"""
from __future__ import annotations

from ..commands import Command, batch_line
from ..errors import INVALID_CONFIG, LINK_FAILURE, MASTER_FAILURE, CniError
from ..node import state
from ..results import family
from .capability import Call, Capability, refuse_held

STATE = "/run/ipvlan-ip/proxy-neighbors"
# A route or entry already gone, or the master with it.
GONE = ("No such process", "Cannot find device", "No such file or directory")


def lock_path(master: str) -> str:
    return f"{state.LOCKS}/proxy-{master}.lock"


# Each attachment's proxy entries and routes through lo, under the lock of the master they answer on.
LEDGER = state.Ledger(STATE, "proxyNeighbors", lambda held: lock_path(held["master"]))
record_path = LEDGER.path


def bare(address: str) -> str:
    return address.split("/")[0]


def routed(address: str) -> str:
    return f"{bare(address)}/32"


def add_lines(master: str, addresses: list[str], routes: list[str], replace: frozenset[str]) -> tuple[str, ...]:
    """The routes through lo first (`add`: a route there already is the
    node's, unless `replace` lists it as a stale one of ours), then the
    proxy entries."""
    return (*(batch_line("route", "replace" if dst in replace else "add", dst, "dev", "lo") for dst in routes),
            *(batch_line("neigh", "replace", "proxy", bare(a), "dev", master) for a in addresses))


def remove(record: dict) -> Command:
    """Take back what a record lists. `neigh del` of an entry already gone
    makes iproute2 exit mid-batch, so each entry is made sure of first."""
    master = record["master"]
    lines = [batch_line("route", "del", dst, "dev", "lo") for dst in record["routes"]]
    for address in record["addresses"]:
        lines += [batch_line("neigh", "replace", "proxy", address, "dev", master),
                  batch_line("neigh", "del", "proxy", address, "dev", master)]
    return Command(f"remove the proxy neighbour entries on {master} and the routes through lo",
                   ("ip", "-force", "-batch", "-"), tuple(lines), ok_if=GONE)


def inspect(master: str) -> Command:
    return Command(f"read the proxy neighbour entries on {master} and the routes through lo",
                   ("ip", "-j", "-batch", "-"),
                   (batch_line("neigh", "show", "proxy", "dev", master), batch_line("route", "show", "dev", "lo")))


def missing_sysctls(run, master: str, families: set[int]) -> list[str]:
    """The sysctls the kernel needs to answer for the master's proxy entries, as `sysctl -w` takes
    them (with slashes where the master's name has a dot, eth0.20's)."""
    wanted = []
    if 4 in families:
        wanted.append((f"net/ipv4/conf/{master}/forwarding", "1"))
    if 6 in families:
        wanted += [(f"net/ipv6/conf/{master}/forwarding", "1"), (f"net/ipv6/conf/{master}/proxy_ndp", "1")]
    return [f"{key if '.' in master else key.replace('/', '.')}=1" for key, value in wanted
            if run.host_sysctl(key) != value and not (key.endswith("proxy_ndp")
                                                      and run.host_sysctl("net/ipv6/conf/all/proxy_ndp") == "1")]


class ProxyNeighbors(Capability):
    key = "proxyNeighbors"
    option = "proxy_neighbors"

    def refusal(self, data: dict) -> str:
        mode = data.get("mode") or "l2"
        if data.get("linkInContainer"):
            return ("proxyNeighbors cannot work with linkInContainer: the host answers on the master, which is "
                    "then in the container's netns")
        if mode == "l2":
            return ("proxyNeighbors is for mode l3s: in l2 each container answers the LAN's ARP and neighbour "
                    "solicitations itself, so the LAN reaches it already")
        if mode == "l3":
            return ("proxyNeighbors needs mode l3s: in l3, ipvlan hands the LAN's ARP requests for a container's "
                    "address to the container's link, which answers no ARP in l3, so the host never sees them "
                    "(docs/modes.md); l3s passes them to the host, which answers for the container")
        return ""

    def wanted(self, conf) -> bool:
        return conf.proxy_neighbors

    def admit(self, call: Call, ips: list[str], master_read: dict) -> None:
        """Only addresses of the master's LAN: the host answers for them there,
        and routes them through lo, which for any other address would take the
        node's own traffic to it (the API server's, another node's)."""
        import ipaddress
        refuse_held(call.run, self.key, ips)
        master, index = master_read["ifname"], master_read.get("ifindex", 0)
        lans = [ipaddress.ip_network(prefix) for on, prefix in call.run.on_link() if on == index]
        lans = [lan for lan in lans if lan.prefixlen and not lan.is_link_local]
        outside = [a for a in ips if not any(ipaddress.ip_interface(a).ip in lan for lan in lans)]
        if outside:
            raise CniError(INVALID_CONFIG, f"proxyNeighbors: {', '.join(outside)} is not on the LAN of {master!r} "
                           f"(the prefixes the host reaches on it directly: {', '.join(map(str, lans)) or 'none'}), "
                           "so the host will not answer for it there, nor route it through lo; nothing was added. "
                           "Give the network an IPAM range of that LAN, or tell the host the LAN's prefix (an "
                           f"address on {master}, or ip route add PREFIX dev {master})")

    def attach(self, call: Call, master_read: dict, ips: list[str]) -> None:
        run, conf, env = call
        master = master_read["ifname"]
        missing = missing_sysctls(run, master, {family(a) for a in ips})
        if missing:
            raise CniError(MASTER_FAILURE, f"proxyNeighbors: the host answers for its containers on {master!r} only "
                           f"where it forwards: set {' '.join(missing)} (sysctl -w, and in /etc/sysctl.d to keep it; "
                           "for a link the plugin makes, such as a vlan's, set net.ipv4.conf.default.forwarding, "
                           "net.ipv6.conf.default.forwarding and net.ipv6.conf.all.proxy_ndp; docs/modes.md says what "
                           "forwarding changes)")
        # With hostAccess, its route through the host's link is the one that lets the kernel answer.
        routes = [] if conf.host_access else [routed(a) for a in ips if family(a) == 4]
        own, addresses = LEDGER.of(call), [bare(a) for a in ips]
        with run.exclusive(lock_path(master), create=True):
            # Entries another attachment's record still lists are stale: this container holds the addresses now.
            stale = LEDGER.take_over(
                run, own, lambda held: [a for a in held["addresses"] if a in addresses] if held.get("master") == master
                else [], lambda held, taken: {**held, "addresses": [a for a in held["addresses"] if a not in taken],
                                              "routes": [r for r in held["routes"] if bare(r) not in taken]})
            held = {"master": master, "addresses": [bare(a) for a in ips], "routes": routes}
            run.save_record(own, held)
            lines = add_lines(master, ips, routes, frozenset(routed(a) for a in stale))
            _, failures = run.run_batch(Command(f"answer for the container's addresses on {master}",
                                                ("ip", "-batch", "-"), lines))
            if not failures:
                return
            failed = lines.index(failures[0].line)      # without -force, the lines before it are made
            run.save_record(own, {**held, "routes": routes[:failed], "addresses": held["addresses"][:max(
                0, failed - len(routes))]})
        failure = failures[0]
        if "File exists" in failure.message:
            raise CniError(LINK_FAILURE, f"proxyNeighbors: the host already has a route `{failure.line}` names, "
                           "which no attachment of ours made; it was left alone")
        raise CniError(LINK_FAILURE, f"proxyNeighbors: failed to `{failure.line}`: {failure.message}")

    def detach(self, call: Call) -> None:
        detach(call.run, LEDGER.of(call))

    def check(self, call: Call, link: dict, ips: list[str], neighbours: list) -> list[str]:
        run, conf, env = call
        held = run.load_record(LEDGER.of(call))
        if held is None:
            return [f"proxyNeighbors: nothing is recorded for {env.container_id}:{env.ifname}"]
        master = held["master"]
        try:
            entries, routes = run.run_json(inspect(master))
        except CniError as e:
            return [f"proxyNeighbors: the master {master} is missing: {e.details}"]
        problems = [f"proxyNeighbors: no proxy neighbour entry for {bare(a)} on {master}" for a in ips
                    if bare(a) not in {e.get("dst") for e in entries}]
        problems += [f"proxyNeighbors: no route to {dst} through lo" for dst in held["routes"]
                     if bare(dst) not in {r.get("dst") for r in routes} and dst not in {r.get("dst") for r in routes}]
        missing = missing_sysctls(run, master, {family(a) for a in ips})
        problems += [f"proxyNeighbors: {master} does not forward: {' '.join(missing)} is needed"] if missing else []
        return problems

    def collect(self, run, network: str, valid: set[tuple[str, str]]) -> list[CniError]:
        return LEDGER.collect(run, network, valid,
                              lambda container_id, ifname: detach(run, record_path(network, container_id, ifname)))


def detach(run, path: str) -> None:
    """Take back what the record at `path` lists (no process when there is none), under the master's lock."""
    LEDGER.detach(run, path, lambda held: (held["addresses"] or held["routes"]) and run.run_batch_ok(remove(held)))


CAPABILITY = ProxyNeighbors()
