"""Addresses from the LAN's own DHCP server, with real parts: dnsmasq serves
DHCP in a netns on the master's veth peer (the LAN), and Debian's CNI dhcp
daemon runs the clients. Each test has a daemon of its own, on a socket of
its own (the config's daemonSocketPath), and a LAN of its own (`net`)."""

import json
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from .conftest import GO_PLUGINS, TEST_PLUGINS, call_plugin, ip, ipj, unique
from .runtimes import eth, ipv4
from .test_faults import failing_ip
from .test_host_access import pings
from .test_plugin import addresses_in, link_in, links_in, ok

DHCP = f"{GO_PLUGINS}/dhcp"


class DhcpLan(NamedTuple):
    master: str
    ns: str
    net: str
    leases: Path        # dnsmasq's lease file
    socket: str         # the dhcp daemon's
    daemon_log: Path
    daemon: subprocess.Popen

    @property
    def server(self) -> str:
        return f"{self.net}.0.1"

    def conf(self, **extra) -> dict:
        return {"cniVersion": "1.0.0", "name": unique("dhcpnet-"), "type": "ipvlan-ip", "master": self.master,
                "mode": "l2", "ipam": {"type": "dhcp", "daemonSocketPath": self.socket}, **extra}

    def held(self) -> dict[str, str]:
        """dnsmasq's leases: address -> client identifier."""
        lines = self.leases.read_text().splitlines() if self.leases.exists() else []
        return {f[2]: f[4] for f in (line.split() for line in lines) if len(f) >= 5}

    def renewed(self, container_id: str) -> bool:
        """Whether the daemon has renewed this container's lease (its log: `DATE TIME ID/NET/IF: lease renewed`)."""
        text = self.daemon_log.read_text() if self.daemon_log.exists() else ""
        return any(f" {container_id}/" in line and "lease renewed" in line for line in text.splitlines())

    def neighbour(self, address: str) -> dict:
        """The LAN side's neighbour entry for `address` ({} if none)."""
        found = ipj("neigh", "show", address, "dev", self.master + "p", ns=self.ns)
        return found[0] if found else {}


def start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.1)


@pytest.fixture
def make_dhcp_lan(make_netns, make_master, tmp_path):
    """make_dhcp_lan(net, broadcast=True, renew_after=None, vlan=None, server=True): a
    master, dnsmasq on its far side (on VLAN `vlan` of it, if given; none
    without `server`) serving {net}.0.100-150 (leases of an hour, renewed
    after `renew_after` seconds if given), and a dhcp daemon (with -broadcast
    or without)."""
    procs: list[subprocess.Popen] = []

    def make(net: str, broadcast: bool = True, renew_after: int | None = None, vlan: int | None = None,
             server: bool = True) -> DhcpLan:
        master, lan_ns = make_master(), make_netns()
        ip("link", "set", master + "p", "netns", lan_ns)
        ip("link", "set", master + "p", "up", ns=lan_ns)
        port = f"{master}p.{vlan}" if vlan else f"{master}p"     # with `vlan`, dnsmasq serves that VLAN alone
        if vlan:
            ip("link", "add", "link", master + "p", "name", port, "type", "vlan", "id", str(vlan), ns=lan_ns)
        ip("address", "add", f"{net}.0.1/24", "dev", port, ns=lan_ns)
        # The LAN side learns addresses from gratuitous ARP even where it has no entry yet.
        ip("netns", "exec", lan_ns, "sysctl", "-qw", f"net/ipv4/conf/{port}/arp_accept=1")
        ip("link", "set", port, "up", ns=lan_ns)
        leases, socket = tmp_path / "dnsmasq.leases", tmp_path / "dhcp.sock"
        procs.extend([start(["ip", "netns", "exec", lan_ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                            "--port=0", "--user=root", "--bind-interfaces", f"--interface={port}",
                            f"--dhcp-range={net}.0.100,{net}.0.150,255.255.255.0,1h",
                            f"--dhcp-option=option:router,{net}.0.1", f"--dhcp-leasefile={leases}",
                            "--dhcp-authoritative", "--log-dhcp", "--log-facility=-",
                            *([f"--dhcp-option=option:T1,{renew_after}", f"--dhcp-option=option:T2,{renew_after * 2}"]
                              if renew_after else [])], tmp_path / "dnsmasq.log")] if server else [])
        daemon_log = tmp_path / "dhcp-daemon.log"
        procs.append(start([DHCP, "daemon", *(["-broadcast"] if broadcast else []), "-socketpath", str(socket)],
                           daemon_log))
        wait_for(socket)
        return DhcpLan(master, lan_ns, net, leases, str(socket), daemon_log, procs[-1])
    yield make
    stop(procs)


def add(lan: DhcpLan, conf: dict, ns: str, cid: str) -> dict:
    return ok(call_plugin("ADD", conf, netns=f"/run/netns/{ns}", container_id=cid))


def leased(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def test_two_containers_get_distinct_leases_and_reach_each_other_and_the_lan(make_dhcp_lan, make_netns):
    lan = make_dhcp_lan("10.231")
    conf = lan.conf()
    first, second = make_netns(), make_netns()
    a, b = add(lan, conf, first, "dhcp-a"), add(lan, conf, second, "dhcp-b")
    addr_a, addr_b = leased(a), leased(b)
    assert addr_a != addr_b
    # Before any ping: the LAN knows each address, with the master's MAC, from ADD's gratuitous ARP.
    mac = ipj("link", "show", "dev", lan.master)[0]["address"]
    for address in (addr_a, addr_b):
        entry = lan.neighbour(address)
        assert entry.get("lladdr") == mac and "FAILED" not in entry.get("state", []), entry
    for result, ns in ((a, first), (b, second)):
        address = leased(result)
        assert address.startswith(f"{lan.net}.0.") and 100 <= int(address.rsplit(".", 1)[1]) <= 150
        assert addresses_in(ns) == {result["ips"][0]["address"]}
        link = link_in(ns)
        assert link["linkinfo"]["info_kind"] == "ipvlan" and link["linkinfo"]["info_data"]["mode"] == "l2"
        assert result["ips"][0]["gateway"] == lan.server
        assert pings(lan.server, ns)
    assert pings(addr_b, first) and pings(addr_a, second)
    # dnsmasq tells the two apart by the client identifier the daemon sends, not by the shared MAC.
    held = lan.held()
    assert set(held) == {addr_a, addr_b}
    assert len(set(held.values())) == 2 and "*" not in held.values(), held
    for ns, cid, result in ((first, "dhcp-a", a), (second, "dhcp-b", b)):
        ok(call_plugin("CHECK", {**conf, "prevResult": result}, netns=f"/run/netns/{ns}", container_id=cid))
    for ns, cid in ((first, "dhcp-a"), (second, "dhcp-b")):
        ok(call_plugin("DEL", conf, netns=f"/run/netns/{ns}", container_id=cid))
        assert "eth0" not in links_in(ns)
    released_within(lan, 10)


def test_a_lease_from_the_dhcp_server_of_a_tagged_vlan(make_dhcp_lan, netns):
    """dnsmasq serves VLAN 20 of the LAN only: the lease comes through the VLAN link the plugin makes."""
    lan = make_dhcp_lan("10.239", vlan=20)
    conf = lan.conf(vlan=20)
    result = add(lan, conf, netns, "tagged")
    assert leased(result) in lan.held() and pings(lan.server, netns)
    assert link_in(netns)["link_index"] == link_in(None, f"{lan.master}.20")["ifindex"]
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, netns=f"/run/netns/{netns}", container_id="tagged"))
    ok(call_plugin("DEL", conf, netns=f"/run/netns/{netns}", container_id="tagged"))
    released_within(lan, 10)        # released through the VLAN link, which goes after
    assert subprocess.run(["ip", "link", "show", "dev", f"{lan.master}.20"], capture_output=True).returncode != 0


def released_within(lan: DhcpLan, seconds: float) -> None:
    """dnsmasq drops a lease on the client's DHCPRELEASE."""
    deadline = time.monotonic() + seconds
    while lan.held():
        assert time.monotonic() < deadline, f"leases still held after DEL: {lan.held()}"
        time.sleep(0.2)


def test_eight_at_once_on_one_master_each_get_a_lease(make_dhcp_lan, make_netns):
    """Clients sharing a MAC take turns (the master's lock): asking together,
    each would take the first ACK, and all but one would end in a conflict.
    Four networks on the master, two containers each: a network's calls take
    turns anyway (the IPAM turn), so only the master's lock keeps apart
    clients of different networks."""
    lan = make_dhcp_lan("10.232")
    # The eighth waits for seven exchanges: once over 120 s in the VM, beside the other worker's tests.
    confs = [lan.conf(timeout=400) for _ in range(4)]
    spaces = [make_netns() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: call_plugin("ADD", confs[n % 4], netns=f"/run/netns/{spaces[n]}",
                                                      container_id=f"eight-{n}", timeout=450), range(8)))
    for reply in replies:
        ok(reply)
    got = [leased(r.out) for r in replies]
    assert len(set(got)) == 8, got
    assert set(lan.held()) == set(got)
    for n, ns in enumerate(spaces):
        assert addresses_in(ns) == {replies[n].out["ips"][0]["address"]}
    with ThreadPoolExecutor(8) as pool:
        for reply in pool.map(lambda n: call_plugin("DEL", confs[n % 4], netns=f"/run/netns/{spaces[n]}",
                                                    container_id=f"eight-{n}"), range(8)):
            ok(reply)
    released_within(lan, 20)


def test_the_daemon_renews_the_lease_and_the_container_keeps_its_address(make_dhcp_lan, netns):
    """ADD takes the link down and up around the lease's address (to announce
    it): the daemon's renewals, which come later, go through all the same."""
    lan = make_dhcp_lan("10.237", renew_after=5)
    conf = lan.conf()
    result = add(lan, conf, netns, "renew")
    held = lan.held()
    deadline = time.monotonic() + 60
    while not lan.renewed("renew"):
        assert time.monotonic() < deadline, "no renewal within 60 s:\n" + lan.daemon_log.read_text()
        time.sleep(0.5)
    assert lan.held() == held and addresses_in(netns) == {result["ips"][0]["address"]}
    assert pings(lan.server, netns)
    ok(call_plugin("CHECK", {**conf, "prevResult": result}, netns=f"/run/netns/{netns}", container_id="renew"))
    ok(call_plugin("DEL", conf, netns=f"/run/netns/{netns}", container_id="renew"))
    released_within(lan, 10)


@pytest.mark.parametrize("missing, net", [("broadcast", "10.233"), ("server", "10.245")])
def test_with_no_answer_add_fails_in_time_naming_broadcast_and_the_server_and_leaves_nothing(missing, net,
                                                                                            make_dhcp_lan, netns):
    """No answer reaches the container: the daemon runs without -broadcast, or no DHCP server is on the LAN."""
    lan = make_dhcp_lan(net, broadcast=missing != "broadcast", server=missing != "server")
    conf = lan.conf(timeout=15)
    # call_plugin's own bound fails the test if the plugin hangs; no wall-clock figure is asserted.
    reply = call_plugin("ADD", conf, netns=f"/run/netns/{netns}", container_id="nobcast")
    assert reply.code != 0 and "-broadcast" in reply.out["details"], reply.stdout
    assert "a DHCP server answers" in reply.out["details"], reply.stdout
    assert links_in(netns) == ["lo"]
    if missing == "broadcast":      # a server runs, and leased nothing
        assert lan.leases.exists() and lan.held() == {}     # dnsmasq makes its lease file at start
    ok(call_plugin("DEL", conf, netns=f"/run/netns/{netns}", container_id="nobcast"))


def test_add_failing_after_the_lease_releases_it_before_removing_the_link(make_dhcp_lan, netns, tmp_path):
    """The daemon sends DHCPRELEASE through the link: a rollback that removed
    the link first would leave the lease held at the server until it expires."""
    lan = make_dhcp_lan("10.236")
    conf = lan.conf()
    reply = call_plugin("ADD", conf, netns=f"/run/netns/{netns}", container_id="late", env=failing_ip(tmp_path, 2))
    assert reply.out["code"] == 100 and "failed to configure eth0" in reply.out["details"], reply.stdout
    assert links_in(netns) == ["lo"]
    released_within(lan, 10)


def test_an_answer_meant_for_another_container_asks_to_try_again_and_leaves_nothing(master, make_netns, tmp_path):
    """Seen with renewals every 8 s: an acquisition that meets another client's
    renewal takes that client's ACK (same MAC, same transaction ID). A stand-in
    `dhcp` answers so at will; a daemon socket is there for ADD's check."""
    first, second = make_netns(), make_netns()
    ok(call_plugin("ADD", {"cniVersion": "1.0.0", "name": "taken", "type": "ipvlan-ip", "master": master,
                           "ipam": {"type": "static", "addresses": [{"address": "10.238.0.5/24"}]}},
                   netns=f"/run/netns/{first}", container_id="holder"))
    bin_dir, record = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "dhcp").symlink_to(Path(TEST_PLUGINS) / "test-ipam")
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(tmp_path / "dhcp.sock"))
    daemon.listen()
    conf = {"cniVersion": "1.0.0", "name": "taken", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "dhcp", "daemonSocketPath": str(tmp_path / "dhcp.sock"), "record": str(record),
                     "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.238.0.5/24"}]}}}
    reply = call_plugin("ADD", conf, netns=f"/run/netns/{second}", container_id="late",
                        env={"CNI_PATH": f"{bin_dir}:{GO_PLUGINS}"})
    daemon.close()
    assert reply.out["code"] == 11 and "another container's address" in reply.out["details"], reply.stdout
    assert links_in(second) == ["lo"]
    assert [json.loads(line)["command"] for line in record.read_text().splitlines()] == ["ADD", "DEL"]
    assert addresses_in(first) == {"10.238.0.5/24"}     # the holder keeps it


@pytest.mark.native
def test_missing_daemon_says_how_to_start_it_and_leaves_nothing(master, netns, tmp_path):
    conf = {"cniVersion": "1.0.0", "name": "dhcpnet", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "dhcp", "daemonSocketPath": str(tmp_path / "none.sock")}}
    reply = call_plugin("ADD", conf, netns=f"/run/netns/{netns}")
    assert reply.out["code"] == 101 and "dhcp daemon -broadcast" in reply.out["details"], reply.stdout
    assert links_in(netns) == ["lo"]
    ok(call_plugin("DEL", conf, netns=f"/run/netns/{netns}"))


def test_del_after_the_daemon_died_completes_and_removes_the_link(make_dhcp_lan, netns):
    """The daemon holds its leases in memory alone: once it is gone, no lease of the container's is held,
    and a daemon started later knows none. DEL goes on without the release rather than fail until then."""
    lan = make_dhcp_lan("10.240")
    conf = {**lan.conf(), "debug": True}
    add(lan, conf, netns, "orphan")
    stop([lan.daemon])
    reply = call_plugin("DEL", conf, netns=f"/run/netns/{netns}", container_id="orphan")
    ok(reply)
    assert f"no dhcp daemon listens on {lan.socket}" in reply.stderr, reply.stderr
    assert links_in(netns) == ["lo"]
    ok(call_plugin("DEL", conf, netns=f"/run/netns/{netns}", container_id="orphan"))   # and again, as runtimes do


def test_repeated_add_is_refused_before_asking_for_a_second_lease(make_dhcp_lan, netns):
    lan = make_dhcp_lan("10.234")
    conf = lan.conf()
    first = add(lan, conf, netns, "again")
    reply = call_plugin("ADD", conf, netns=f"/run/netns/{netns}", container_id="again")
    assert reply.out["code"] == 104, reply.stdout
    assert set(lan.held()) == {leased(first)}
    assert addresses_in(netns) == {first["ips"][0]["address"]}
    ok(call_plugin("DEL", conf, netns=f"/run/netns/{netns}", container_id="again"))
    released_within(lan, 10)


def test_podman_container_on_a_dhcp_network(podman, make_dhcp_lan):
    lan = make_dhcp_lan("10.235")
    name = podman.network(unique("dhcp"), lan.master, "", Path("/nonexistent"), tuning=False,
                          ipam={"type": "dhcp", "daemonSocketPath": lan.socket})
    container = podman.start(name)
    address = ipv4(eth(container, "eth0"))
    assert address in lan.held()
    sandbox = container["NetworkSettings"]["SandboxKey"]
    assert subprocess.run(["nsenter", f"--net={sandbox}", "ping", "-c", "1", "-W", "3", lan.server],
                          capture_output=True).returncode == 0
    podman.remove(container["Name"])
    released_within(lan, 20)
