"""serviceCIDRs (issue 49): a pod whose only network is ipvlan-ip reaches a
ClusterIP through the node's own stack, where the rules kube-proxy writes
apply both ways. kube-proxy is not packaged here, so its NAT rules
(KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* DNAT) are written with the node's
iptables into a node netns: the kernel's netfilter is the real part. The
plugin runs in that netns, as on a node whose NIC is the master; the
LAN's gateway is in a netns of its own, and the Service's backend is a pod of
the node's primary network (a veth), serving a page."""

import subprocess

import pytest

from .conftest import PLUGIN, call_plugin, ip, ipj, reservations, unique
from .test_plugin import ok

CLUSTER_IP, BACKEND = "10.96.0.10", "10.75.0.2"
PAGE = "served by the Service's backend"


def iptables(ns: str, *rule: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat", *rule], check=True)


@pytest.fixture
def node(make_netns, tmp_path):
    """The node netns (its NIC at 10.74.0.2 on a LAN whose gateway is 10.74.0.1, its default route),
    with kube-proxy's rules for CLUSTER_IP:80 and the backend at BACKEND:8080; and the plugin run in it."""
    n, lan, backend = make_netns(), make_netns(), make_netns()
    # A NIC's name of its own: the plugin's records and locks under /run/ipvlan-ip are the VM's, shared by
    # every test's node netns, and the host's link is named after its master.
    nic = unique("nic")
    ip("link", "add", nic, "type", "veth", "peer", "name", "lan0", ns=n)
    ip("link", "set", "lan0", "netns", lan, ns=n)
    ip("address", "add", "10.74.0.1/24", "dev", "lan0", ns=lan)
    ip("link", "set", "lan0", "up", ns=lan)
    ip("address", "add", "10.74.0.2/24", "dev", nic, ns=n)
    ip("link", "set", nic, "up", ns=n)
    ip("route", "add", "default", "via", "10.74.0.1", ns=n)
    ip("link", "add", "vb0", "type", "veth", "peer", "name", "vb1", ns=n)
    ip("link", "set", "vb1", "netns", backend, ns=n)
    ip("address", "add", "10.75.0.1/24", "dev", "vb0", ns=n)
    ip("link", "set", "vb0", "up", ns=n)
    ip("address", "add", f"{BACKEND}/24", "dev", "vb1", ns=backend)
    ip("link", "set", "vb1", "up", ns=backend)
    ip("route", "add", "default", "via", "10.75.0.1", ns=backend)
    subprocess.run(["ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
    # kube-proxy's iptables mode, for one Service with one endpoint.
    for chain in ("KUBE-SERVICES", "KUBE-SVC-TEST", "KUBE-SEP-TEST"):
        iptables(n, "-N", chain)
    for hook in ("PREROUTING", "OUTPUT"):
        iptables(n, "-A", hook, "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
    iptables(n, "-A", "KUBE-SERVICES", "-d", f"{CLUSTER_IP}/32", "-p", "tcp", "--dport", "80", "-j", "KUBE-SVC-TEST")
    iptables(n, "-A", "KUBE-SVC-TEST", "-j", "KUBE-SEP-TEST")
    iptables(n, "-A", "KUBE-SEP-TEST", "-p", "tcp", "-j", "DNAT", "--to-destination", f"{BACKEND}:8080")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE)
    server = subprocess.Popen(["ip", "netns", "exec", backend, "python3", "-m", "http.server", "8080", "--bind",
                               BACKEND, "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sh", "-c", f"until ip netns exec {backend} ss -ltnH | grep -q ':8080'; do sleep 0.1; done"],
                   check=True, timeout=30)
    launcher = tmp_path / "on-the-node"
    launcher.write_text(f'#!/bin/sh\nexec ip netns exec {n} {PLUGIN} "$@"\n')
    launcher.chmod(0o755)
    try:
        yield n, nic, str(launcher)
    finally:
        server.terminate()
        server.wait(timeout=10)


def ok_reply(reply) -> str:
    ok(reply)
    return reply.stderr


def fetch(ns: str) -> str:
    """The page at the ClusterIP, from inside `ns`; "" when nothing answers within 3 s."""
    done = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c",
                           f"import urllib.request; print(urllib.request.urlopen('http://{CLUSTER_IP}/', "
                           "timeout=3).read().decode())"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
def test_a_pod_reaches_a_cluster_ip_through_the_nodes_rules_with_service_cidrs(node, mode, make_netns, tmp_path):
    n, nic, plugin = node
    ipam = {"type": "host-local", "subnet": "10.74.0.0/24", "rangeStart": "10.74.0.10", "gateway": "10.74.0.1",
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")}
    with_key = {"cniVersion": "1.0.0", "name": unique("svc-"), "type": "ipvlan-ip", "master": nic, "mode": mode,
                "hostAccess": True, "serviceCIDRs": ["10.96.0.0/12"], "ipam": ipam}
    # Another network on the same master: a range of its own, as two networks on one master must have.
    without = {**with_key, "name": unique("nosvc-"), "ipam": {**ipam, "rangeStart": "10.74.0.100"}}
    without.pop("serviceCIDRs")
    pod, other = make_netns(), make_netns()
    result = ok(call_plugin("ADD", with_key, f"/run/netns/{pod}", container_id=pod, plugin=plugin))
    assert {"dst": "10.96.0.0/12", "gw": "10.74.0.2"} in result["routes"], result
    assert fetch(pod) == PAGE
    ok(call_plugin("CHECK", {**with_key, "prevResult": result}, f"/run/netns/{pod}", container_id=pod, plugin=plugin))

    # Without the key: in l2 the ClusterIP goes to the LAN's gateway, which has never heard of it. In l3 and
    # l3s ipvlan routes what a link sends in the node's namespace, through its OUTPUT chain, where kube-proxy's
    # rules are: the pod reaches the Service through its default route already.
    ok(call_plugin("ADD", without, f"/run/netns/{other}", container_id=other, plugin=plugin))
    assert fetch(other) == ("" if mode == "l2" else PAGE), mode

    said = [ok_reply(call_plugin("DEL", conf, f"/run/netns/{ns}", container_id=ns, plugin=plugin,
                                 env={"IPVLAN_IP_DEBUG": "1"})) for ns, conf in ((pod, with_key), (other, without))]
    routes = [r.get("dst") for r in ipj("route", "show", ns=n)]
    assert not [r for r in routes if r.startswith("10.74.0.1")], routes
    assert not ipj("link", "show", "type", "ipvlan", ns=n), said
    assert reservations(tmp_path / "ipam") == []
