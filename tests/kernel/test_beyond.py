"""Past the reference plugin: mode flags, clear errors about the master,
STATUS and GC (spec 1.1.0)."""

import json

import pytest

from .conftest import call_plugin, ip, reservations
from .test_plugin import link_in, links_in, netconf, ok


@pytest.mark.parametrize("flag", ["bridge", "private", "vepa"])
def test_mode_flags_read_back_and_checked(flag, master, netns, ipam_dir):
    conf = netconf(master, ipam_dir, flag=flag)
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}"))
    assert link_in(netns)["linkinfo"]["info_data"].get(flag) is True
    other = "private" if flag != "private" else "vepa"
    reply = call_plugin("CHECK", {**conf, "flag": other, "prevResult": result}, f"/run/netns/{netns}")
    assert reply.out["code"] == 102 and other in reply.out["details"]


@pytest.mark.native
def test_mtu_above_the_masters_is_refused_before_anything_is_made(make_master, netns, ipam_dir):
    m = make_master(mtu=1400)
    reply = call_plugin("ADD", netconf(m, ipam_dir, mtu=1500), f"/run/netns/{netns}")
    assert reply.code == 1 and reply.out["code"] == 7 and "1400" in reply.out["details"]
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []


def test_master_down_is_named(master, netns, ipam_dir):
    """In the VM, with ipvlan: the link is made in the batch that reads the master, then taken back."""
    ip("link", "set", master, "down")
    reply = call_plugin("ADD", netconf(master, ipam_dir), f"/run/netns/{netns}")
    assert reply.out["code"] == 103 and "is down" in reply.out["details"]
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []


def test_master_with_macvlan_links_is_explained(master, netns, ipam_dir):
    ip("link", "add", "link", master, "name", master + "m", "type", "macvlan")
    try:
        reply = call_plugin("ADD", netconf(master, ipam_dir), f"/run/netns/{netns}")
        assert reply.out["code"] == 103 and "Device or resource busy" in reply.out["details"]   # the kernel's words
        assert "macvlan" in reply.out["msg"]                                                      # what to do
        assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    finally:
        ip("link", "del", master + "m", check=False)


def test_ipvlan_slave_as_master_is_refused(master, netns, ipam_dir):
    ip("link", "add", "link", master, "name", master + "i", "type", "ipvlan", "mode", "l2")
    ip("link", "set", master + "i", "up")
    try:
        reply = call_plugin("ADD", netconf(master + "i", ipam_dir), f"/run/netns/{netns}")
        assert reply.out["code"] == 103 and "itself an ipvlan link" in reply.out["details"]
    finally:
        ip("link", "del", master + "i", check=False)


@pytest.mark.native
def test_status_and_gc_reach_the_ipam_plugin(master, tmp_path):
    record = tmp_path / "calls"
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "test-ipam", "record": str(record)}}
    assert ok(call_plugin("STATUS", conf, container_id="", ifname="")) is None
    assert call_plugin("STATUS", {**conf, "master": "nosuchdev0"}, container_id="", ifname="").out["code"] == 50
    ip("link", "set", master, "down")       # ADD would refuse it, so STATUS says the plugin cannot serve one
    down = call_plugin("STATUS", conf, container_id="", ifname="")
    assert down.out["code"] == 50 and f"master {master!r} is down" in down.out["details"], down.stdout
    ip("link", "set", master, "up")
    failing = {**conf, "ipam": {**conf["ipam"], "fail": {"STATUS": {"code": 51, "msg": "pool gone"}}}}
    assert call_plugin("STATUS", failing, container_id="", ifname="").out["code"] == 51
    valid = [{"containerID": "c1", "ifname": "eth0"}]
    assert ok(call_plugin("GC", {**conf, "cni.dev/valid-attachments": valid}, container_id="", ifname="")) is None
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["command"] for c in calls] == ["STATUS", "STATUS", "STATUS", "STATUS", "GC"]
    assert calls[-1]["config"]["cni.dev/valid-attachments"] == valid
