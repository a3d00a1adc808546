"""`"serviceCIDRs": [...]`, with hostAccess: the container reaches these
prefixes through the node's own stack, where the node's netfilter rules
apply both ways: Kubernetes' ClusterIPs (kube-proxy's DNAT on the way in,
the reply un-NATed by the node's conntrack before it reaches the pod),
node-local DNS, anything else the node must carry.

Why they do not by default: an ipvlan link's packets leave through the
master without touching the node's stack, so a ClusterIP goes to the LAN's
gateway, which has never heard of it (kubernetes#53089).

The way in is hostAccess's: the container gets, in the configure batch, a
route to each prefix of a family it has, through the host's own address on
the master (`route add CIDR via HOST dev IFNAME`). In l2 that address has a
permanent neighbour entry with the master's MAC (hostAccess's), and ipvlan
hands a frame for its own MAC that no link's address takes to the master's
stack (drivers/net/ipvlan, ipvlan_xmit_mode_l2: dev_forward_skb); in l3 and
l3s ipvlan routes every packet it sends in the node's namespace
(ipvlan_process_outbound), through its OUTPUT hooks. The reply reaches the
container through hostAccess's route to it on the host's link. So the key
needs hostAccess, and adds nothing of its own on the host: the routes live
in the container's netns, go with its link, and are in the result, which
CHECK compares.
"""
from __future__ import annotations

from ..commands import batch_line
from ..errors import INVALID_CONFIG, CniError
from ..results import family
from .capability import Call, Capability
from .host_access import host_addresses


class ServiceCidrs(Capability):
    key = "serviceCIDRs"
    # No podman option: kube-proxy's rules are a Kubernetes node's, and podman runs none.
    option = ""

    def refusal(self, data: dict) -> str:
        import ipaddress
        if not data.get("hostAccess"):
            return ("serviceCIDRs needs \"hostAccess\": true: the replies reach the container through the host's "
                    "link that hostAccess makes, and the requests go to the host's address it routes")
        for cidr in data["serviceCIDRs"]:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as e:
                return f"serviceCIDRs: {cidr!r} is not a prefix ({e}); give it as NETWORK/LENGTH, 10.96.0.0/12"
        return ""

    def wanted(self, conf) -> bool:
        return bool(conf.service_cidrs)

    def admit(self, call: Call, ips: list[str], master_read: dict) -> None:
        """A prefix of a family the container has needs the host's address of that family on the master."""
        held = {family(h) for h in host_addresses(master_read)}
        missing = [c for c in call.conf.service_cidrs if family(c) in {family(a) for a in ips} - held]
        if missing:
            raise CniError(INVALID_CONFIG, f"serviceCIDRs: the host has no IPv{family(missing[0])} address on "
                           f"{master_read['ifname']!r} to route {', '.join(missing)} through; give it one, or leave "
                           "those prefixes out")

    def container_lines(self, call: Call, ips: list[str], master_read: dict):
        """Through the host's address of the prefix's family, for each
        family the container has (a family it lacks has no route to go by:
        an IPv4-only link has IPv6 off)."""
        hosts = {family(h): h.split("/")[0] for h in reversed(host_addresses(master_read))}
        families = {family(a) for a in ips}
        routes = tuple({"dst": cidr, "gw": hosts[family(cidr)]} for cidr in call.conf.service_cidrs
                       if family(cidr) in families)
        return routes, tuple(batch_line("route", "add", r["dst"], "via", r["gw"], "dev", call.env.ifname)
                             for r in routes)


CAPABILITY = ServiceCidrs()
