"""`"vlan": N` against the kernel. The master's veth peer is a trunk: its
netns carries the VLAN 20 and VLAN 30 sub-interfaces, each moved into a
netns of its own (the LAN of that VLAN), so a frame reaches VLAN 20's LAN
only when it left the master tagged 20. Each test has a `net` of its own.

What is shown: a container on VLAN 20 reaches VLAN 20's LAN (whose
neighbour table learns it) and nothing of VLAN 30's, in each mode; two
networks on VLANs 20 and 30 of one master do not reach each other; 32 ADDs
at once make one VLAN link; a VLAN link made by hand is used and outlives
every DEL and GC; an interface named like the VLAN link that is anything
else is refused with nothing allocated; the VLAN link the plugin made goes
with its last attachment of any network, never before, also with ADDs
racing its removal; MTU, a master that is down or deleted, SIGKILL during
ADD, CHECK, STATUS, GC and `show`; and a podman network with vlan."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from ipvlan_ip.capabilities import vlan

from ..conftest import SYSTEM_PATH
from .conftest import call_plugin, ip, ipj, reservations, unique
from .runtimes import eth, ipv4
from .test_host_access import pings
from .test_plugin import addresses_in, link_in, links_in, ok
from .test_show import show


class TaggedLan(NamedTuple):
    master: str
    trunk: str                  # the netns of the master's veth peer
    lans: dict[int, str]        # VLAN id -> the netns of its sub-interface
    net: str

    def address(self, vid: int) -> str:
        """VLAN 20's LAN has {net}.0.1, VLAN 30's {net}.0.3, on one subnet."""
        return f"{self.net}.0.{1 if vid == 20 else 3}"

    def address6(self, vid: int) -> str:
        return f"fd00:{self.net.split('.')[1]}::{1 if vid == 20 else 3}"

    def conf(self, ipam_dir: Path, vid: int | None = 20, first: int = 10, last: int = 99, **extra) -> dict:
        ranges = [[{"subnet": f"{self.net}.0.0/24", "rangeStart": f"{self.net}.0.{first}",
                    "rangeEnd": f"{self.net}.0.{last}"}]]
        return {"cniVersion": "1.0.0", "name": unique("vlannet-"), "type": "ipvlan-ip", "master": self.master,
                **({"vlan": vid} if vid else {}),
                "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "ranges": ranges}, **extra}

    def port(self, vid: int) -> str:
        return f"{self.master}p.{vid}"

    def knows(self, vid: int, address: str) -> bool:
        """Whether VLAN vid's LAN has a neighbour entry for `address`: a frame from it arrived there."""
        return any(n.get("dst") == address and "lladdr" in n
                   for n in ipj("neigh", "show", "dev", self.port(vid), ns=self.lans[vid]))


@pytest.fixture
def make_tagged_lan(make_netns, make_master):
    def make(net: str, mtu: int | None = None) -> TaggedLan:
        master, trunk = make_master(mtu=mtu), make_netns()
        ip("link", "set", master + "p", "netns", trunk)
        ip("link", "set", master + "p", "up", ns=trunk)
        lans = {}
        for vid in (20, 30):
            lan = TaggedLan(master, trunk, {}, net)
            lans[vid] = make_netns()
            port = lan.port(vid)
            ip("link", "add", "link", master + "p", "name", port, "type", "vlan", "id", str(vid), ns=trunk)
            ip("link", "set", port, "netns", lans[vid], ns=trunk)
            ip("address", "add", f"{lan.address(vid)}/24", "dev", port, ns=lans[vid])
            ip("address", "add", f"{lan.address6(vid)}/64", "dev", port, "nodad", ns=lans[vid])
            ip("link", "set", port, "up", ns=lans[vid])
        return TaggedLan(master, trunk, lans, net)
    return make


def vlan_links(master: str) -> list[dict]:
    """The host's VLAN links on `master`."""
    return [link for link in ipj("-d", "link", "show", "type", "vlan") if link.get("link") == master]


def recorded(network: str) -> list[str]:
    directory = Path(vlan.STATE) / network
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def made_by_plugin(link: str) -> bool:
    """Whether `link` is there with the mark of a link the plugin made (its alias)."""
    return any(found.get("ifalias") == vlan.MADE for found in ipj("-d", "link", "show") if found["ifname"] == link)


def add(conf: dict, ns: str) -> dict:
    return ok(call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns))


def delete(conf: dict, ns: str) -> None:
    ok(call_plugin("DEL", conf, f"/run/netns/{ns}", container_id=ns))


@pytest.mark.parametrize("mode, net", [("l2", "10.160"), ("l3", "10.162"), ("l3s", "10.164")])
def test_a_container_on_vlan_20_reaches_vlan_20_of_the_lan_and_nothing_of_vlan_30(mode, net, make_tagged_lan,
                                                                                    netns, ipam_dir):
    lan = make_tagged_lan(net)
    conf = lan.conf(ipam_dir, mode=mode)
    if mode == "l2":        # dual-stack: IPv6 from the same VLAN's LAN
        conf["ipam"]["ranges"].append([{"subnet": f"fd00:{net.split('.')[1]}::/64",
                                        "rangeStart": f"fd00:{net.split('.')[1]}::10"}])
    result = add(conf, netns)
    name = vlan.link_name(lan.master, 20)
    [made] = vlan_links(lan.master)
    assert made["ifname"] == name and made["linkinfo"]["info_data"]["id"] == 20
    assert "UP" in made["flags"] and made["mtu"] == link_in(None, lan.master)["mtu"]
    link = link_in(netns)
    assert link["linkinfo"]["info_kind"] == "ipvlan" and link["linkinfo"]["info_data"]["mode"] == mode
    assert link["link_index"] == made["ifindex"]        # on the VLAN link, not on the master
    address = result["ips"][0]["address"].split("/")[0]
    if mode != "l2":
        # An l3 link answers no ARP: VLAN 20's router knows the container by the master's MAC.
        ip("neigh", "add", address, "lladdr", made["address"], "dev", lan.port(20), "nud", "permanent",
           ns=lan.lans[20])

    assert pings(lan.address(20), netns), f"container -> VLAN 20's LAN ({mode})"
    assert not pings(lan.address(30), netns), f"container -> VLAN 30's LAN ({mode})"
    assert lan.knows(20, address) and not lan.knows(30, address)     # its frames arrive tagged 20
    if mode == "l2":
        v6 = next(i["address"] for i in result["ips"] if ":" in i["address"])
        assert v6 in addresses_in(netns)
        assert subprocess.run(["ip", "netns", "exec", netns, "ping", "-6", "-c", "1", "-W", "3",
                               lan.address6(20)], capture_output=True).returncode == 0

    ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{netns}", container_id=netns))
    delete(conf, netns)
    assert vlan_links(lan.master) == [] and reservations(ipam_dir) == [] and recorded(conf["name"]) == []
    assert links_in(netns) == ["lo"] and not made_by_plugin(name)


def test_networks_on_vlans_20_and_30_of_one_master_do_not_reach_each_other(make_tagged_lan, make_netns, tmp_path):
    lan = make_tagged_lan("10.166")
    # One subnet for both: only the tags keep them apart.
    confs = {20: lan.conf(tmp_path / "a", 20, 10, 19), 30: lan.conf(tmp_path / "b", 30, 20, 29)}
    containers = {vid: make_netns() for vid in confs}
    addresses = {vid: add(confs[vid], ns)["ips"][0]["address"].split("/")[0] for vid, ns in containers.items()}
    assert sorted(link["linkinfo"]["info_data"]["id"] for link in vlan_links(lan.master)) == [20, 30]
    for vid, other in ((20, 30), (30, 20)):
        assert pings(lan.address(vid), containers[vid]), f"VLAN {vid} -> its LAN"
        assert not pings(addresses[other], containers[vid]), f"VLAN {vid} -> the container on VLAN {other}"
        assert not pings(lan.address(other), containers[vid]), f"VLAN {vid} -> VLAN {other}'s LAN"
    for vid, ns in containers.items():
        delete(confs[vid], ns)
    assert vlan_links(lan.master) == []


def test_32_adds_at_once_on_a_new_vlan_make_one_vlan_link_and_every_container_reaches_the_lan(
        make_tagged_lan, make_netns, ipam_dir):
    lan = make_tagged_lan("10.168")
    conf = lan.conf(ipam_dir)
    containers = [make_netns() for _ in range(32)]
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda ns: call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns), containers))
    assert [r.code for r in replies] == [0] * 32, [r.stdout for r in replies if r.code]
    [made] = vlan_links(lan.master)
    assert all(link_in(ns)["link_index"] == made["ifindex"] for ns in containers)
    with ThreadPoolExecutor(8) as pool:
        reached = list(pool.map(lambda ns: pings(lan.address(20), ns), containers))
    assert all(reached), f"{reached.count(False)} of 32 did not reach the LAN"
    with ThreadPoolExecutor(32) as pool:
        gone = list(pool.map(lambda ns: call_plugin("DEL", conf, f"/run/netns/{ns}", container_id=ns), containers))
    assert [r.code for r in gone] == [0] * 32
    assert vlan_links(lan.master) == [] and reservations(ipam_dir) == [] and recorded(conf["name"]) == []


def test_a_vlan_link_made_by_hand_is_brought_up_used_and_outlives_the_last_del_and_gc(make_tagged_lan, netns,
                                                                                       ipam_dir):
    """Made by hand where an earlier version of the plugin had made and recorded (by ifindex) a link of
    that name, which went since: the record speaks of another link."""
    lan = make_tagged_lan("10.170")
    name = vlan.link_name(lan.master, 20)
    ip("link", "add", "link", lan.master, "name", name, "type", "vlan", "id", "20")
    earlier = {"master": lan.master, "vlan": 20, "ifindex": link_in(None, name)["ifindex"]}
    Path(vlan.LEGACY).mkdir(parents=True, exist_ok=True)
    Path(vlan.legacy_path(name)).write_text(json.dumps(earlier))
    ip("link", "del", name)
    ip("link", "add", "link", lan.master, "name", name, "mtu", "1400", "type", "vlan", "id", "20")  # and down
    assert link_in(None, name)["ifindex"] != earlier["ifindex"]
    conf = lan.conf(ipam_dir)
    add(conf, netns)
    assert "UP" in link_in(None, name)["flags"] and link_in(netns)["mtu"] == 1400
    assert pings(lan.address(20), netns)
    refused = call_plugin("ADD", {**lan.conf(ipam_dir), "mtu": 1450}, f"/run/netns/{netns}", ifname="net1")
    assert refused.code == 1 and refused.out["code"] == 7 and "1400" in refused.out["details"]
    delete(conf, netns)
    gc = {**conf, "cniVersion": "1.1.0", "ipam": {"type": "test-ipam"}, "cni.dev/valid-attachments": []}
    ok(call_plugin("GC", gc, "", ifname=None, container_id=None))
    assert [link["ifname"] for link in vlan_links(lan.master)] == [name] and not made_by_plugin(name)
    assert reservations(ipam_dir) == [] and links_in(netns) == ["lo"]
    assert not Path(vlan.legacy_path(name)).exists()        # the stale record went with the last DEL


@pytest.mark.parametrize("kind", ["veth", "another id", "another master", "bridge"])
def test_an_interface_named_like_the_vlan_link_that_is_not_that_vlan_is_refused_with_nothing_allocated(
        kind, make_tagged_lan, make_master, netns, ipam_dir):
    lan = make_tagged_lan({"veth": "10.172", "another id": "10.173", "another master": "10.174",
                           "bridge": "10.175"}[kind])
    name = vlan.link_name(lan.master, 20)
    if kind.startswith("another"):
        parent = make_master() if kind == "another master" else lan.master
        ip("link", "add", "link", parent, "name", name, "type", "vlan", "id", "30" if kind == "another id" else "20")
    else:
        ip("link", "add", name, "type", kind, *(("peer", "name", unique("vp")) if kind == "veth" else ()))
    before = link_in(None, name)
    conf = lan.conf(ipam_dir)
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns)
    assert reply.code == 1 and reply.out["code"] == 103, reply.stdout
    assert f"interface {name} " in reply.out["details"] and "try again" not in reply.out["details"]
    assert reservations(ipam_dir) == [] and links_in(netns) == ["lo"] and recorded(conf["name"]) == []
    assert link_in(None, name)["ifindex"] == before["ifindex"] and not made_by_plugin(name)
    delete(conf, netns)
    ip("link", "del", name)


def test_the_vlan_link_goes_with_its_last_attachment_of_any_network_and_never_before(make_tagged_lan, make_netns,
                                                                                      tmp_path):
    lan = make_tagged_lan("10.176")
    confs = [lan.conf(tmp_path / "a", 20, 10, 19), lan.conf(tmp_path / "b", 20, 20, 29)]     # two networks
    a, b = make_netns(), make_netns()
    add(confs[0], a)
    add(confs[1], b)
    [made] = vlan_links(lan.master)
    delete(confs[0], a)
    assert vlan_links(lan.master) == [made] and pings(lan.address(20), b)
    delete(confs[1], b)
    assert vlan_links(lan.master) == [] and not made_by_plugin(made["ifname"])


def test_adds_racing_the_removal_of_the_vlan_link_each_end_on_a_link_that_works(make_tagged_lan, make_netns,
                                                                              ipam_dir):
    lan = make_tagged_lan("10.178")
    conf = lan.conf(ipam_dir)
    with ThreadPoolExecutor(2) as pool:
        for _ in range(5):
            leaving, coming = make_netns(), make_netns()
            add(conf, leaving)
            gone = pool.submit(call_plugin, "DEL", conf, f"/run/netns/{leaving}", container_id=leaving)
            came = pool.submit(call_plugin, "ADD", conf, f"/run/netns/{coming}", container_id=coming)
            ok(gone.result())
            ok(came.result())
            [made] = vlan_links(lan.master)
            assert link_in(coming)["link_index"] == made["ifindex"] and pings(lan.address(20), coming)
            delete(conf, coming)
            assert vlan_links(lan.master) == []


def test_mtu_and_a_master_that_is_down_are_refused_leaving_nothing(make_tagged_lan, netns, ipam_dir):
    lan = make_tagged_lan("10.180", mtu=1400)
    for extra, code, said in (({"mtu": 1450}, 7, "1400"), ({}, 103, "is down")):
        if code == 103:
            ip("link", "set", lan.master, "down")
        reply = call_plugin("ADD", lan.conf(ipam_dir, **extra), f"/run/netns/{netns}", container_id=netns)
        assert reply.code == 1 and reply.out["code"] == code and said in reply.out["details"], reply.stdout
        assert vlan_links(lan.master) == [] and reservations(ipam_dir) == [] and links_in(netns) == ["lo"]
    ip("link", "set", lan.master, "up")
    add(lan.conf(ipam_dir, mtu=1300), netns)
    assert link_in(netns)["mtu"] == 1300 and vlan_links(lan.master)[0]["mtu"] == 1400


def test_a_master_deleted_under_its_containers_del_succeeds_and_the_next_add_makes_the_link_again(
        make_netns, ipam_dir):
    master = unique("mst")
    ip("link", "add", master, "type", "veth", "peer", "name", master + "p")
    ip("link", "set", master, "up")
    conf = TaggedLan(master, "", {}, "10.181").conf(ipam_dir)
    first, second = make_netns(), make_netns()
    add(conf, first)
    ip("link", "del", master)       # the VLAN link and the container's link go with it
    delete(conf, first)
    assert reservations(ipam_dir) == [] and recorded(conf["name"]) == []
    ip("link", "add", master, "type", "veth", "peer", "name", master + "p")
    ip("link", "set", master, "up")
    try:
        add(conf, second)
        [made] = vlan_links(master)
        assert link_in(second)["link_index"] == made["ifindex"]
        delete(conf, second)
        assert vlan_links(master) == []
    finally:
        ip("link", "del", master, check=False)


def killing_ip(tmp_path: Path, call: int) -> dict:
    """An `ip` first in PATH whose call-th run does its work, then SIGKILLs the plugin that ran it."""
    wrapper = tmp_path / "bin" / "ip"
    wrapper.parent.mkdir()
    wrapper.write_text(f"""#!/bin/sh
n=$(( $(cat {tmp_path}/ip-calls 2>/dev/null || echo 0) + 1 )); echo $n > {tmp_path}/ip-calls
/usr/sbin/ip "$@"; rc=$?
[ $n = {call} ] && kill -9 $PPID
exit $rc
""")
    wrapper.chmod(0o755)
    return {"PATH": f"{wrapper.parent}:{SYSTEM_PATH}"}


@pytest.mark.parametrize("call", [1, 2])
def test_sigkill_during_add_leaves_nothing_that_del_does_not_remove(call, make_tagged_lan, netns, ipam_dir, tmp_path):
    lan = make_tagged_lan(f"10.{182 + call}")
    conf = lan.conf(ipam_dir)
    killed = call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns, env=killing_ip(tmp_path, call))
    assert killed.code != 0 and killed.out is None
    assert len(vlan_links(lan.master)) == 1          # made by the killed call
    delete(conf, netns)
    assert vlan_links(lan.master) == [] and links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    assert recorded(conf["name"]) == [] and not made_by_plugin(vlan.link_name(lan.master, 20))


def test_check_status_and_gc_on_a_vlan(make_tagged_lan, make_netns, ipam_dir):
    lan = make_tagged_lan("10.186")
    conf = lan.conf(ipam_dir)
    # STATUS and GC need 1.1.0, which Debian's host-local predates: a test IPAM plugin answers them.
    later = {**conf, "cniVersion": "1.1.0", "ipam": {"type": "test-ipam"}}
    live, gone = make_netns(), make_netns()
    result = add(conf, live)
    add(conf, gone)
    name = vlan.link_name(lan.master, 20)
    check = {**conf, "prevResult": result}
    ok(call_plugin("CHECK", check, f"/run/netns/{live}", container_id=live))
    ip("link", "set", name, "down")
    drifted = call_plugin("CHECK", check, f"/run/netns/{live}", container_id=live)
    assert drifted.code == 1 and drifted.out["code"] == 102 and f"VLAN link {name} is down" in drifted.out["details"]
    ip("link", "set", name, "up")
    ok(call_plugin("STATUS", later))
    missing = call_plugin("STATUS", {**later, "master": unique("nomst")})
    assert missing.code == 1 and missing.out["code"] == 50

    # The container `gone` went without a DEL; GC, told only `live` is valid, takes it off the link.
    ip("netns", "del", gone)
    attachments = [{"containerID": live, "ifname": "eth0"}]
    ok(call_plugin("GC", {**later, "cni.dev/valid-attachments": attachments}, "", ifname=None, container_id=None))
    assert recorded(conf["name"]) == [f"{live}:eth0"] and [link["ifname"] for link in vlan_links(lan.master)] == [name]
    assert pings(lan.address(20), live)
    # `show` draws the master, then the VLAN link, then the container's link on it.
    drawn = show("--master", name)
    assert drawn.splitlines()[:2] == [f"{lan.master} in host", f"└── {name}: VLAN 20, made by ipvlan-ip, up, mtu 1500"]
    assert drawn.splitlines()[2].startswith(f"    └── eth0 in {live}")

    ip("link", "del", "dev", "eth0", ns=live)        # gone too now, without a DEL
    [unused] = [m for m in json.loads(show("--json"))["masters"] if m["name"] == name]
    assert unused["links"] == [] and unused["problems"] == ["unused-vlan-link"]
    ok(call_plugin("GC", {**later, "cni.dev/valid-attachments": []}, "", ifname=None, container_id=None))
    assert recorded(conf["name"]) == [] and vlan_links(lan.master) == [] and not made_by_plugin(name)


def test_a_podman_network_with_vlan(podman, make_tagged_lan, tmp_path):
    lan = make_tagged_lan("10.188")
    ipam_dir = tmp_path / "ipam"
    net = podman.network("ipv-vlan", lan.master, f"{lan.net}.0.0/24", ipam_dir, tuning=False, vlan=20)
    c = podman.start(net)
    link = eth(c, "eth0")
    [made] = vlan_links(lan.master)
    assert link["linkinfo"]["info_kind"] == "ipvlan" and link["link_index"] == made["ifindex"]
    assert ipv4(link).startswith(f"{lan.net}.0.")
    ping = podman("exec", c["Id"], "ping", "-c", "1", "-W", "5", lan.address(20), check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert lan.knows(20, ipv4(link)) and not lan.knows(30, ipv4(link))
    podman.remove(c["Id"])
    assert vlan_links(lan.master) == [] and reservations(ipam_dir) == []
    assert made["ifname"] == vlan.link_name(lan.master, 20)
