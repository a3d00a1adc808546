"""The plugin as a runtime drives it, against a real kernel and Debian's
host-local IPAM: every assertion reads the kernel or host-local's files."""

import json
import subprocess

import pytest

from ..conftest import SYSTEM_PATH
from .conftest import call_plugin, ip, ipj, reservations

ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def host_local(ipam_dir, subnet="10.10.0.0/24", gateway="10.10.0.1", **extra) -> dict:
    return {"type": "host-local", "subnet": subnet, "gateway": gateway, "dataDir": str(ipam_dir), **extra}


def netconf(master, ipam_dir, version="1.0.0", **extra) -> dict:
    conf = {"cniVersion": version, "name": "testnet", "type": "ipvlan-ip", "master": master,
            "ipam": host_local(ipam_dir, routes=[{"dst": "0.0.0.0/0"}])}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


def link_in(ns: str, name: str = "eth0") -> dict:
    [link] = ipj("-d", "link", "show", "dev", name, ns=ns)
    return link


def addresses_in(ns: str, name: str = "eth0") -> set[str]:
    [info] = ipj("address", "show", "dev", name, ns=ns)
    return {f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["scope"] == "global"}


def links_in(ns: str) -> list[str]:
    return [link["ifname"] for link in ipj("link", "show", ns=ns)]


def ok(reply):
    assert reply.code == 0, f"plugin failed: {reply.stdout} {reply.stderr}"
    return reply.out


def held(ipam_dir, record) -> list[str]:
    """Addresses still reserved: host-local's files, or what test-ipam was told."""
    if not record.exists():
        return reservations(ipam_dir)
    calls = [json.loads(line)["command"] for line in record.read_text().splitlines()]
    return ["10.10.0.77"] if calls.count("ADD") > calls.count("DEL") else []


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_lifecycle_in_every_version(version, master, netns, ipam_dir, tmp_path):
    conf = netconf(master, ipam_dir, version)
    record = tmp_path / "calls"
    if version == "1.1.0":  # Debian's host-local stops at 1.0.0
        conf["ipam"] = {"type": "test-ipam", "record": str(record), "result": {
            "cniVersion": "1.1.0", "ips": [{"address": "10.10.0.77/24", "gateway": "10.10.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}]}}
    path = f"/run/netns/{netns}"
    result = ok(call_plugin("ADD", conf, path))

    link = link_in(netns)
    assert link["linkinfo"]["info_kind"] == "ipvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "l2"
    assert "UP" in link["flags"]
    [address] = addresses_in(netns)
    assert address.startswith("10.10.0.") and address.endswith("/24")
    assert ipj("route", "show", "default", ns=netns)[0]["gateway"] == "10.10.0.1"
    assert held(ipam_dir, record) == [address.split("/")[0]]

    assert result["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert result["ip4"] == {"ip": address, "gateway": "10.10.0.1", "routes": [{"dst": "0.0.0.0/0"}]}
        assert "interfaces" not in result
    else:
        assert result["interfaces"] == [{"name": "eth0", "mac": link["address"], "sandbox": path}]
        ip_entry = {"address": address, "gateway": "10.10.0.1", "interface": 0}
        if version.startswith("0.3") or version == "0.4.0":
            ip_entry["version"] = "4"
        assert result["ips"] == [ip_entry]
        assert result["routes"] == [{"dst": "0.0.0.0/0"}]

    if version >= "0.4.0":
        assert ok(call_plugin("CHECK", {**conf, "prevResult": result}, path)) is None

    del_conf = {**conf, "prevResult": result} if version >= "0.3.0" else conf
    assert ok(call_plugin("DEL", del_conf, path)) is None
    assert "eth0" not in links_in(netns)
    assert held(ipam_dir, record) == []


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
def test_modes_and_mtu(mode, master, netns, ipam_dir):
    result = ok(call_plugin("ADD", netconf(master, ipam_dir, mode=mode, mtu=1280), f"/run/netns/{netns}"))
    link = link_in(netns)
    assert link["linkinfo"]["info_data"]["mode"] == mode
    assert link["mtu"] == 1280
    assert result["interfaces"][0]["mac"] == link["address"]


def test_dual_stack_with_routes(master, netns, ipam_dir):
    conf = netconf(master, ipam_dir, "1.0.0", ipam={
        "type": "host-local", "dataDir": str(ipam_dir),
        "ranges": [[{"subnet": "10.20.0.0/24", "gateway": "10.20.0.1"}],
                   [{"subnet": "fd20::/64", "gateway": "fd20::1"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "192.168.50.0/24", "gw": "10.20.0.254"}]})
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}"))
    got = addresses_in(netns)
    assert {ipc["address"] for ipc in result["ips"]} == got
    assert {a.split("/")[0][:5] for a in got} == {"10.20", "fd20:"}
    routes4 = ipj("-4", "route", "show", ns=netns)
    assert {"dst": "default", "gateway": "10.20.0.1"}.items() <= routes4[0].items() or \
        any(r["dst"] == "default" and r.get("gateway") == "10.20.0.1" for r in routes4)
    assert any(r["dst"] == "192.168.50.0/24" and r.get("gateway") == "10.20.0.254" for r in routes4)
    assert any(r["dst"] == "default" and r.get("gateway") == "fd20::1" for r in ipj("-6", "route", "show", ns=netns))
    assert ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{netns}")) is None
    ok(call_plugin("DEL", {**conf, "prevResult": result}, f"/run/netns/{netns}"))
    assert reservations(ipam_dir) == []


def test_two_containers_ping_each_other(master, make_netns, ipam_dir):
    a, b = make_netns(), make_netns()
    conf = netconf(master, ipam_dir)
    ra = ok(call_plugin("ADD", conf, f"/run/netns/{a}", container_id="ca"))
    rb = ok(call_plugin("ADD", conf, f"/run/netns/{b}", container_id="cb"))
    addr_b = rb["ips"][0]["address"].split("/")[0]
    assert ra["ips"][0]["address"] != rb["ips"][0]["address"]
    done = subprocess.run(["ip", "netns", "exec", a, "ping", "-c", "2", "-W", "2", addr_b],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_master_from_ipam_single_interface(master, netns, tmp_path):
    record = tmp_path / "calls"
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": master}],
              "ips": [{"address": "10.30.0.5/24", "gateway": "10.30.0.1"}]}
    conf = {"cniVersion": "1.0.0", "name": "ipamnet", "type": "ipvlan-ip", "master": "ipam",
            "ipam": {"type": "test-ipam", "result": result, "record": str(record)}}
    out = ok(call_plugin("ADD", conf, f"/run/netns/{netns}"))
    link = link_in(netns)
    assert link["link_index"] == ipj("link", "show", "dev", master)[0]["ifindex"]
    assert addresses_in(netns) == {"10.30.0.5/24"}
    assert out["ips"] == [{"address": "10.30.0.5/24", "gateway": "10.30.0.1", "interface": 0}]


@pytest.mark.native
@pytest.mark.parametrize("count", [0, 2])
def test_master_from_ipam_needs_exactly_one_interface(count, master, netns, tmp_path):
    record = tmp_path / "calls"
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": master}] * count,
              "ips": [{"address": "10.30.0.5/24"}]}
    conf = {"cniVersion": "1.0.0", "name": "ipamnet", "type": "ipvlan-ip", "master": "ipam",
            "ipam": {"type": "test-ipam", "result": result, "record": str(record)}}
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}")
    assert reply.code != 0 and reply.out["code"] == 103
    assert f"named {count}" in reply.out["details"]
    calls = [json.loads(line)["command"] for line in record.read_text().splitlines()]
    assert calls == ["ADD", "DEL"]            # the allocation was released
    assert links_in(netns) == ["lo"]


def test_master_defaults_to_the_default_route_interface(netns, make_master, ipam_dir):
    # In the container's own netns (linkInContainer), so the host's routes stay untouched.
    m = make_master(ns=netns)
    ip("address", "add", "10.40.0.2/24", "dev", m, ns=netns)
    ip("route", "add", "default", "via", "10.40.0.1", ns=netns)
    conf = netconf(None, ipam_dir, linkInContainer=True,
                   ipam=host_local(ipam_dir, subnet="10.40.0.0/24", gateway="10.40.0.1"))
    ok(call_plugin("ADD", conf, f"/run/netns/{netns}", ifname="net1"))
    assert link_in(netns, "net1")["link"] == m


def test_master_defaults_to_the_host_default_route_interface(master, netns, ipam_dir):
    routes = ipj("route", "show", "default")
    if routes:
        expected = routes[0]["dev"]
    else:  # the test VM has no default route: give it one
        ip("address", "add", "10.41.0.2/24", "dev", master)
        ip("route", "add", "default", "via", "10.41.0.1")
        expected = master
    try:
        ok(call_plugin("ADD", netconf(None, ipam_dir), f"/run/netns/{netns}"))
        assert link_in(netns)["link_index"] == ipj("link", "show", "dev", expected)[0]["ifindex"]
    finally:
        if not routes:
            ip("route", "del", "default", check=False)


def test_chained_master_and_addresses_from_prev_result(master, netns):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": master}],
            "ips": [{"address": "10.50.0.9/24", "gateway": "10.50.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}]}
    conf = {"cniVersion": "1.0.0", "name": "chain", "type": "ipvlan-ip", "prevResult": prev}
    out = ok(call_plugin("ADD", conf, f"/run/netns/{netns}"))
    assert addresses_in(netns) == {"10.50.0.9/24"}
    assert link_in(netns)["link_index"] == ipj("link", "show", "dev", master)[0]["ifindex"]
    assert out["interfaces"] == [{"name": "eth0", "mac": link_in(netns)["address"], "sandbox": f"/run/netns/{netns}"}]


def test_link_in_container(netns, make_master, ipam_dir):
    m = make_master(ns=netns)
    conf = netconf(m, ipam_dir, linkInContainer=True)
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", ifname="net1"))
    assert link_in(netns, "net1")["link"] == m
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{netns}", ifname="net1"))
    ok(call_plugin("DEL", {**conf, "prevResult": result}, f"/run/netns/{netns}", ifname="net1"))
    assert "net1" not in links_in(netns)


def test_netns_given_as_proc_path(master, ipam_dir):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        path = None
        for _ in range(50):  # wait until unshare has exec'd sleep in the new netns
            import os
            import time
            if os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                path = f"/proc/{holder.pid}/ns/net"
                break
            time.sleep(0.1)
        assert path
        conf = netconf(master, ipam_dir)
        result = ok(call_plugin("ADD", conf, path))
        links = json.loads(subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "-d", "link", "show", "dev", "eth0"],
                                          capture_output=True, text=True, check=True).stdout)
        assert links[0]["linkinfo"]["info_kind"] == "ipvlan"
        assert result["interfaces"][0]["sandbox"] == path
        ok(call_plugin("CHECK", {**conf, "prevResult": result}, path))
        ok(call_plugin("DEL", {**conf, "prevResult": result}, path))
        assert reservations(ipam_dir) == []
    finally:
        holder.kill()


def test_del_is_idempotent_and_survives_missing_netns(master, make_netns, ipam_dir):
    ns = make_netns()
    conf = netconf(master, ipam_dir)
    ok(call_plugin("ADD", conf, f"/run/netns/{ns}"))
    ok(call_plugin("DEL", conf, f"/run/netns/{ns}"))
    ok(call_plugin("DEL", conf, f"/run/netns/{ns}"))           # twice
    ok(call_plugin("ADD", conf, f"/run/netns/{ns}"))
    ip("netns", "del", ns)
    ok(call_plugin("DEL", conf, f"/run/netns/{ns}"))           # netns gone
    assert reservations(ipam_dir) == []
    ok(call_plugin("DEL", conf, ""))                           # no netns at all


@pytest.mark.native
def test_master_missing_after_ipam_leaves_no_reservation(netns, tmp_path):
    record = tmp_path / "calls"
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "nosuchdev0"}], "ips": [{"address": "10.30.0.5/24"}]}
    conf = {"cniVersion": "1.0.0", "name": "ipamnet", "type": "ipvlan-ip", "master": "ipam",
            "ipam": {"type": "test-ipam", "result": result, "record": str(record)}}
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}")
    assert reply.out["code"] == 103 and "nosuchdev0" in reply.out["details"]
    assert [json.loads(line)["command"] for line in record.read_text().splitlines()] == ["ADD", "DEL"]


@pytest.mark.native
def test_missing_master_fails_before_ipam(netns, ipam_dir):
    reply = call_plugin("ADD", netconf("nosuchdev0", ipam_dir), f"/run/netns/{netns}")
    assert reply.code == 1 and reply.out["code"] == 103
    assert "failed to lookup master 'nosuchdev0'" in reply.out["details"]
    assert reservations(ipam_dir) == []


@pytest.mark.parametrize("drift", ["address", "route", "mode"])
def test_check_detects_drift(drift, master, netns, ipam_dir):
    conf = netconf(master, ipam_dir)
    path = f"/run/netns/{netns}"
    result = ok(call_plugin("ADD", conf, path))
    if drift == "address":
        ip("address", "del", result["ips"][0]["address"], "dev", "eth0", ns=netns)
    elif drift == "route":
        ip("route", "del", "default", ns=netns)
    else:
        conf = {**conf, "mode": "l3"}
    reply = call_plugin("CHECK", {**conf, "prevResult": result}, path)
    assert reply.code != 0 and reply.out["code"] == 102
    assert {"address": "address", "route": "route to 0.0.0.0/0", "mode": "mode"}[drift] in reply.out["details"]


def test_error_codes(master, netns, ipam_dir):
    path = f"/run/netns/{netns}"
    conf = netconf(master, ipam_dir)
    assert call_plugin("ADD", conf, path, env={"CNI_IFNAME": None}).out["code"] == 4
    assert call_plugin("ADD", conf, path, ifname="a/b").out["code"] == 4
    assert call_plugin("ADD", conf, path, ifname="x" * 16).out["code"] == 4
    assert call_plugin("BOGUS", conf, path).out["code"] == 4
    assert call_plugin("ADD", b"{not json", path).out["code"] == 6
    assert call_plugin("ADD", {**conf, "mode": "l4"}, path).out["code"] == 7
    assert call_plugin("ADD", {**conf, "mtu": "1500"}, path).out["code"] == 7
    assert call_plugin("ADD", {**conf, "cniVersion": "9.0.0"}, path).out["code"] == 1
    assert call_plugin("CHECK", {**conf, "cniVersion": "0.3.1", "prevResult": {}}, path).out["code"] == 1
    failing = {**conf, "ipam": {"type": "test-ipam", "fail": {"ADD": {"code": 11, "msg": "busy"}}}}
    reply = call_plugin("ADD", failing, path)
    assert reply.code == 1 and reply.out["code"] == 11       # IPAM's own code passes through
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    assert "Traceback" not in reply.stderr


@pytest.mark.parametrize("master_name, ifname", [("-n", "dev"), ("help;1", "a;b'c"), ("netns", "type")])
def test_names_that_look_like_options_or_keywords_stay_names(master_name, ifname, netns, ipam_dir):
    # In the container's netns (linkInContainer), so odd names never touch the host.
    ip("link", "add", "name", master_name, "type", "veth", "peer", "name", "oddpeer", ns=netns)
    ip("link", "set", "dev", master_name, "up", ns=netns)
    conf = netconf(master_name, ipam_dir, linkInContainer=True)
    path = f"/run/netns/{netns}"
    result = ok(call_plugin("ADD", conf, path, ifname=ifname))
    assert link_in(netns, ifname)["link"] == master_name
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, path, ifname=ifname))
    ok(call_plugin("DEL", {**conf, "prevResult": result}, path, ifname=ifname))
    assert ifname not in links_in(netns) and reservations(ipam_dir) == []


def test_ipam_that_never_answers_is_killed_and_released(master, netns, tmp_path):
    record = tmp_path / "calls"
    conf = {"cniVersion": "1.0.0", "name": "slow", "type": "ipvlan-ip", "master": master, "timeout": 6,
            "ipam": {"type": "test-ipam", "record": str(record), "sleep": {"ADD": 600}, "result": {}}}
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}")
    assert reply.code == 1 and reply.out["code"] == 11 and "killed" in reply.out["details"]
    assert [json.loads(line)["command"] for line in record.read_text().splitlines()] == ["ADD", "DEL"]
    assert links_in(netns) == ["lo"]


def test_del_after_a_crash_between_create_and_rename_removes_everything(master, netns, ipam_dir, tmp_path):
    # A host-local first in CNI_PATH that SIGKILLs the plugin once the address
    # is reserved: the link created under its temporary name, not yet renamed.
    wrapper = tmp_path / "plugins" / "host-local"
    wrapper.parent.mkdir()
    wrapper.write_text('#!/bin/sh\n/usr/lib/cni/host-local; rc=$?\n[ "$CNI_COMMAND" = ADD ] && kill -9 $PPID\n'
                       'exit $rc\n')
    wrapper.chmod(0o755)
    conf = netconf(master, ipam_dir)
    path = f"/run/netns/{netns}"
    crashed = call_plugin("ADD", conf, path, env={"CNI_PATH": f"{wrapper.parent}:/usr/lib/cni"})
    assert crashed.code == -9
    assert [name for name in links_in(netns) if name.startswith("ipvl")] and reservations(ipam_dir)  # the mess is real

    ok(call_plugin("DEL", conf, path))
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    ok(call_plugin("ADD", conf, path))
    assert link_in(netns)["linkinfo"]["info_kind"] == "ipvlan"


def test_successful_add_check_del_stay_within_the_import_budget(master, netns, ipam_dir, tmp_path):
    from ..unit.test_import_budget import modules_loaded, over_budget
    conf, path = netconf(master, ipam_dir), f"/run/netns/{netns}"
    env = {"PATH": SYSTEM_PATH, "CNI_CONTAINERID": "budget", "CNI_NETNS": path,
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
    loaded = modules_loaded(tmp_path, tmp_path / "add", {**env, "CNI_COMMAND": "ADD"}, json.dumps(conf).encode())
    assert link_in(netns)["linkinfo"]["info_kind"] == "ipvlan"      # it did succeed
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": link_in(netns)["address"],
                                                     "sandbox": path}],
              "ips": [{"address": sorted(addresses_in(netns))[0], "gateway": "10.10.0.1", "interface": 0}],
              "routes": [{"dst": "0.0.0.0/0"}]}
    with_prev = json.dumps({**conf, "prevResult": result}).encode()
    loaded |= modules_loaded(tmp_path, tmp_path / "check", {**env, "CNI_COMMAND": "CHECK"}, with_prev)
    assert ok(call_plugin("CHECK", {**conf, "prevResult": result}, path, container_id="budget")) is None
    loaded |= modules_loaded(tmp_path, tmp_path / "del", {**env, "CNI_COMMAND": "DEL"}, with_prev)
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    assert over_budget(loaded) == []
