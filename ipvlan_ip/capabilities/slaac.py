"""`"ipv6": {"slaac": true}`: the container's link takes IPv6 addresses from
the LAN's router advertisements, as a macvlan container's does.

Off by default (commands.notify_sysctls sets accept_ra 0): in l2 every
router advertisement on the LAN reaches every ipvlan link, and each would
otherwise take an address nobody asked for, beside IPAM's, unknown to the
runtime and to CHECK. l3 and l3s are refused (config.py): no multicast
reaches their links, so no advertisement does.

The links of a master share its MAC, yet each computes an address of its
own: the kernel gives each ipvlan link a dev_id of its own, which the EUI-64
interface identifier carries (fd0a::cabc:8400:1ce:6a23 and
fd0a::cabc:8400:2ce:6a23 for two containers on one master). The addresses
come when a router answers the link's solicitation, after ADD returns; they
are the router's, not IPAM's, so the result does not list them, and CHECK
does not ask for them (without the key, it reports one as drift).

Nothing is added on the host, so nothing is recorded: ADD's sysctls on the
link are all, and the link takes them into the container.
"""
from __future__ import annotations

from ..commands import Netns, SysctlWrite
from .capability import Call, Capability


class Slaac(Capability):
    key = "ipv6.slaac"
    option = "slaac"

    def refusal(self, data: dict) -> str:
        mode = data.get("mode") or "l2"
        return "" if mode == "l2" else (f"ipv6.slaac needs mode l2: in {mode} no multicast reaches an ipvlan link, "
                                        "so no router advertisement does either")

    def wanted(self, conf) -> bool:
        return conf.slaac

    def link_sysctls(self, call: Call, target: Netns, tmp_name: str) -> list:
        conf = f"net/ipv6/conf/{tmp_name}"
        return [SysctlWrite("ipv6.slaac: IPv6 on for this link", target, f"{conf}/disable_ipv6", "0"),
                # 2: even where the container forwards (then 1 would ignore them)
                SysctlWrite("ipv6.slaac: accept router advertisements", target, f"{conf}/accept_ra", "2"),
                SysctlWrite("ipv6.slaac: make addresses from their prefixes", target, f"{conf}/autoconf", "1")]


CAPABILITY = Slaac()
