"""Networks, containers and plugins that share a master or a VLAN link never
harm each other (issue 39), against the real kernel. Each test builds the
sharing in which a call once did harm (two networks on one master, a
network beside the reference Go plugin, a network on a VLAN link another
one made), makes the call, and reads the kernel: the other attachment's
link, its mode and flag as the kernel reports them, the VLAN link, and the
IPAM files."""

from __future__ import annotations

import shutil

import pytest

from ipvlan_ip.capabilities import vlan

from .conftest import GO_PLUGINS, PLUGIN, call_plugin, ip, ipj, reservations
from .test_doctor import doctor, write
from .test_host_access import pings
from .test_plugin import addresses_in, host_local, link_in, links_in, netconf, ok


def settings(ns: str) -> tuple[str, str]:
    """The mode and flag the kernel reports for eth0 in `ns` (its master's: the port's)."""
    data = link_in(ns)["linkinfo"]["info_data"]
    return data["mode"], next(flag for flag in ("bridge", "private", "vepa") if data.get(flag))


def network(master: str, ipam_dir, name: str, octet: int, **extra) -> dict:
    """A network of its own name and subnet (10.OCTET.0.0/24) on `master`."""
    return netconf(master, ipam_dir, name=name,
                   ipam=host_local(ipam_dir, subnet=f"10.{octet}.0.0/24", gateway=f"10.{octet}.0.1"), **extra)


GO = {"type": "ipvlan"}     # the reference plugin, from Debian's containernetworking-plugins


@pytest.mark.parametrize("first, second", [
    ({"flag": "private"}, {}),              # an open network's first ADD once turned isolation off
    ({"mode": "l2"}, {"mode": "l3"}),       # an l3 network's ADD once turned l2 pods into l3
    ({**GO, "mode": "l3"}, {"mode": "l2"}),  # another plugin's links set the master's mode too
], ids=["flag", "mode", "go-plugin"])
def test_a_network_whose_mode_or_flag_differs_from_the_masters_is_refused_and_changes_nothing(
        first, second, master, make_netns, tmp_path):
    a_conf = network(master, tmp_path / "a", "first", 71, **first)
    b_conf = network(master, tmp_path / "b", "second", 72, **second)
    a1, a2, b = make_netns(), make_netns(), make_netns()
    plugin = f"{GO_PLUGINS}/ipvlan" if first.get("type") == "ipvlan" else PLUGIN
    results = [ok(call_plugin("ADD", a_conf, f"/run/netns/{ns}", container_id=ns, plugin=plugin)) for ns in (a1, a2)]
    before = settings(a1)

    refused = call_plugin("ADD", b_conf, f"/run/netns/{b}", container_id=b)
    assert refused.code == 1 and refused.out["code"] == 103, refused.stdout
    assert f"master {master!r} carries ipvlan links in mode {before[0]}, flag {before[1]}" in refused.out["details"]
    assert links_in(b) == ["lo"] and reservations(tmp_path / "b") == []
    assert settings(a1) == settings(a2) == before
    if before[1] == "private":
        address = results[1]["ips"][0]["address"].split("/")[0]
        assert not pings(address, ns=a1), "a private network's containers reach each other"
    ok(call_plugin("DEL", b_conf, f"/run/netns/{b}", container_id=b))
    assert settings(a1) == before

    # A network that asks for what the master carries goes ahead beside it.
    same = network(master, tmp_path / "c", "third", 73, **{k: v for k, v in first.items() if k != "type"})
    c = make_netns()
    ok(call_plugin("ADD", same, f"/run/netns/{c}", container_id=c))
    assert settings(c) == settings(a1) == before
    if plugin == PLUGIN:
        ok(call_plugin("CHECK", {**a_conf, "prevResult": results[0]}, f"/run/netns/{a1}", container_id=a1))
    for conf, ns, owner in ((same, c, PLUGIN), (a_conf, a1, plugin), (a_conf, a2, plugin)):
        ok(call_plugin("DEL", conf, f"/run/netns/{ns}", container_id=ns, plugin=owner))


def test_del_after_a_refused_add_leaves_the_other_networks_link(master, netns, tmp_path):
    # One container, two networks asking for the same interface name: the second ADD is refused,
    # and the runtime's DEL of it once deleted the first network's eth0 (same driver, same MAC).
    a_conf, b_conf = network(master, tmp_path / "a", "neta", 74), network(master, tmp_path / "b", "netb", 75)
    result = ok(call_plugin("ADD", a_conf, f"/run/netns/{netns}"))
    refused = call_plugin("ADD", b_conf, f"/run/netns/{netns}")
    assert refused.code == 1 and refused.out["code"] == 104, refused.stdout
    ok(call_plugin("DEL", b_conf, f"/run/netns/{netns}"))
    assert link_in(netns).get("ifalias") == "ipvlan-ip:neta"
    assert addresses_in(netns) == {result["ips"][0]["address"]}
    ok(call_plugin("CHECK", {**a_conf, "prevResult": result}, f"/run/netns/{netns}"))
    ok(call_plugin("DEL", a_conf, f"/run/netns/{netns}"))
    assert links_in(netns) == ["lo"] and reservations(tmp_path / "a") == []


def test_a_link_without_the_mark_as_earlier_versions_made_it_is_still_removed_by_del(master, netns, tmp_path):
    ip("link", "add", "link", master, "name", "eth0", "netns", netns, "type", "ipvlan", "mode", "l2")
    ok(call_plugin("DEL", netconf(master, tmp_path), f"/run/netns/{netns}"))
    assert links_in(netns) == ["lo"]


def collect_all(conf: dict) -> dict:
    """GC of `conf`'s network with no attachment valid (through test-ipam: Debian 12's host-local predates GC)."""
    return {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [], "ipam": {"type": "test-ipam"}}


def vlan_link(master: str) -> dict | None:
    found = [link for link in ipj("-d", "link", "show") if link["ifname"] == f"{master}.20"]
    return found[0] if found else None


@pytest.mark.parametrize("other", ["network", "address"])
def test_the_vlan_link_the_plugin_made_stays_while_anything_else_stands_on_it(other, master, make_netns, tmp_path):
    tagged = network(master, tmp_path / "v", "tagged", 76, vlan=20)
    v, d = make_netns(), make_netns()
    ok(call_plugin("ADD", tagged, f"/run/netns/{v}", container_id=v))
    direct = network(f"{master}.20", tmp_path / "d", "direct", 77)     # names the VLAN link as its master
    if other == "network":
        ok(call_plugin("ADD", direct, f"/run/netns/{d}", container_id=d))
    else:
        ip("address", "add", "10.78.0.2/24", "dev", f"{master}.20")

    ok(call_plugin("DEL", tagged, f"/run/netns/{v}", container_id=v))
    gc = collect_all(tagged)
    ok(call_plugin("GC", gc, "", ifname=None, container_id=None))
    assert vlan_link(master) is not None, f"{other} lost the VLAN link under it"
    assert vlan_link(master)["ifalias"] == vlan.MADE        # which a GC with nothing on it does remove:
    if other == "network":
        assert "eth0" in links_in(d)
        ok(call_plugin("DEL", direct, f"/run/netns/{d}", container_id=d))
    else:
        ip("address", "del", "10.78.0.2/24", "dev", f"{master}.20")
    ok(call_plugin("GC", gc, "", ifname=None, container_id=None))     # nothing stands on it now: it goes
    assert vlan_link(master) is None


def test_a_vlan_link_the_owner_makes_while_an_add_is_making_it_is_never_removed(master, netns, tmp_path):
    # The node's owner (NetworkManager, say) makes MASTER.20 between the ADD's look and its batch: an `ip`
    # before the real one makes it just then. The ADD fails on it; its rollback, DEL and GC must leave it.
    real = shutil.which("ip")
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "ip"
    wrapper.write_text(f"#!/bin/sh\ninput=$(mktemp); cat > \"$input\"\n"
                       f"if grep -q 'type vlan' \"$input\"; then {real} link add link {master} name {master}.20 "
                       f"type vlan id 20; fi\n{real} \"$@\" < \"$input\"; rc=$?; rm -f \"$input\"; exit $rc\n")
    wrapper.chmod(0o755)
    conf = network(master, tmp_path / "ipam", "raced", 79, vlan=20)
    path = {"PATH": f"{tmp_path / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
    refused = call_plugin("ADD", conf, f"/run/netns/{netns}", env=path)
    assert refused.code == 1 and "File exists" in refused.out["details"], refused.stdout
    owners = vlan_link(master)
    assert owners is not None, "the ADD's rollback removed the owner's VLAN link"
    assert links_in(netns) == ["lo"] and reservations(tmp_path / "ipam") == []
    ok(call_plugin("DEL", conf, f"/run/netns/{netns}"))
    ok(call_plugin("GC", collect_all(conf), "", ifname=None, container_id=None))
    assert vlan_link(master)["ifindex"] == owners["ifindex"]


def test_doctor_names_the_mode_and_flag_the_master_carries(master, netns, tmp_path):
    a_conf = network(master, tmp_path / "a", "carried", 70, flag="private")
    ok(call_plugin("ADD", a_conf, f"/run/netns/{netns}"))
    code, report = doctor(write(tmp_path, network(master, tmp_path / "b", "wanted", 69, mode="l3")))
    found = {f["check"]: f for f in report["configs"][0]["findings"]}
    assert code == 1 and found[f"port {master}"]["status"] == "failure", report
    assert f"{master} carries ipvlan links in mode l2, flag private now" in found[f"port {master}"]["text"]
    ok(call_plugin("DEL", a_conf, f"/run/netns/{netns}"))
