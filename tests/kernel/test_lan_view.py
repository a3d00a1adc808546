"""What a LAN host sees of the containers: proxyNeighbors in l3s, and
router advertisements with and without ipv6.slaac.

The LAN peer is a netns on the master's veth peer with its own addresses on
the master's subnets, and no route added: it reaches a container only if
someone on the LAN answers its ARP request or neighbour solicitation for
the container's address."""

import signal
import subprocess
import time
from pathlib import Path

import pytest

from ipvlan_ip.capabilities import proxy_neighbors, vlan

from . import test_vlan
from .conftest import Lan, call_plugin, ip, ipj, reservations, unique
from .test_host_access import pings, tcp
from .test_plugin import addresses_in, links_in, ok
from .test_vlan import killing_ip

make_tagged_lan = test_vlan.make_tagged_lan     # the fixture, for the vlan case


def v6_prefix(lan: Lan, first: str = "fd") -> str:
    """The LAN's IPv6 prefix, from both octets of its net (a node root runs the same test beside
    the VM's), written as `ip` prints it."""
    one, two = map(int, lan.net.split("."))
    return f"{first}{one:02x}:{two:x}::" if first == "fd" else f"{first}{one:x}{two:02x}::"


def dual_stack(lan: Lan) -> Lan:
    """The LAN and the host on the master get IPv6 addresses too: PREFIX::1 and PREFIX::2."""
    ip("address", "add", f"{v6_prefix(lan)}1/64", "dev", lan.master + "p", "nodad", ns=lan.ns)
    ip("address", "add", f"{v6_prefix(lan)}2/64", "dev", lan.master, "nodad")
    return lan


def conf_for(lan: Lan, ipam_dir: Path, start: int = 10, **extra) -> dict:
    """Containers on the LAN's own subnets, as a LAN host would reach them; each network on
    the master from a `start` of its own, as networks sharing a master must."""
    ranges = [[{"subnet": f"{lan.net}.0.0/24", "rangeStart": f"{lan.net}.0.{start}"}],
              [{"subnet": f"{v6_prefix(lan)}/64", "rangeStart": f"{v6_prefix(lan)}{start}"}]]
    return {"cniVersion": "1.0.0", "name": unique("lanview-"), "type": "ipvlan-ip", "master": lan.master,
            "mode": "l3s", "ipam": {"type": "host-local", "ranges": ranges, "dataDir": str(ipam_dir),
                                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}, **extra}


def forward(master: str, on: bool = True) -> None:
    """The sysctls proxyNeighbors needs, on the test's master alone (they go with it)."""
    keys = [f"net.ipv4.conf.{master}.forwarding", f"net.ipv6.conf.{master}.forwarding",
            f"net.ipv6.conf.{master}.proxy_ndp"]
    subprocess.run(["sysctl", "-qw", *(f"{k}={int(on)}" for k in keys)], check=True)


def proxied(master: str) -> list[str]:
    return sorted(e["dst"] for e in ipj("neigh", "show", "proxy", "dev", master))


def through_lo(net: str) -> list[str]:
    return sorted(r["dst"] for r in ipj("route", "show", "dev", "lo") if r["dst"].startswith(net + "."))


def seen_from_lan(lan: Lan, container: str, addresses: list[str]) -> dict[str, bool]:
    """Whether the LAN peer pings, and opens TCP to, each address."""
    seen = {}
    for address in addresses:
        seen[f"ping {address}"] = pings(address, lan.ns)
        seen[f"tcp {address}"] = tcp(container, lan.ns, address, lan.port) == "hello"
    return seen


def unseen_from_lan(lan: Lan, container: str, addresses: list[str]) -> dict[str, bool]:
    """As seen_from_lan, each TCP connection tried once: it is expected to fail, and retrying a
    failure takes a minute."""
    seen = {}
    for address in addresses:
        seen[f"ping {address}"] = pings(address, lan.ns)
        server = subprocess.Popen(["ip", "netns", "exec", container, "busybox", "nc", "-l", "-p", str(lan.port),
                                   "-e", "echo", "hello"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            subprocess.run(["sh", "-c", f"until ip netns exec {container} ss -Hltn 'sport = :{lan.port}' | grep -q .;"
                            " do sleep 0.05; done"], check=True, timeout=60)     # listening: a refusal is real
            got = subprocess.run(["ip", "netns", "exec", lan.ns, "busybox", "nc", "-w", "3", address,
                                  str(lan.port)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
            seen[f"tcp {address}"] = got.stdout.strip() == "hello"
        finally:
            server.kill()
            server.wait()
    return seen


def bare(result: dict) -> list[str]:
    return [i["address"].split("/")[0] for i in result["ips"]]


def test_a_lan_host_reaches_an_l3s_container_with_proxy_neighbors_and_not_without(make_lan, make_netns, ipam_dir):
    lan = dual_stack(make_lan("10.210"))
    plain, near, other = make_netns(), make_netns(), make_netns()
    forward(lan.master)
    without = ok(call_plugin("ADD", conf_for(lan, ipam_dir, 100), f"/run/netns/{plain}", container_id=plain))
    conf = conf_for(lan, ipam_dir, proxyNeighbors=True)
    result = ok(call_plugin("ADD", conf, f"/run/netns/{near}", container_id=near))
    second = ok(call_plugin("ADD", conf, f"/run/netns/{other}", container_id=other))

    assert not any(unseen_from_lan(lan, plain, bare(without)).values()), "the LAN reached an l3s container unaided"
    assert all(seen_from_lan(lan, near, bare(result)).values()), seen_from_lan(lan, near, bare(result))
    assert proxied(lan.master) == sorted([*bare(result), *bare(second)])
    v4 = [a for a in bare(result) + bare(second) if "." in a]
    assert through_lo(lan.net) == sorted(v4)
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{near}", container_id=near))

    # One container's DEL leaves the other's entries, and the LAN still reaches it.
    ok(call_plugin("DEL", conf, f"/run/netns/{near}", container_id=near))
    assert proxied(lan.master) == sorted(bare(second)) and through_lo(lan.net) == [bare(second)[0]]
    assert all(seen_from_lan(lan, other, bare(second)).values())

    # The container went without a DEL: GC, told nothing of this network is valid, takes back its entries.
    ip("netns", "del", other)
    later = {**conf, "cniVersion": "1.1.0", "ipam": {"type": "test-ipam"}}
    ok(call_plugin("GC", {**later, "cni.dev/valid-attachments": []}, "", ifname=None, container_id=None))
    assert proxied(lan.master) == [] and through_lo(lan.net) == []
    ok(call_plugin("DEL", conf_for(lan, ipam_dir, 100), f"/run/netns/{plain}", container_id=plain))


def test_proxy_neighbors_on_a_master_that_does_not_forward_is_refused_and_leaves_nothing(make_lan, netns, ipam_dir):
    lan = dual_stack(make_lan("10.212"))
    conf = conf_for(lan, ipam_dir, proxyNeighbors=True)
    forward(lan.master, on=False)
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns)
    assert reply.code == 1 and reply.out["code"] == 103, reply.stdout
    assert f"net.ipv4.conf.{lan.master}.forwarding=1" in reply.out["msg"] + reply.out.get("details", "")
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == [] and proxied(lan.master) == []
    assert not Path(proxy_neighbors.record_path(conf["name"], netns, "eth0")).exists()


def test_proxy_neighbors_beside_host_access_adds_no_second_route(make_lan, netns, ipam_dir):
    lan = dual_stack(make_lan("10.214"))
    conf = conf_for(lan, ipam_dir, proxyNeighbors=True, hostAccess=True)
    forward(lan.master)
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns))
    assert all(seen_from_lan(lan, netns, bare(result)).values())
    assert pings(bare(result)[0])                       # the host reaches it too
    assert through_lo(lan.net) == [] and proxied(lan.master) == sorted(bare(result))
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id=netns))
    assert proxied(lan.master) == [] and reservations(ipam_dir) == []


@pytest.mark.parametrize("call", [2, 3])
def test_sigkill_during_a_proxied_add_leaves_nothing_that_del_does_not_remove(call, make_lan, netns, ipam_dir,
                                                                              tmp_path):
    """ADD runs `ip` three times: create, configure, then the proxy entries. Killed after the
    configure batch, nothing is proxied yet; killed after the last, everything is."""
    lan = dual_stack(make_lan(f"10.{214 + call}"))
    conf = conf_for(lan, ipam_dir, proxyNeighbors=True)
    forward(lan.master)
    killed = call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns, env=killing_ip(tmp_path, call))
    assert killed.code != 0 and killed.out is None
    assert len(proxied(lan.master)) == (2 if call == 3 else 0)
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id=netns))
    assert proxied(lan.master) == [] and through_lo(lan.net) == [] and reservations(ipam_dir) == []
    assert links_in(netns) == ["lo"] and not Path(proxy_neighbors.record_path(conf["name"], netns, "eth0")).exists()


@pytest.fixture
def advertised(make_lan, tmp_path):
    """A LAN whose router (radvd in the LAN's netns) announces a /64 for SLAAC every few seconds."""
    lan = make_lan("10.220")
    prefix = v6_prefix(lan, "fdee:")
    config = tmp_path / "radvd.conf"
    config.write_text(f"interface {lan.master}p {{ AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4; "
                      f"prefix {prefix}/64 {{ AdvOnLink on; AdvAutonomous on; }}; }};\n")
    ip("netns", "exec", lan.ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    radvd = subprocess.Popen(["ip", "netns", "exec", lan.ns, "radvd", "-n", "-C", str(config),
                              "-p", str(tmp_path / "radvd.pid")], stderr=subprocess.DEVNULL)
    yield lan, prefix
    radvd.send_signal(signal.SIGTERM)
    radvd.wait(timeout=10)


def advertisements_in(ns: str) -> int:
    """Router advertisements the netns `ns` has received (the kernel's own counter)."""
    shown = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp6"], capture_output=True, text=True,
                           check=True).stdout
    return int(dict(line.split() for line in shown.splitlines())["Icmp6InRouterAdvertisements"])


def slaac_addresses(ns: str, prefix: str) -> list[str]:
    return sorted(a for a in addresses_in(ns) if a.startswith(prefix))


def test_router_advertisements_give_addresses_only_with_ipv6_slaac_each_its_own(advertised, make_netns, ipam_dir):
    lan, prefix = advertised
    def network(name: str, start: int, **extra) -> dict:
        return {"cniVersion": "1.0.0", "type": "ipvlan-ip", "master": lan.master, "name": unique(name),
                "ipam": {"type": "host-local", "subnet": f"{lan.net}.0.0/24", "rangeStart": f"{lan.net}.0.{start}",
                         "dataDir": str(ipam_dir)}, **extra}
    plain = network("noslaac-", 10)
    slaac = network("slaac-", 100, ipv6={"slaac": True})
    without = [make_netns(), make_netns()]
    withkey = [make_netns(), make_netns()]
    results = {ns: ok(call_plugin("ADD", plain, f"/run/netns/{ns}", container_id=ns)) for ns in without}
    for ns in withkey:
        # A netns that forwards takes advertisements only with accept_ra 2, and one whose new links start with
        # IPv6 off needs the key's disable_ipv6 0: the key must write both.
        ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1",
           "net.ipv6.conf.default.disable_ipv6=1")
        results[ns] = ok(call_plugin("ADD", slaac, f"/run/netns/{ns}", container_id=ns))
    deadline = time.monotonic() + 20           # the router answers a solicitation, then duplicate detection
    while time.monotonic() < deadline and not all(slaac_addresses(ns, prefix) for ns in withkey):
        time.sleep(0.5)
    got = {ns: slaac_addresses(ns, prefix) for ns in withkey}
    assert all(len(a) == 1 for a in got.values()), got
    assert got[withkey[0]] != got[withkey[1]]            # one MAC, yet an address each
    heard = advertisements_in(withkey[0])     # the LAN's: every container on it hears the same ones
    subprocess.run(["sh", "-c", f"until [ $(ip netns exec {withkey[0]} awk '$1==\"Icmp6InRouterAdvertisements\""
                    f"{{print $2}}' /proc/net/snmp6) -gt {heard} ]; do sleep 0.2; done"], check=True, timeout=60)
    assert [slaac_addresses(ns, prefix) for ns in without] == [[], []]
    for ns in [*without, *withkey]:     # the keyed ones with their SLAAC address, which is not drift
        conf = plain if ns in without else slaac
        ok(call_plugin("CHECK", {**conf, "prevResult": results[ns]}, f"/run/netns/{ns}", container_id=ns))
    # Advertisements let in by hand after all: the address they give is drift that CHECK names.
    ns = without[0]
    ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0", "net.ipv6.conf.eth0.accept_ra=1")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not slaac_addresses(ns, prefix):
        time.sleep(0.5)
    drifted = call_plugin("CHECK", {**plain, "prevResult": results[ns]}, f"/run/netns/{ns}", container_id=ns)
    assert drifted.code == 1 and drifted.out["code"] == 102, drifted.stdout
    # An IPv4 network: IPv6 itself is the first drift CHECK names, with the address it took.
    details = drifted.out["details"]
    assert "IPv6 is on for 'eth0'" in details and slaac_addresses(ns, prefix)[0] in details
    for ns in [*without, *withkey]:
        ok(call_plugin("DEL", plain if ns in without else slaac, f"/run/netns/{ns}", container_id=ns))
    assert reservations(ipam_dir) == []


def test_proxy_neighbors_on_a_vlan_answer_on_the_vlan_link(make_tagged_lan, make_netns, ipam_dir):
    """The VLAN link is made by a first attachment without the key; the node's owner lets it forward."""
    lan = make_tagged_lan("10.222")
    holder, near = make_netns(), make_netns()
    plain = lan.conf(ipam_dir, first=10, last=49, mode="l3s")
    ok(call_plugin("ADD", plain, f"/run/netns/{holder}", container_id=holder))
    link = vlan.link_name(lan.master, 20)
    subprocess.run(["sysctl", "-qw", f"net/ipv4/conf/{link}/forwarding=1"], check=True)
    conf = lan.conf(ipam_dir, first=50, last=99, mode="l3s", proxyNeighbors=True)
    # The host holds no address on the VLAN link: until it is told the LAN's prefix there, the addresses are
    # refused (a /32 through lo for just any address would take the node's own traffic to it).
    refused = call_plugin("ADD", conf, f"/run/netns/{near}", container_id=near)
    assert refused.code == 1 and refused.out["code"] == 7 and f"not on the LAN of {link!r}" in refused.out["details"]
    assert through_lo(lan.net) == [] and links_in(near) == ["lo"]
    ip("route", "add", f"{lan.net}.0.0/24", "dev", link)
    address = bare(ok(call_plugin("ADD", conf, f"/run/netns/{near}", container_id=near)))[0]
    assert proxied(link) == [address] and pings(address, lan.lans[20])
    assert tcp(near, lan.lans[20], address, 8000 + 222) == "hello"
    ok(call_plugin("DEL", conf, f"/run/netns/{near}", container_id=near))
    assert proxied(link) == [] and through_lo(lan.net) == []
    ok(call_plugin("DEL", plain, f"/run/netns/{holder}", container_id=holder))


def test_del_after_the_master_was_deleted_and_made_again_leaves_nothing(make_lan, netns, ipam_dir):
    lan = dual_stack(make_lan("10.224"))
    conf = conf_for(lan, ipam_dir, proxyNeighbors=True)
    forward(lan.master)
    ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns))
    ip("link", "del", lan.master)           # its proxy entries, and the container's link, go with it
    ip("link", "add", lan.master, "type", "veth", "peer", "name", lan.master + "p")
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id=netns))
    assert proxied(lan.master) == [] and through_lo(lan.net) == [] and reservations(ipam_dir) == []
    assert not Path(proxy_neighbors.record_path(conf["name"], netns, "eth0")).exists()
