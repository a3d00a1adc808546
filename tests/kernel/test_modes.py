"""What the pictures of docs/modes.md draw, held to the kernel. In each mode, without hostAccess: two
containers on one master, the LAN on the master's veth peer, and the host with its address on the
master. Which pings arrive, and which of the host's netfilter chains count them, is what each picture
shows: the containers reach each other and the LAN; the host and its containers do not reach each other
(in l2 a container's ARP for the host goes out on the wire, in l3 and l3s its packet arrives and the
answer is lost); in l3 and l3s a container's packets out pass the host's OUTPUT chain, and in l3s alone
the LAN's packets in pass its INPUT chain."""

import re
import subprocess

import pytest

from .conftest import call_plugin, ip, ipj
from .test_host_access import conf_for, pings
from .test_plugin import ok


class Counters:
    """Counting rules for pings (echo requests alone: each ping below sends one) in the host's filter
    table; they accept, so they change nothing, and each is named by a comment of this test's own, as the
    tests beside it may have rules of their own."""

    def __init__(self, tag: str):
        self.tag, self.rules = tag, []

    def add(self, name: str, chain: str, *match: str) -> None:
        rule = [chain, *match, "-p", "icmp", "--icmp-type", "echo-request",
                "-m", "comment", "--comment", f"{self.tag}-{name}", "-j", "ACCEPT"]
        subprocess.run(["iptables", "-w", "-I", *rule], check=True)
        self.rules.append(rule)

    def __getitem__(self, name: str) -> int:
        chain = next(r[0] for r in self.rules if f"{self.tag}-{name}" in r)
        listed = subprocess.run(["iptables", "-w", "-L", chain, "-v", "-x", "-n"], capture_output=True, text=True,
                                check=True).stdout
        [line] = [line for line in listed.splitlines() if re.search(rf"/\* {self.tag}-{name} \*/", line)]
        return int(line.split()[0])

    def remove(self) -> None:
        for rule in self.rules:
            subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True)


@pytest.mark.parametrize("mode, net", [("l2", "10.170"), ("l3", "10.172"), ("l3s", "10.174")])
def test_the_paths_each_mode_picture_draws(mode, net, make_lan, make_netns, ipam_dir):
    lan = make_lan(net)
    conf = {k: v for k, v in conf_for(lan, ipam_dir, mode).items() if k != "hostAccess"}
    if mode != "l2":
        # The LAN's router sends the containers' subnet to the node; the host's own route to it goes out
        # the master, so that what fails below is the path, not a missing route.
        ip("route", "add", f"{net}.1.0/24", "via", lan.host, ns=lan.ns)
        ip("route", "add", f"{net}.1.0/24", "dev", lan.master)
    a, b = make_netns(), make_netns()
    results = [ok(call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns)) for ns in (a, b)]
    address_a, address_b = (r["ips"][0]["address"].split("/")[0] for r in results)
    counters = Counters(f"modes-{net}")
    try:
        counters.add("a-in", "INPUT", "-s", address_a, "-d", lan.host)      # A's packet for the host, arriving
        counters.add("a-out", "OUTPUT", "-s", address_a, "-d", lan.lan)     # A's packet for the LAN, going out
        counters.add("lan-in", "INPUT", "-s", lan.lan, "-d", address_a)     # the LAN's packet for A, coming in

        assert pings(address_b, a), f"A -> B ({mode}): delivered inside the host"
        assert pings(lan.lan, a), f"A -> the LAN ({mode})"
        assert pings(address_a, lan.ns), f"the LAN -> A ({mode})"
        assert counters["a-out"] == (0 if mode == "l2" else 1), f"A's packet out, in the host's OUTPUT ({mode})"
        assert counters["lan-in"] == (1 if mode == "l3s" else 0), f"the LAN's packet in, in the host's INPUT ({mode})"

        assert not pings(address_a), f"the host -> A ({mode})"
        assert not pings(lan.host, a), f"A -> the host ({mode})"
        if mode == "l2":
            # A's ARP for the host went out on the wire, which the host does not hear, and no one answered.
            assert counters["a-in"] == 0
            [entry] = ipj("neigh", "show", lan.host, ns=a)
            assert set(entry["state"]) & {"FAILED", "INCOMPLETE"}, entry
            # Told the host's MAC (the master's own, which A shares), A's packet arrives; the answer is lost.
            mac = ipj("link", "show", "dev", lan.master)[0]["address"]
            ip("neigh", "replace", lan.host, "lladdr", mac, "dev", "eth0", "nud", "permanent", ns=a)
            assert not pings(lan.host, a)
        assert counters["a-in"] == 1, f"A's packet for the host arrives ({mode})"
    finally:
        counters.remove()
    for ns, result in zip((a, b), results):
        ok(call_plugin("DEL", {**conf, "prevResult": result}, f"/run/netns/{ns}", container_id=ns))
