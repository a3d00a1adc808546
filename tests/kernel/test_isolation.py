"""No call harms another attachment, DEL always completes, CHECK is exact
(issue 31), against the real kernel. Each test sets up the state in which
the defect it names did harm, and reads the kernel (links, routes,
neighbour entries) and the IPAM files to show that it does no more."""

import json
from pathlib import Path

import pytest

from ipvlan_ip.capabilities import host_access

from ..unit.test_state import overlapping_shared_holders
from .conftest import call_plugin, ip, ipj, reservations, unique
from .test_host_access import conf_for, host_routes, pings
from .test_plugin import host_local, links_in, netconf, ok


def test_a_failed_host_access_add_leaves_the_other_containers_route(make_lan, make_netns, tmp_path):
    # Two hostAccess networks on one master whose ranges overlap: B is given A's address,
    # which the kernel refuses ("Address already assigned to an ipvlan device").
    lan = make_lan("10.120")
    a_conf, b_conf = (conf_for(lan, tmp_path / name, "l2") for name in ("ipam-a", "ipam-b"))
    a, b = make_netns(), make_netns()
    result = ok(call_plugin("ADD", a_conf, f"/run/netns/{a}", container_id=a))
    address = result["ips"][0]["address"].split("/")[0]

    refused = call_plugin("ADD", b_conf, f"/run/netns/{b}", container_id=b)
    assert refused.code == 1 and "already assigned" in refused.out["details"], refused.stdout
    assert "range of its own" in refused.out["msg"]                 # what to do
    assert links_in(b) == ["lo"] and reservations(tmp_path / "ipam-b") == []

    assert host_routes(lan.master) == [address]             # A's route is still A's
    assert pings(address), "the host lost its way to A"
    ok(call_plugin("CHECK", {**a_conf, "prevResult": result}, f"/run/netns/{a}", container_id=a))
    ok(call_plugin("DEL", a_conf, f"/run/netns/{a}", container_id=a))
    assert host_routes(lan.master) == []


def test_a_route_of_another_master_is_never_taken(make_lan, make_netns, tmp_path):
    # The same address on two masters (two LANs): the second ADD must not move
    # the first container's host route to its own master, and says why it fails.
    first, second = make_lan("10.122"), make_lan("10.124")
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.126.0.5/24"}]}
    confs = [conf_for(lan, tmp_path, "l3", ipam={"type": "test-ipam", "result": result}) for lan in (first, second)]
    a, b = make_netns(), make_netns()
    ok(call_plugin("ADD", confs[0], f"/run/netns/{a}", container_id=a))
    refused = call_plugin("ADD", confs[1], f"/run/netns/{b}", container_id=b)
    assert refused.code == 1 and "already has a route to 10.126.0.5/32" in refused.out["details"], refused.stdout
    assert links_in(b) == ["lo"]
    assert host_routes(first.master) == ["10.126.0.5"] and host_routes(second.master) == []
    ok(call_plugin("DEL", confs[0], f"/run/netns/{a}", container_id=a))


def test_a_stale_route_of_the_same_link_is_taken_over_and_kept_from_its_old_record(make_lan, make_netns, tmp_path):
    # A container vanished without DEL (its netns deleted), and its address was given again:
    # the new container takes the route over, and the old record's GC leaves it alone.
    lan = make_lan("10.128")
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.128.0.50/24"}]}
    conf = conf_for(lan, tmp_path, "l2", ipam={"type": "test-ipam", "result": result})
    old, new = make_netns(), make_netns()
    ok(call_plugin("ADD", conf, f"/run/netns/{old}", container_id=old))
    ip("netns", "del", old)
    ok(call_plugin("ADD", conf, f"/run/netns/{new}", container_id=new))
    assert host_routes(lan.master) == ["10.128.0.50"] and pings("10.128.0.50")
    gc = {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": new, "ifname": "eth0"}]}
    ok(call_plugin("GC", gc, "", ifname=None, container_id=None))
    assert host_routes(lan.master) == ["10.128.0.50"] and pings("10.128.0.50")
    ok(call_plugin("DEL", conf, f"/run/netns/{new}", container_id=new))
    assert host_routes(lan.master) == []


REFUSED_BY_ADD = {
    "dhcp in l3": {"mode": "l3", "ipam": {"type": "dhcp"}},
    "hostAccess with flag private": {"hostAccess": True, "flag": "private"},
    "hostAccess with linkInContainer": {"hostAccess": True, "linkInContainer": True},
    "a master holding '#'": {"master": "eth#0"},
    "an unknown mode": {"mode": "l4"},
    "a wrong type": {"mtu": "1500"},
}


@pytest.mark.parametrize("edit", [pytest.param(edit, marks=pytest.mark.native) if "ipam" in settings else edit
                                  for edit, settings in sorted(REFUSED_BY_ADD.items())])
def test_del_completes_for_a_config_that_add_refuses(edit, master, netns, ipam_dir):
    conf = netconf(master, ipam_dir)
    refused = {**conf, **REFUSED_BY_ADD[edit]}
    # An ADD with it is refused and makes nothing; its DEL succeeds.
    reply = call_plugin("ADD", refused, f"/run/netns/{netns}", container_id="r")
    assert reply.code == 1 and reply.out["code"] == 7, reply.stdout
    ok(call_plugin("DEL", refused, f"/run/netns/{netns}", container_id="r"))
    if "ipam" in REFUSED_BY_ADD[edit]:
        return
    # A config edited into it after an ADD: DEL removes the link and releases the address.
    ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="e"))
    assert reservations(ipam_dir) != []
    ok(call_plugin("DEL", refused, f"/run/netns/{netns}", container_id="e"))
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []


@pytest.mark.native
@pytest.mark.parametrize("ifname", ["net%d", "eth0\\", "e%s0"])
def test_names_the_kernel_or_iproute2_reads_specially_are_refused_and_leave_nothing(ifname, master, netns, ipam_dir):
    conf = netconf(master, ipam_dir)
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}", ifname=ifname, container_id="odd")
    assert reply.code == 1 and reply.out["code"] == 4, reply.stdout
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", ifname=ifname, container_id="odd"))


def test_del_removes_the_link_and_host_routes_before_releasing_the_address(make_lan, netns, tmp_path):
    lan = make_lan("10.130")
    record = tmp_path / "calls"
    observe = [["ip", "-n", netns, "-j", "link", "show"],
               ["ip", "-j", "route", "show", "dev", host_access.link_name(lan.master)]]
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.130.0.60/24"}]}
    conf = conf_for(lan, tmp_path, "l2", ipam={"type": "test-ipam", "result": result, "record": str(record),
                                               "observe": {"DEL": observe}})
    ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="c"))
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id="c"))
    [released] = [call for call in map(json.loads, record.read_text().splitlines()) if call["command"] == "DEL"]
    links, routes = (json.loads(o["stdout"] or "[]") for o in released["observed"])
    assert [link["ifname"] for link in links] == ["lo"], "the address was released while the link had it"
    assert routes == [], "the address was released while the host still routed it to the old container"


def test_an_ifname_ending_in_tmp_is_an_attachment_for_gc(make_lan, netns, ipam_dir):
    lan = make_lan("10.132")
    conf = conf_for(lan, ipam_dir, "l2")
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", ifname="eth0.tmp", container_id="c"))
    address = result["ips"][0]["address"].split("/")[0]
    # Debian's host-local (1.1.1) knows no GC: the scriptable plugin answers it.
    gc = {**conf, "cniVersion": "1.1.0", "ipam": {"type": "test-ipam"},
          "cni.dev/valid-attachments": [{"containerID": "c", "ifname": "eth0.tmp"}]}
    ok(call_plugin("GC", gc, "", ifname=None, container_id=None))
    assert host_routes(lan.master) == [address] and pings(address), "GC took the host link of a live container"
    ok(call_plugin("GC", {**gc, "cni.dev/valid-attachments": []}, "", ifname=None, container_id=None))
    assert host_routes(lan.master) == []
    assert host_access.link_name(lan.master) not in [link["ifname"] for link in ipj("link", "show")]
    assert not Path(host_access.record_path(conf["name"], "c", "eth0.tmp")).exists()
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", ifname="eth0.tmp", container_id="c"))
    assert reservations(ipam_dir) == []


def test_an_add_that_must_make_the_host_link_is_not_starved_by_shared_holders(make_lan, netns, ipam_dir):
    # ADDs that find the host's link hold the master's lock shared, overlapping one another;
    # an ADD that must make the link (or a GC that removes it) holds it exclusively, and got it
    # only once they all stopped. Here they never stop by themselves.
    lan = make_lan("10.134")
    lock = host_access.lock_path(host_access.link_name(lan.master))
    conf = conf_for(lan, ipam_dir, "l2")
    with overlapping_shared_holders(lock, hold=0.3):
        reply = call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="c", env={"IPVLAN_IP_TIMEOUT": "20"})
    result = ok(reply)
    assert host_routes(lan.master) == [result["ips"][0]["address"].split("/")[0]]
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id="c"))


def test_gc_does_all_it_can_whatever_the_config_says_now(make_lan, make_netns, tmp_path):
    lan = make_lan("10.136")
    record = tmp_path / "calls"
    name = unique("gcnet-")
    for n in (70, 71):
        result = {"cniVersion": "1.0.0", "ips": [{"address": f"10.136.0.{n}/24"}]}
        ns = make_netns()
        ok(call_plugin("ADD", conf_for(lan, tmp_path, "l2", name=name, ipam={"type": "test-ipam", "result": result}),
                       f"/run/netns/{ns}", container_id=ns))
    assert host_routes(lan.master) == ["10.136.0.70", "10.136.0.71"]
    # A list GC cannot read would make every attachment look stale: refused before anything is collected.
    for unreadable in ("c1", [{"containerID": 7}]):
        refused = {**conf_for(lan, tmp_path, "l2", name=name), "cniVersion": "1.1.0", "cni.dev/valid-attachments":
                   unreadable, "ipam": {"type": "test-ipam", "record": str(record)}}
        reply = call_plugin("GC", refused, "", ifname=None, container_id=None)
        assert reply.code == 1 and reply.out["code"] == 7, reply.stdout
        assert host_routes(lan.master) == ["10.136.0.70", "10.136.0.71"] and not record.exists()
    # hostAccess switched off since, and the IPAM plugin's GC fails.
    gc = {**conf_for(lan, tmp_path, "l2", name=name), "cniVersion": "1.1.0", "hostAccess": False,
          "ipam": {"type": "test-ipam", "record": str(record), "fail": {"GC": {"code": 11, "msg": "busy"}},
                   "observe": {"GC": [["ip", "-j", "route", "show", "dev", host_access.link_name(lan.master)]]}},
          "cni.dev/valid-attachments": []}
    reply = call_plugin("GC", gc, "", ifname=None, container_id=None)
    assert reply.code == 1 and reply.out["code"] == 11 and "busy" in reply.out["details"], reply.stdout
    assert host_routes(lan.master) == []
    assert host_access.link_name(lan.master) not in [link["ifname"] for link in ipj("link", "show")]
    [asked] = [json.loads(line) for line in record.read_text().splitlines()]
    assert asked["observed"][0]["exit"] != 0, "IPAM's GC ran while the host still routed the addresses"


def test_check_matches_routes_by_family_device_and_table(master, netns, tmp_path):
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.138.0.5/24"}, {"address": "fd38::5/64"}],
              "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "10.139.0.0/24"}]}
    conf = netconf(master, tmp_path, ipam={"type": "test-ipam", "result": result})
    prev = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="c"))
    check = {**conf, "prevResult": prev}
    ok(call_plugin("CHECK", check, f"/run/netns/{netns}", container_id="c"))

    # The IPv4 default without a gateway is gone; the IPv6 one, also without, is no stand-in.
    ip("route", "del", "default", "dev", "eth0", ns=netns)
    drifted = call_plugin("CHECK", check, f"/run/netns/{netns}", container_id="c")
    assert drifted.code == 1 and "route to 0.0.0.0/0" in drifted.out["details"], drifted.stdout
    ip("route", "add", "default", "dev", "eth0", ns=netns)

    # A route of the same destination through another device, or in another table, is not ours.
    ip("route", "del", "10.139.0.0/24", "dev", "eth0", ns=netns)
    ip("route", "add", "10.139.0.0/24", "dev", "lo", ns=netns)
    ip("route", "add", "10.139.0.0/24", "dev", "eth0", "table", "7", ns=netns)
    drifted = call_plugin("CHECK", check, f"/run/netns/{netns}", container_id="c")
    assert drifted.code == 1 and "route to 10.139.0.0/24" in drifted.out["details"], drifted.stdout
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id="c"))


@pytest.mark.parametrize("side", ["host", "container"])
def test_check_reads_the_neighbour_entries_host_access_needs_in_l2(side, make_lan, netns, ipam_dir):
    net = "10.140" if side == "host" else "10.142"
    lan = make_lan(net)
    # A subnet without the host's address: the container then has a route and a neighbour entry for it.
    subnet = f"{net.split('.')[0]}.{int(net.split('.')[1]) + 1}"
    conf = conf_for(lan, ipam_dir, "l2", ipam=host_local(ipam_dir, subnet=f"{subnet}.0.0/24", gateway=f"{subnet}.0.1"))
    prev = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="c"))
    address = prev["ips"][0]["address"].split("/")[0]
    ok(call_plugin("CHECK", {**conf, "prevResult": prev}, f"/run/netns/{netns}", container_id="c"))
    if side == "host":
        ip("neigh", "del", address, "dev", host_access.link_name(lan.master))
    else:
        ip("neigh", "del", lan.host, "dev", "eth0", ns=netns)
    drifted = call_plugin("CHECK", {**conf, "prevResult": prev}, f"/run/netns/{netns}", container_id="c",
                          env={"IPVLAN_IP_DEBUG": "1"})
    assert drifted.code == 1 and "neighbour entry" in drifted.out["details"], \
        drifted.stdout + drifted.stderr + str(ip("neigh", "show", ns=netns))
    # DEL completes with the host's entry already gone (`neigh del` made iproute2 exit mid-batch).
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}", container_id="c"))
    assert host_routes(lan.master) == []
