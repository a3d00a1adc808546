"""A failed or refused call never undoes what an earlier call made. A second
ADD of an attachment that is still there (a runtime retrying after a
timeout, a hand-run tool) is refused before anything is allocated; so is an
ADD whose CNI_IFNAME another plugin's interface holds; and a second network's
ADD failing halfway takes back only its own link and reservation. After
each, the first attachment keeps its link, addresses and reservation, and
its own DEL then leaves nothing behind."""

import pytest

from ipvlan_ip.commands import temporary_name

from .conftest import call_plugin, ip, reservations
from .test_faults import failing_ip
from .test_plugin import addresses_in, host_local, link_in, links_in, netconf, ok

INTERFACE_EXISTS = 104


def static_conf(master: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "staticnet", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "static", "addresses": [{"address": "10.61.0.5/24", "gateway": "10.61.0.1"}],
                     "routes": [{"dst": "0.0.0.0/0"}]}}


def chained_conf(master: str) -> dict:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": master}],
            "ips": [{"address": "10.62.0.9/24", "gateway": "10.62.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}]}
    return {"cniVersion": "1.0.0", "name": "chain", "type": "ipvlan-ip", "prevResult": prev}


def attachment(netns: str, ipam_dir) -> tuple:
    """What must survive: the link (by MAC and kind), its addresses, the reservations."""
    link = link_in(netns)
    return link["address"], link["linkinfo"]["info_kind"], addresses_in(netns), reservations(ipam_dir)


@pytest.mark.parametrize("ipam", ["host-local", "static", "none"])
def test_a_repeated_add_is_refused_and_the_first_attachment_stays(ipam, master, netns, ipam_dir):
    conf = {"host-local": netconf(master, ipam_dir), "static": static_conf(master),
            "none": chained_conf(master)}[ipam]
    path = f"/run/netns/{netns}"
    first = ok(call_plugin("ADD", conf, path, container_id="c"))
    before = attachment(netns, ipam_dir)
    assert before[1] == "ipvlan" and before[2] == {first["ips"][0]["address"]}
    if ipam == "host-local":
        assert before[3] == [first["ips"][0]["address"].split("/")[0]]

    again = call_plugin("ADD", conf, path, container_id="c")
    assert again.code == 1 and again.out["code"] == INTERFACE_EXISTS, again.stdout
    assert "'eth0' already exists" in again.out["details"] and "earlier ADD" in again.out["details"]
    assert attachment(netns, ipam_dir) == before
    assert sorted(links_in(netns)) == ["eth0", "lo"]

    ok(call_plugin("DEL", {**conf, "prevResult": first}, path, container_id="c"))
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []


@pytest.mark.native
def test_an_interface_another_plugin_made_is_refused_before_ipam(master, netns, ipam_dir):
    ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", ns=netns)
    reply = call_plugin("ADD", netconf(master, ipam_dir), f"/run/netns/{netns}", container_id="c")
    assert reply.code == 1 and reply.out["code"] == INTERFACE_EXISTS, reply.stdout
    assert sorted(links_in(netns)) == ["eth0", "eth0p", "lo"]          # untouched, no temporary link
    assert link_in(netns)["linkinfo"]["info_kind"] == "veth"
    assert not list(ipam_dir.iterdir())                                # IPAM was never asked


def test_a_second_network_failing_halfway_leaves_the_first_alone(master, netns, ipam_dir, tmp_path):
    path = f"/run/netns/{netns}"
    first_conf = netconf(master, ipam_dir / "a")
    first = ok(call_plugin("ADD", first_conf, path, container_id="c"))
    before = attachment(netns, ipam_dir)

    # net1's ADD: link created, address reserved, then its configuring `ip` fails.
    second_conf = netconf(master, ipam_dir / "b", name="second",
                          ipam=host_local(ipam_dir / "b", subnet="10.63.0.0/24", gateway="10.63.0.1"))
    reply = call_plugin("ADD", second_conf, path, ifname="net1", container_id="c",
                        env=failing_ip(tmp_path, call=2))
    assert reply.code == 1 and reply.out["code"] == 100 and "failed to configure net1" in reply.out["details"]
    assert sorted(links_in(netns)) == ["eth0", "lo"]                   # neither net1 nor its temporary name
    assert temporary_name("c", "net1") not in links_in(netns)
    assert attachment(netns, ipam_dir) == before                       # eth0, its address, its reservation only

    ok(call_plugin("DEL", {**first_conf, "prevResult": first}, path, container_id="c"))
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
