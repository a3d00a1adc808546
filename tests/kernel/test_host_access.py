"""hostAccess against the kernel, in each mode: the host pings each container
and opens a TCP connection to a port served inside it (as the kubelet's probe
does); each container pings the host's address on the master and connects
to a TCP port of the host's; the containers still reach each other, and the
LAN (a netns on the master's veth peer) still reaches them. CHECK passes, GC
takes back what gone attachments left, a failed ADD leaves no host route, 32
ADDs at once make one host link, and after every DEL no host route is left.
A podman container on a hostAccess network answers the host's TCP connection."""

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ipvlan_ip.capabilities import host_access

from .conftest import Lan, call_plugin, ip, ipj, reservations, unique
from .runtimes import eth, ipv4
from .test_faults import failing_ip
from .test_plugin import addresses_in, host_local, link_in, ok


def conf_for(lan: Lan, ipam_dir: Path, mode: str, **extra) -> dict:
    """In l2 the containers are on the LAN's subnet; in l3 and l3s, where
    ipvlan links answer no ARP, on one of their own that the LAN routes
    through the host (as it must without hostAccess too)."""
    ipam = (host_local(ipam_dir, subnet=f"{lan.net}.0.0/24", gateway=lan.lan, rangeStart=f"{lan.net}.0.10")
            if mode == "l2" else
            host_local(ipam_dir, subnet=f"{lan.net}.1.0/24", gateway=f"{lan.net}.1.1", routes=[{"dst": "0.0.0.0/0"}]))
    # A network of the test's own: GC takes back whatever of its network is not valid, on any worker.
    return {"cniVersion": "1.0.0", "name": unique("hostnet-"), "type": "ipvlan-ip", "master": lan.master,
            "mode": mode, "hostAccess": True, "ipam": ipam, **extra}


def host_routes(master: str, version: int = 4) -> list[str]:
    """The routes to containers through the host's link (not the kernel's fe80::/64); none when
    the link is gone: GC, which another test may run meanwhile, removes a host link no one uses."""
    link = host_access.link_name(master)
    shown = str(ip("-j", f"-{version}", "route", "show", "dev", link, check=False))     # nothing when it is gone
    if not shown and link in [s["ifname"] for s in ipj("link", "show")]:
        raise AssertionError(f"ip route show dev {link} printed nothing")
    return sorted(r["dst"] for r in json.loads(shown or "[]") if not r["dst"].startswith("fe80:"))


def pings(target: str, ns: str | None = None) -> bool:
    argv = ["ping", "-c", "1", "-W", "3", target]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    return subprocess.run(argv, capture_output=True).returncode == 0


def inside(ns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv] if ns else argv


def tcp(server_ns: str | None, client_ns: str | None, address: str, port: int) -> str:
    """What a client gets from a TCP server that answers one connection."""
    server = subprocess.Popen(inside(server_ns, ["busybox", "nc", "-l", "-p", str(port), "-e", "echo", "hello"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return tcp_client(client_ns, address, port)
    finally:
        server.kill()
        server.wait()


def tcp_client(ns: str | None, address: str, port: int) -> str:
    """What the server at address:port says, trying until it listens (a probe's view)."""
    for _ in range(20):
        got = subprocess.run(inside(ns, ["busybox", "nc", "-w", "3", address, str(port)]),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if got.stdout.strip():
            return got.stdout.strip()
        time.sleep(0.5)
    return ""


@pytest.mark.parametrize("mode, net", [("l2", "10.90"), ("l3", "10.92"), ("l3s", "10.94")])
def test_the_host_and_its_containers_reach_each_other(mode, net, make_lan, make_netns, ipam_dir):
    lan = make_lan(net)
    conf = conf_for(lan, ipam_dir, mode)
    if mode != "l2":
        ip("route", "add", f"{lan.net}.1.0/24", "via", lan.host, ns=lan.ns)
    containers = [make_netns(), make_netns()]
    results = [ok(call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns)) for ns in containers]
    addresses = [r["ips"][0]["address"].split("/")[0] for r in results]
    link = link_in(containers[0])
    assert link["linkinfo"]["info_data"]["mode"] == mode
    host_link = link_in(None, host_access.link_name(lan.master))
    assert host_link["linkinfo"]["info_kind"] == "ipvlan" and host_link["linkinfo"]["info_data"]["mode"] == mode
    assert host_routes(lan.master) == sorted(addresses)

    for ns, address in zip(containers, addresses):
        assert pings(address), f"host -> {address} ({mode})"
        assert tcp(ns, None, address, 8080) == "hello", f"host -> {address}:8080 ({mode})"
        assert pings(lan.host, ns), f"{ns} -> host {lan.host} ({mode})"
        assert tcp(None, ns, lan.host, lan.port) == "hello", f"{ns} -> host {lan.host}:{lan.port} ({mode})"
    assert pings(addresses[1], containers[0]), f"container -> container ({mode})"
    assert pings(addresses[0], lan.ns), f"LAN -> container ({mode})"
    assert pings(lan.lan, containers[0]), f"container -> LAN ({mode})"

    for ns, result in zip(containers, results):
        ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{ns}", container_id=ns))
    for ns, result in zip(containers, results):
        ok(call_plugin("DEL", {**conf, "prevResult": result}, f"/run/netns/{ns}", container_id=ns))
    assert host_routes(lan.master) == [] and reservations(ipam_dir) == []
    # The host's link goes with its last container's DEL: idle, it would hold the master's mode against every
    # other network (issue 48), and runtimes rarely call GC.
    assert host_access.link_name(lan.master) not in [link["ifname"] for link in ipj("link", "show")]


@pytest.mark.parametrize("mode, net", [("l2", "10.106"), ("l3", "10.108")])
def test_dual_stack_the_host_and_a_container_reach_each_other(mode, net, make_lan, netns, ipam_dir):
    lan = make_lan(net)
    v6_host, v6_net = f"fd00:{net.split('.')[1]}::2", f"fd00:{net.split('.')[1]}::/64"
    ip("-6", "address", "add", f"{v6_host}/64", "dev", lan.master, "nodad")
    ipam = {"type": "host-local", "dataDir": str(ipam_dir),
            "ranges": [[{"subnet": f"{net}.0.0/24", "rangeStart": f"{net}.0.10"}],
                       [{"subnet": v6_net, "rangeStart": v6_host.replace("::2", "::10")}]]}
    conf = conf_for(lan, ipam_dir, mode, ipam=ipam)
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="c"))
    v4, v6 = sorted((a["address"].split("/")[0] for a in result["ips"]), key=lambda a: ":" in a)
    assert host_routes(lan.master, 6) == [v6]
    for target in (v4, v6):
        assert pings(target), f"host -> {target} ({mode})"
    for target in (lan.host, v6_host):
        assert pings(target, netns), f"container -> host {target} ({mode})"
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, f"/run/netns/{netns}", container_id="c"))
    ok(call_plugin("DEL", {**conf, "prevResult": result}, f"/run/netns/{netns}", container_id="c"))
    assert host_routes(lan.master) == [] and host_routes(lan.master, 6) == []


def test_a_container_outside_the_hosts_subnet_gets_a_route_to_it(make_lan, netns, ipam_dir):
    lan = make_lan("10.96")
    conf = conf_for(lan, ipam_dir, "l2", ipam=host_local(ipam_dir, subnet="10.97.0.0/24", gateway="10.97.0.1"))
    result = ok(call_plugin("ADD", conf, f"/run/netns/{netns}", container_id="c"))
    assert {"dst": f"{lan.host}/32"} in result["routes"]
    assert lan.host in [r["dst"] for r in ipj("route", "show", "dev", "eth0", ns=netns)]
    address = result["ips"][0]["address"].split("/")[0]
    assert pings(address) and pings(lan.host, netns)
    ok(call_plugin("DEL", {**conf, "prevResult": result}, f"/run/netns/{netns}", container_id="c"))
    assert host_routes(lan.master) == []


def test_a_container_in_the_hosts_subnet_needs_no_route_to_it(make_lan, netns, ipam_dir):
    lan = make_lan("10.98")
    result = ok(call_plugin("ADD", conf_for(lan, ipam_dir, "l2"), f"/run/netns/{netns}", container_id="c"))
    assert addresses_in(netns) == {result["ips"][0]["address"]}
    assert json.dumps(result["routes"]).count(lan.host) == 0
    ok(call_plugin("DEL", conf_for(lan, ipam_dir, "l2"), f"/run/netns/{netns}", container_id="c"))


def test_check_gc_and_rollback_keep_the_host_side_right(make_lan, make_netns, ipam_dir, tmp_path):
    lan = make_lan("10.100")
    conf = conf_for(lan, ipam_dir, "l2")
    link = host_access.link_name(lan.master)
    kept, gone = make_netns(), make_netns()
    results = {ns: ok(call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns)) for ns in (kept, gone)}
    address = {ns: r["ips"][0]["address"].split("/")[0] for ns, r in results.items()}

    # CHECK sees a host route gone.
    ip("route", "del", f"{address[kept]}/32", "dev", link)
    drifted = call_plugin("CHECK", {**conf, "prevResult": results[kept]}, f"/run/netns/{kept}", container_id=kept)
    assert drifted.code == 1 and drifted.out["code"] == 102 and "no route to" in drifted.out["details"]

    # GC: `gone` is not a valid attachment any more; its route goes, `kept`'s record stays.
    gc_conf = {**conf, "cniVersion": "1.1.0", "ipam": {"type": "test-ipam"},
               "cni.dev/valid-attachments": [{"containerID": kept, "ifname": "eth0"}]}
    ok(call_plugin("GC", gc_conf, "", ifname=None, container_id=None))
    assert address[gone] not in host_routes(lan.master)
    assert link_in(None, link)["linkinfo"]["info_kind"] == "ipvlan"     # still used

    # A failed ADD (its configuring `ip`, the third, fails) takes back its own host route, not the shared link.
    third = make_netns()
    failed = call_plugin("ADD", conf, f"/run/netns/{third}", container_id=third, env=failing_ip(tmp_path, call=3))
    assert failed.code == 1 and "injected failure of ip call 3" in failed.out["details"], failed.stdout
    assert host_routes(lan.master) == []                            # kept's was deleted by hand above
    assert "UP" in link_in(None, link)["flags"]

    ok(call_plugin("DEL", {**conf, "prevResult": results[kept]}, f"/run/netns/{kept}", container_id=kept))
    ok(call_plugin("DEL", conf, f"/run/netns/{gone}", container_id=gone))
    # The last DEL took the host's link (its record was the last to name it); GC finds nothing more.
    assert link not in [shown["ifname"] for shown in ipj("link", "show")]
    ok(call_plugin("GC", {**gc_conf, "cni.dev/valid-attachments": []}, "", ifname=None, container_id=None))
    assert reservations(ipam_dir) == []


def test_32_adds_at_once_make_one_host_link(make_lan, make_netns, ipam_dir):
    lan = make_lan("10.102")
    conf = conf_for(lan, ipam_dir, "l2")
    spaces = [make_netns() for _ in range(32)]
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda ns: call_plugin("ADD", conf, f"/run/netns/{ns}", container_id=ns), spaces))
    assert all(r.code == 0 for r in replies), [r.stdout for r in replies if r.code]
    on_master = [shown["ifname"] for shown in ipj("-d", "link", "show")
                 if shown.get("linkinfo", {}).get("info_kind") == "ipvlan" and shown.get("link") == lan.master]
    assert on_master == [host_access.link_name(lan.master)]
    assert len(host_routes(lan.master)) == 32
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda ns: ok(call_plugin("DEL", conf, f"/run/netns/{ns}", container_id=ns)), spaces))
    assert host_routes(lan.master) == [] and reservations(ipam_dir) == []


def test_a_podman_container_with_host_access_answers_the_host(podman, make_lan, tmp_path):
    lan = make_lan("10.104")
    net = podman.network(unique("ipv-host-"), lan.master, "10.105.0.0/24", tmp_path / "ipam", tuning=False,
                         hostAccess=True)
    serving = ("sh", "-c", "while true; do nc -l -p 8080 -e echo hello; done")
    container = podman.start(net, command=serving)
    address = ipv4(eth(container, "eth0"))
    assert address in host_routes(lan.master)
    assert tcp_client(None, address, 8080) == "hello"
    podman.remove(container["Id"])
    assert host_routes(lan.master) == []
