"""Podman 5 with netavark attaches containers through ipvlan-ip, installed
as a netavark plugin (ipvlan_ip/front/netavark.py), with Debian 13's own podman
5.4 and netavark 1.14 in the podman5 root: `podman network create -d
ipvlan-ip` with podman's own options, `podman run`, `podman inspect`,
`podman rm`; a bad option refused by create with the plugin's message; a
VLAN and hostAccess; a lease from the LAN's DHCP server. Each podman command costs 5-20 s in the VM, so each
test is one scenario. The commands and what podman printed go to
.vm/podman5-TEST.txt, for the record."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from . import test_dhcp, test_vlan
from .conftest import unique
from .node_roots import REPO, NodeRoot
from .runtimes import IMAGE, Podman5, eth, ipv4
from .test_dhcp import released_within
from .test_host_access import host_routes, pings
from .test_vlan import vlan_links

make_tagged_lan = test_vlan.make_tagged_lan     # the fixtures
make_dhcp_lan = test_dhcp.make_dhcp_lan


@pytest.fixture(scope="module")
def podman5_node(tmp_path_factory):
    """One root and podman store for the tests of this file that run on one VM worker: entering
    the root and importing the image cost about 20 s."""
    node = NodeRoot("podman5").enter()
    pm = Podman5(tmp_path_factory.mktemp("podman5"), node)
    try:
        pm.prepare()
        yield pm
    finally:
        node.leave()


@pytest.fixture
def podman5(podman5_node, request):
    pm = podman5_node
    pm.transcript.clear()
    try:
        yield pm
    finally:
        if pm.started:
            pm.remove(*pm.started, check=False)
            pm.started.clear()
        (REPO / ".vm" / f"podman5-{request.node.name}.txt").write_text("\n\n".join(pm.transcript) + "\n")


def create(pm: Podman5, name: str, parent: str, subnet: str, *options: str, check: bool = True):
    """`podman network create -d ipvlan-ip`, with the addresses podman assigns kept off the LAN's
    .1 and .2 (the LAN peer and the host), as --ip-range does on a real LAN."""
    net = subnet.rsplit(".", 2)[0]
    return pm("network", "create", "-d", "ipvlan-ip", "--subnet", subnet, "--gateway", f"{net}.0.1",
              "--ip-range", f"{net}.0.16/28", "-o", f"parent={parent}", *options, name, check=check)


def attached(pm: Podman5, container: dict, network: str) -> tuple[str, dict]:
    """The address podman inspect shows, and the link the kernel has."""
    shown = container["NetworkSettings"]["Networks"][network]
    link = eth(container, "eth0")
    assert link["linkinfo"]["info_kind"] == "ipvlan", link
    assert shown["IPAddress"] == ipv4(link) and shown["MacAddress"] == link["address"], (shown, link)
    return shown["IPAddress"], link


def gone(pm: Podman5, *containers: dict) -> bool:
    """podman rm -f: the containers, and their netns with every link in them, are gone."""
    pm.remove(*(c["Name"] for c in containers))
    pm.started = [s for s in pm.started if s not in {c["Name"] for c in containers}]
    return all(not Path(c["NetworkSettings"]["SandboxKey"]).exists() for c in containers)


def doctor_on_netavark(pm: Podman5) -> dict:
    done = pm.node.run(str(pm.plugin_dir / "ipvlan-ip"), "doctor", "--json")
    return next(f for f in json.loads(done.stdout)["node"] if f["check"] == "netavark")


def test_podman5_containers_on_an_ipvlan_ip_network(podman5, make_lan):
    # doctor on a Podman 5 node: the plugin is not where podman looks by default, then it is.
    (podman5.node.path / "usr" / "libexec" / "netavark" / "ipvlan-ip").unlink(missing_ok=True)
    assert doctor_on_netavark(podman5)["status"] == "warning"
    podman5.node.run("python3", "-m", "ipvlan_ip", "install", "--netavark", "--force", env={"PYTHONPATH": str(REPO)},
                     check=True)
    assert doctor_on_netavark(podman5)["status"] == "ok"

    lan = make_lan("10.226")
    bad = create(podman5, unique("bad-"), lan.master, f"{lan.net}.0.0/24", "-o", "mode=l4", check=False)
    # The words of the compiled validators: the node has no jsonschema.
    assert bad.returncode != 0 and "ipvlan-ip: -o mode: must be one of" in bad.stderr, bad.stderr
    unknown = create(podman5, unique("bad-"), lan.master, f"{lan.net}.0.0/24", "-o", "colour=blue", check=False)
    assert unknown.returncode != 0 and "unknown option -o colour" in unknown.stderr, unknown.stderr

    net = unique("p5-")
    log = podman5.root / "p5.log"       # IPVLAN_IP_LOG_DIR is podman's folder (runtimes.Podman5)
    create(podman5, net, lan.master, f"{lan.net}.0.0/24", "-o", "mode=l2", "-o", "debug=true",
           "-o", f"log_file={log}")
    made = json.loads(podman5("network", "inspect", net).stdout)[0]
    assert made["driver"] == "ipvlan-ip" and made["network_interface"] == lan.master
    a, b = podman5.start(net), podman5.start(net)
    addr_a, link_a = attached(podman5, a, net)
    addr_b, _ = attached(podman5, b, net)
    assert link_a["linkinfo"]["info_data"]["mode"] == "l2" and addr_a != addr_b
    for target in (addr_b, lan.lan):
        podman5("exec", a["Name"], "ping", "-c", "1", "-W", "3", target)
    assert gone(podman5, a, b)
    # The debug echo in the network's logFile: each container's ADD and DEL, with the `ip` they ran.
    logged = log.read_text()
    for container in (a, b):
        mine = [line for line in logged.splitlines() if f" {container['Id']} " in line]
        assert any('"CNI_COMMAND": "ADD"' in line for line in mine) and any("# delete eth0 in " in line
                                                                             for line in mine), logged[-2000:]


def test_the_example_of_docs_podman_md_runs_as_written(podman5, make_lan):
    """The page's block, each command in turn, with the test's master, subnet and names."""
    lan = make_lan("10.252")
    page = (REPO / "docs" / "podman.md").read_text()
    block = page.split("<!-- the example of Podman 5 -->\n```sh\n", 1)[1].split("```", 1)[0]
    net, web = unique("lan"), unique("web-")      # the network name goes into a Go template: no hyphen
    for word, ours in (("192.168.50.", f"{lan.net}.0."), ("eth1", lan.master), ("busybox", IMAGE)):
        block = block.replace(word, ours)
    block = re.sub(r"\blan\b", net, re.sub(r"\bweb\b", web, block))
    podman5.started.append(web)         # removed after a failure too
    said = [podman5(*shlex.split(command)[1:]).stdout.strip()
            for command in block.replace("\\\n", " ").splitlines() if command.strip()]
    address = said[2]
    assert address.startswith(f"{lan.net}.0.") and int(address.rsplit(".", 1)[1]) >= 128, said
    assert said[3] == web


def test_podman5_on_a_vlan_and_with_host_access(podman5, make_tagged_lan, make_lan):
    tagged = make_tagged_lan("10.228")
    on_vlan = unique("p5v-")
    create(podman5, on_vlan, tagged.master, f"{tagged.net}.0.0/24", "-o", "vlan=20")
    c = podman5.start(on_vlan)
    address, link = attached(podman5, c, on_vlan)
    [made] = vlan_links(tagged.master)
    assert made["ifname"] == f"{tagged.master}.20" and link["link_index"] == made["ifindex"]
    podman5("exec", c["Name"], "ping", "-c", "1", "-W", "3", tagged.address(20))
    assert tagged.knows(20, address) and not tagged.knows(30, address)
    assert gone(podman5, c) and vlan_links(tagged.master) == []      # the VLAN link went with its last container

    lan = make_lan("10.230")
    reachable = unique("p5h-")
    create(podman5, reachable, lan.master, f"{lan.net}.0.0/24", "-o", "host_access=true")
    h = podman5.start(reachable)
    address, _ = attached(podman5, h, reachable)
    assert pings(address) and host_routes(lan.master) == [address]
    assert gone(podman5, h) and host_routes(lan.master) == []


def test_podman5_takes_a_lease_from_the_lans_dhcp_server(podman5, make_dhcp_lan):
    """--ipam-driver dhcp: the CNI dhcp plugin of the node, through its daemon (here the VM's,
    whose socket the root sees where the plugin looks: /run/cni/dhcp.sock)."""
    lan = make_dhcp_lan("10.250")
    socket = podman5.node.path / "run" / "cni" / "dhcp.sock"
    socket.parent.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    socket.symlink_to(lan.socket)
    net = unique("p5d-")
    podman5("network", "create", "-d", "ipvlan-ip", "--ipam-driver", "dhcp", "-o", f"parent={lan.master}", net)
    c = podman5.start(net)
    address, _ = attached(podman5, c, net)
    assert address in lan.held()
    podman5("exec", c["Name"], "ping", "-c", "1", "-W", "3", lan.server)
    assert gone(podman5, c)
    released_within(lan, 20)


def routes_in(container: dict) -> list[dict]:
    sandbox = container["NetworkSettings"]["SandboxKey"]
    shown = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-j", "route", "show", "default"],
                           capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)


def test_podman5_reload_keeps_the_network_and_metric_orders_two_networks(podman5, make_lan):
    """`podman network reload` tears the network down and sets it up again with the MAC of the status
    block, the master's: the container keeps its address and its LAN (issue 50). Of two networks, the
    one with -o metric=150 gives the container its second default route, as podman's own drivers do; the
    other has netavark's ipvlan's default, 99."""
    first, second = make_lan("10.236"), make_lan("10.237")
    refused = create(podman5, unique("p5x-"), first.master, f"{first.net}.0.0/24", "--dns", "10.236.0.53",
                     check=False)
    assert refused.returncode != 0 and "--dns: no DNS server runs" in refused.stderr, refused.stderr
    near, far = unique("p5n-"), unique("p5f-")
    create(podman5, near, first.master, f"{first.net}.0.0/24")
    create(podman5, far, second.master, f"{second.net}.0.0/24", "-o", "metric=150")
    c = podman5.start(near, far)
    address, _ = attached(podman5, c, near)
    defaults = sorted((r.get("metric", 0), r["gateway"]) for r in routes_in(c))
    assert defaults == [(99, first.lan), (150, second.lan)], defaults     # 99: netavark's ipvlan's own default
    podman5("network", "reload", c["Name"])
    again = json.loads(podman5("inspect", c["Name"]).stdout)[0]
    assert attached(podman5, again, near)[0] == address     # the same address, on a link set up again
    podman5("exec", c["Name"], "ping", "-c", "1", "-W", "3", first.lan)
    assert gone(podman5, c)


def test_podman5_internal_dual_stack_with_a_route(podman5, make_lan):
    """--internal: no default route, and no gateway podman adds by itself (no DNS server runs for the
    network, so it has no use for one); a second subnet, IPv6; --route, through the LAN peer."""
    lan = make_lan("10.238")
    net = unique("p5i-")
    podman5("network", "create", "-d", "ipvlan-ip", "--internal", "--subnet", f"{lan.net}.0.0/24",
            "--ip-range", f"{lan.net}.0.16/28", "--subnet", "fd00:238::/64", "--route",
            f"{lan.net}.9.0/24,{lan.lan}", "-o", f"parent={lan.master}", net)
    made = json.loads(podman5("network", "inspect", net).stdout)[0]
    assert made["internal"] and not made["dns_enabled"] and not any("gateway" in s for s in made["subnets"]), made
    c = podman5.start(net)
    link = eth(c, "eth0")
    families = sorted(a["family"] for a in link["addr_info"] if a.get("scope") == "global")
    assert families == ["inet", "inet6"], link
    sandbox = c["NetworkSettings"]["SandboxKey"]
    routes = json.loads(subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-j", "route", "show"],
                                       capture_output=True, text=True, check=True).stdout)
    assert [r for r in routes if r["dst"] == "default"] == [], routes
    assert {"dst": f"{lan.net}.9.0/24", "gateway": lan.lan} in [{k: r.get(k) for k in ("dst", "gateway")}
                                                                for r in routes], routes
    podman5("exec", c["Name"], "ping", "-c", "1", "-W", "3", lan.lan)
    assert gone(podman5, c)


def test_podman5_teardown_after_its_ipam_lost_the_addresses_removes_the_host_route_and_the_vlan_link(
        podman5, make_tagged_lan, make_lan):
    """Podman tears a container down even when its IPAM cannot say the container's addresses ("to
    prevent leaking network interfaces"): teardown then has no static_ips, and DEL needs none to remove
    what the plugin put on the host (issue 50). Here podman's IPAM database goes while it runs."""
    tagged, lan = make_tagged_lan("10.243"), make_lan("10.244")
    on_vlan, reachable = unique("p5v-"), unique("p5h-")
    create(podman5, on_vlan, tagged.master, f"{tagged.net}.0.0/24", "-o", "vlan=20")
    create(podman5, reachable, lan.master, f"{lan.net}.0.0/24", "-o", "host_access=true")
    c = podman5.start(on_vlan, reachable)
    address = c["NetworkSettings"]["Networks"][reachable]["IPAddress"]
    assert host_routes(lan.master) == [address] and len(vlan_links(tagged.master)) == 1
    # Rootful podman keeps one IPAM database for every store: /run/containers/networks (containers/common).
    (podman5.node.path / "run" / "containers" / "networks" / "ipam.db").unlink()
    podman5.remove(c["Name"], check=False)      # podman says it could not free the addresses
    podman5.started.remove(c["Name"])
    assert not Path(c["NetworkSettings"]["SandboxKey"]).exists()
    assert host_routes(lan.master) == [] and vlan_links(tagged.master) == []


def test_podman5_shows_the_plugins_answer_when_setup_fails(podman5, make_lan):
    """A failed setup gives netavark an answer it prints ({"error": ...} on stdout), never a traceback it
    reads as "EOF" (issue 50): a network whose file carries an option this version refuses, as one made
    by an older version or edited by hand does. podman normalises what it parses (a subnet with host
    bits comes to the plugin masked), so the options are what reach the plugin as written."""
    lan = make_lan("10.245")
    net = unique("p5e-")
    create(podman5, net, lan.master, f"{lan.net}.0.0/24", "-o", "mtu=1400")
    path = podman5.root / "networks" / f"{net}.json"
    path.write_text(path.read_text().replace('"mtu": "1400"', '"mtu": "big"'))
    name = f"t{unique('')}"
    podman5.started.append(name)
    failed = podman5("run", "-d", "--name", name, "--network", net, IMAGE, "sleep", "60", check=False)
    assert failed.returncode != 0 and "ipvlan-ip: -o mtu=big: a whole number is needed" in failed.stderr, \
        failed.stderr
    assert "EOF" not in failed.stderr, failed.stderr
