"""Issue 39's guards on a node laid out as real ones are (issue 48): the NIC
at ifindex 2 and a pod's first link at ifindex 2 too, a VLAN link whose
index a pod's link repeats, the idle host link of hostAccess, links the
plugin makes on a LAN with a router, IPv4-only containers, a tenant's
addresses, a bridge on the VLAN link, ipvtap links, and the locks that order
a burst. The node of the layout tests is a netns of its own whose first
link is the NIC, the plugin run inside it (`ip netns exec`), as a runtime
on that node would run it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from ipvlan_ip import ipam
from ipvlan_ip.capabilities import host_access, proxy_neighbors, vlan
from ipvlan_ip.node import port, state

from . import test_vlan
from .conftest import PLUGIN, call_plugin, ip, ipj, reservations, unique
from .test_lan_view import forward, proxied, through_lo
from .test_plugin import host_local, link_in, links_in, netconf, ok
from .test_sharing import network, settings
from .test_vlan import killing_ip

make_tagged_lan = test_vlan.make_tagged_lan     # the fixture


class Node(NamedTuple):
    ns: str         # the node's netns: its first link is its NIC nic0 (ifindex 2, or the next after the
                    # fallback devices of tunnel drivers the kernel has loaded: a pod's first link's too)
    plugin: str     # the plugin, run inside it


@pytest.fixture
def node(make_netns, tmp_path) -> Node:
    ns = make_netns()
    ip("link", "add", "wire0", "type", "veth", "peer", "name", "nic0", ns=ns)     # veth makes the peer first
    for name in ("nic0", "wire0"):
        ip("link", "set", name, "up", ns=ns)
    launcher = tmp_path / "on-the-node"
    launcher.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {PLUGIN} "$@"\n')
    launcher.chmod(0o755)
    return Node(ns, str(launcher))


def add(conf: dict, ns: str, plugin: str = PLUGIN) -> dict:
    return ok(call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns, plugin=plugin))


def delete(conf: dict, ns: str, plugin: str = PLUGIN) -> None:
    ok(call_plugin("DEL", conf, f"/run/netns/{ns}", container_id=ns, plugin=plugin))


def refused(conf: dict, ns: str, code: int, plugin: str = PLUGIN) -> str:
    reply = call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns, plugin=plugin)
    assert reply.code == 1 and reply.out["code"] == code, reply.stdout
    return reply.out["details"]


def test_a_pods_first_link_at_the_nics_own_ifindex_still_holds_the_masters_flag(node, make_netns, tmp_path):
    # Read as a link stacked on itself, it was invisible: the open network's ADD reset the flag to bridge.
    private = network("nic0", tmp_path / "a", "node-private", 51, flag="private")
    a1, a2, b = make_netns(), make_netns(), make_netns()
    for ns in (a1, a2):
        add(private, ns, node.plugin)
    nic = ipj("link", "show", "dev", "nic0", ns=node.ns)[0]["ifindex"]
    assert link_in(a1)["ifindex"] == nic == link_in(a1)["link_index"]
    details = refused(network("nic0", tmp_path / "b", "node-open", 52), b, 103, node.plugin)
    assert "carries ipvlan links in mode l2, flag private" in details and links_in(b) == ["lo"]
    assert settings(a1) == settings(a2) == ("l2", "private")
    for ns in (a1, a2):
        delete(private, ns, node.plugin)


def test_a_vlan_link_stays_under_a_pod_link_that_repeats_its_ifindex(node, make_netns, tmp_path):
    tagged = network("nic0", tmp_path / "x", "node-tagged", 53, vlan=20)
    x1, y1 = make_netns(), make_netns()
    add(tagged, x1, node.plugin)
    made = ipj("link", "show", "dev", "nic0.20", ns=node.ns)[0]["ifindex"]
    while max(found["ifindex"] for found in ipj("link", "show", ns=y1)) < made - 1:     # y1's next link: `made`
        ip("link", "add", unique("pad"), "type", "dummy", ns=y1)
    direct = network("nic0.20", tmp_path / "y", "node-direct", 54)
    add(direct, y1, node.plugin)
    assert link_in(y1)["ifindex"] == made == link_in(y1)["link_index"]
    delete(tagged, x1, node.plugin)     # the last "vlan": 20 attachment: y1's link still stands on nic0.20
    assert "nic0.20" in links_in(node.ns) and "eth0" in links_in(y1)
    delete(direct, y1, node.plugin)


def test_the_host_link_goes_with_its_last_container_and_frees_the_master_for_another_mode(make_lan, make_netns,
                                                                                        ipam_dir):
    lan = make_lan("10.60")
    reach = {"cniVersion": "1.0.0", "name": "reach-60", "type": "ipvlan-ip", "master": lan.master,
             "hostAccess": True, "ipam": host_local(ipam_dir, subnet="10.60.0.0/24", rangeStart="10.60.0.10")}
    routed = netconf(lan.master, ipam_dir, name="routed-60", mode="l3",
                     ipam=host_local(ipam_dir, subnet="10.58.0.0/24", gateway="10.58.0.1"))
    a, b = make_netns(), make_netns()
    add(reach, a)
    link = host_access.link_name(lan.master)
    details = refused(routed, b, 103)
    assert f"{link} in" in details and "hostAccess's host link" in details and "eth0 in /run/netns/" in details
    delete(reach, a)
    assert link not in links_in(None)     # an idle host link held the master in l2 for good
    add(routed, b)
    assert settings(b) == ("l3", "bridge")
    delete(routed, b)
    assert reservations(ipam_dir) == []


def slaac_on(name: str) -> list[str]:
    """The global IPv6 addresses of the host's interface `name`."""
    [shown] = ipj("-6", "address", "show", "dev", name)
    return [a["local"] for a in shown["addr_info"] if a.get("scope") == "global"]


def advertisements_on(name: str) -> int:
    """Router advertisements the host's interface `name` has received (the kernel's own counter)."""
    counters = dict(line.split() for line in Path(f"/proc/net/dev_snmp6/{name}").read_text().splitlines())
    return int(counters["Icmp6InRouterAdvertisements"])


@pytest.fixture
def routers(tmp_path):
    """routers(ns, ifname, prefix): radvd in `ns` announcing prefix/64 every few seconds, stopped afterwards."""
    started = []

    def start(ns: str, ifname: str, prefix: str) -> None:
        config = tmp_path / f"radvd-{ifname}.conf"
        config.write_text(f"interface {ifname} {{ AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4; "
                          f"prefix {prefix}/64 {{ AdvOnLink on; AdvAutonomous on; }}; }};\n")
        ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        started.append(subprocess.Popen(["ip", "netns", "exec", ns, "radvd", "-n", "-C", str(config),
                                         "-p", str(tmp_path / f"radvd-{ifname}.pid")], stderr=subprocess.DEVNULL))
    yield start
    for radvd in started:
        radvd.send_signal(signal.SIGTERM)
        radvd.wait(timeout=10)


def test_links_the_plugin_makes_on_the_host_take_no_address_from_a_router(make_tagged_lan, make_lan, make_netns,
                                                                         routers, ipam_dir, tmp_path):
    tagged, plain = make_tagged_lan("10.66"), make_lan("10.67")
    routers(tagged.lans[20], tagged.port(20), "fd66:20::")
    routers(plain.ns, plain.master + "p", "fd67:1::")
    on_vlan = tagged.conf(ipam_dir)
    reach = {"cniVersion": "1.0.0", "name": "reach-67", "type": "ipvlan-ip", "master": plain.master,
             "hostAccess": True, "ipam": host_local(tmp_path / "b", subnet="10.67.0.0/24", rangeStart="10.67.0.10")}
    a, b = make_netns(), make_netns()
    add(on_vlan, a)
    add(reach, b)
    made = [vlan.link_name(tagged.master, 20), host_access.link_name(plain.master)]
    heard = {name: advertisements_on(name) for name in made}
    for name in made:       # two advertisements more each, the first of which would have given an address
        subprocess.run(["sh", "-c", f"until [ $(awk '$1==\"Icmp6InRouterAdvertisements\"{{print $2}}' "
                        f"/proc/net/dev_snmp6/{name}) -ge {heard[name] + 2} ]; do sleep 0.2; done"],
                       check=True, timeout=60)
    assert {name: slaac_on(name) for name in made} == {name: [] for name in made}
    assert slaac_on(plain.master) != []     # the node's own link took one: the router is heard
    delete(on_vlan, a)
    delete(reach, b)


def test_an_ipv4_only_container_has_no_ipv6_and_check_says_when_it_has(master, netns, ipam_dir):
    conf = netconf(master, ipam_dir, name="v4only-68",
                   ipam=host_local(ipam_dir, subnet="10.68.0.0/24", gateway="10.68.0.1"))
    result = add(conf, netns)
    [shown] = ipj("address", "show", "dev", "eth0", ns=netns)
    assert [a["family"] for a in shown["addr_info"]] == ["inet"]     # no link-local: no IPv6 multicast joined
    sysctl = ["ip", "netns", "exec", netns, "sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6"]
    assert subprocess.run(sysctl, capture_output=True, text=True, check=True).stdout.strip() == "1"
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{netns}", container_id=netns))
    ip("netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0")
    drifted = call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{netns}", container_id=netns)
    assert drifted.code == 1 and drifted.out["code"] == 102 and "IPv6 is on for 'eth0'" in drifted.out["details"]
    delete(conf, netns)


def static(*addresses: str) -> dict:
    return {"type": "static", "addresses": [{"address": a} for a in addresses]}


def test_a_configs_addresses_never_take_the_nodes_own_traffic(make_lan, make_netns):
    lan = make_lan("10.69")
    forward(lan.master)
    own = {"cniVersion": "1.0.0", "name": "tenant-a", "type": "ipvlan-ip", "master": lan.master,
           "hostAccess": True, "ipam": static(f"{lan.host}/24")}
    a, b = make_netns(), make_netns()
    assert "is an address of the host itself" in refused(own, a, 7)
    assert links_in(a) == ["lo"] and host_access.link_name(lan.master) not in links_in(None)
    assert [r["dst"] for r in ipj("route", "show", f"{lan.host}/32")] == []
    # Off the master's LAN (192.0.2.77: a documentation address, no packet is sent to it).
    elsewhere = {"cniVersion": "1.0.0", "name": "tenant-b", "type": "ipvlan-ip", "master": lan.master,
                 "mode": "l3s", "proxyNeighbors": True, "ipam": static("192.0.2.77/32")}
    assert f"192.0.2.77/32 is not on the LAN of {lan.master!r} (the prefixes the host reaches on it " \
           "directly: 10.69.0.0/24" in refused(elsewhere, b, 7)
    assert ipj("route", "show", "192.0.2.77/32") == [] and proxied(lan.master) == [] and links_in(b) == ["lo"]
    assert "is an address of the host itself" in refused({**elsewhere, "ipam": static(f"{lan.host}/24")}, b, 7)
    assert through_lo(lan.net) == []


def test_the_last_vlan_del_waits_for_the_port_lock_of_the_vlan_link(make_tagged_lan, netns, ipam_dir):
    """A network that names the VLAN link as its master makes its first link there under that lock alone."""
    lan = make_tagged_lan("10.61")
    conf = lan.conf(ipam_dir)
    add(conf, netns)
    link = vlan.link_name(lan.master, 20)
    with held_by_the_test(port.lock_path(link)) as lock:
        env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "DEL", "CNI_CONTAINERID": netns,
               "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
               "IPVLAN_IP_DEBUG": "1"}
        deleting = subprocess.Popen([PLUGIN], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        deleting.stdin.write(json.dumps(conf))
        deleting.stdin.close()
        for line in deleting.stderr:
            if f"waiting for another operation holding {lock}" in line:
                break
        else:
            pytest.fail(f"the DEL did not wait for {lock}: it exited {deleting.wait()}")
        # What that network's first ADD does under the lock meanwhile.
        ip("link", "add", "link", link, "name", "direct61", "type", "ipvlan", "mode", "l2")
    assert deleting.wait(timeout=120) == 0
    assert link in links_in(None)       # direct61 stands on it
    ip("link", "del", "direct61")


def test_a_bridge_port_and_an_ipvtap_link_count_as_using_their_links(make_tagged_lan, master, make_netns, ipam_dir,
                                                                      tmp_path):
    lan = make_tagged_lan("10.62")
    conf = lan.conf(ipam_dir)
    a, b = make_netns(), make_netns()
    add(conf, a)
    link = vlan.link_name(lan.master, 20)
    # The container went without its DEL, its link with it: the node's owner may then bridge the VLAN link
    # (a bridge or bond cannot take a device that ipvlan links stand on) before the runtime's late DEL.
    ip("netns", "del", a)
    ip("link", "add", "br62", "type", "bridge")
    try:
        ip("link", "set", link, "master", "br62")
        delete(conf, a)
        assert link in links_in(None)       # the node's owner bridges it now
    finally:
        ip("link", "del", "br62")
        ip("link", "del", link, check=False)
    ip("link", "add", "link", master, "name", "tap62", "type", "ipvtap", "mode", "l3")
    assert "tap62 in" in refused(network(master, tmp_path / "c", "beside-tap", 57), b, 103)
    assert ipj("-d", "link", "show", "dev", "tap62")[0]["linkinfo"]["info_data"]["mode"] == "l3"
    ip("link", "del", "tap62")


def test_eight_first_adds_at_once_half_l2_half_l3_leave_one_mode_whole(master, make_netns, tmp_path):
    """The first link on a master is made under its port lock held exclusively (port.py)."""
    nets = {"l2": network(master, tmp_path / "l2", "first-l2", 55, mode="l2"),
            "l3": network(master, tmp_path / "l3", "first-l3", 56, mode="l3")}
    calls = [(mode, make_netns()) for mode in ("l2", "l3") * 4]
    with ThreadPoolExecutor(len(calls)) as pool:
        replies = list(pool.map(lambda c: call_plugin("ADD", nets[c[0]], f"/run/netns/{c[1]}", container_id=c[1]),
                                calls))
    made = {mode for (mode, _), reply in zip(calls, replies) if reply.code == 0}
    assert len(made) == 1, [r.stdout for r in replies]
    winner = made.pop()
    for (mode, ns), reply in zip(calls, replies):
        if mode == winner:
            assert reply.code == 0 and settings(ns) == (winner, "bridge"), reply.stdout
        else:
            assert reply.out["code"] == 103 and links_in(ns) == ["lo"], reply.stdout
    for mode, ns in calls:
        ok(call_plugin("DEL", nets[mode], f"/run/netns/{ns}", container_id=ns))


def test_an_address_taken_over_from_a_killed_add_keeps_its_entry_after_the_old_del(make_lan, make_netns, tmp_path):
    lan = make_lan("10.63")
    forward(lan.master)
    conf = {"cniVersion": "1.0.0", "name": "takeover-63", "type": "ipvlan-ip", "master": lan.master,
            "mode": "l3s", "proxyNeighbors": True, "ipam": static("10.63.0.40/24")}
    old, new = make_netns(), make_netns()
    killed = call_plugin("ADD", conf, f"/run/netns/{old}", container_id=old, env=killing_ip(tmp_path, 3))
    assert killed.code != 0 and proxied(lan.master) == ["10.63.0.40"]
    ip("netns", "del", old)                 # the container is gone without a DEL, its link with it
    add(conf, new)
    delete(conf, old)                       # the runtime's late DEL of the killed one
    assert proxied(lan.master) == ["10.63.0.40"] and through_lo(lan.net) == ["10.63.0.40"]
    delete(conf, new)
    assert proxied(lan.master) == [] and through_lo(lan.net) == []
    assert not Path(proxy_neighbors.record_path("takeover-63", old, "eth0")).exists()


def test_check_names_a_proxy_entry_removed_by_hand_on_a_master_and_on_a_vlan(make_lan, make_tagged_lan, make_netns,
                                                                           ipam_dir, tmp_path):
    lan, tagged = make_lan("10.64"), make_tagged_lan("10.65")
    forward(lan.master)
    on_master = {"cniVersion": "1.0.0", "name": "proxied-64", "type": "ipvlan-ip", "master": lan.master,
                 "mode": "l3s", "proxyNeighbors": True, "ipam": static("10.64.0.40/24")}
    a, b, holder = make_netns(), make_netns(), make_netns()
    plain = tagged.conf(tmp_path / "plain", first=10, last=19, mode="l3s")
    add(plain, holder)                      # makes the VLAN link, which then forwards and knows its LAN
    link = vlan.link_name(tagged.master, 20)
    subprocess.run(["sysctl", "-qw", f"net/ipv4/conf/{link}/forwarding=1"], check=True)
    ip("route", "add", "10.65.0.0/24", "dev", link)
    on_vlan = tagged.conf(ipam_dir, first=40, last=49, mode="l3s", proxyNeighbors=True)
    for conf, ns, master in ((on_master, a, lan.master), (on_vlan, b, link)):
        result = add(conf, ns)
        address = result["ips"][0]["address"].split("/")[0]
        ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{ns}", container_id=ns))
        ip("neigh", "del", "proxy", address, "dev", master)
        drifted = call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{ns}", container_id=ns)
        assert drifted.code == 1 and drifted.out["code"] == 102, drifted.stdout
        assert f"no proxy neighbour entry for {address} on {master}" in drifted.out["details"]
        delete(conf, ns)
    delete(plain, holder)


@contextlib.contextmanager
def held_by_the_test(path: str):
    """The lock file of ours at `path`, held exclusively by the test meanwhile."""
    path = state.bounded(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield path


@pytest.mark.native
def test_status_does_not_wait_behind_a_burst_of_ipam_calls(master, tmp_path):
    """A burst of ADDs holds the network's IPAM turn; STATUS, which only reads, answers beside it
    (a STATUS answering 11 reads as NetworkReady=false to containerd)."""
    conf = {"cniVersion": "1.1.0", "name": "turn-status", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "test-ipam", "record": str(tmp_path / "calls")}}
    with held_by_the_test(ipam.turn_path("turn-status")):
        reply = call_plugin("STATUS", conf, container_id="", ifname="", env={"IPVLAN_IP_TIMEOUT": "1"})
    assert reply.code == 0, reply.stdout
    assert [json.loads(line)["command"] for line in (tmp_path / "calls").read_text().splitlines()] == ["STATUS"]


@pytest.mark.native
def test_gc_of_a_config_whose_name_is_refused_collects_no_unnamed_networks_records(master):
    """An unnamed (0.x) network's attachment: a GC whose name the schema refuses is not that network's."""
    record = Path(host_access.record_path("", "kept59", "eth0"))
    state.State().save_record(str(record), {"master": master, "link": host_access.link_name(master),
                                             "routes": [], "neighbours": []})
    try:
        conf = {"cniVersion": "1.1.0", "name": "no such name!", "type": "ipvlan-ip", "master": master,
                "cni.dev/valid-attachments": []}
        ok(call_plugin("GC", conf, container_id="", ifname=""))
        assert record.exists()
    finally:
        record.unlink(missing_ok=True)


@pytest.mark.native
def test_an_ip_the_plugin_starts_holds_its_locks_until_it_ends(tmp_path):
    """Killed halfway (a runtime's timeout kills the plugin alone), the plugin leaves its `ip` running:
    that `ip` still holds the lock, so a DEL cannot clean up before it has added what it adds."""
    lock, started, done = tmp_path / "locks" / "proxy-test.lock", tmp_path / "started", tmp_path / "done"
    script = f"""
from ipvlan_ip.commands import Command
from ipvlan_ip.node.runner import Runner
run = Runner()
with run.exclusive({str(lock)!r}, create=True):
    run.run(Command("an ip that outlives the plugin", ("sh", "-c", "touch {started}; sleep 3; touch {done}")))
"""
    plugin = subprocess.Popen([sys.executable, "-c", script])
    subprocess.run(["sh", "-c", f"until [ -e {started} ]; do sleep 0.05; done"], timeout=60, check=True)
    plugin.send_signal(signal.SIGKILL)      # as a runtime's timeout does: the plugin alone
    plugin.wait()
    with open(lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX)     # a DEL taking the lock: only once the child is done
        assert done.exists()
