"""No call removes, renames or reconfigures an interface it did not make.
A runtime sends DEL after a refused ADD (the spec asks it to): that DEL must
leave another plugin's `eth0` (a veth, a macvlan, an ipvlan link of another
master) alone and still release its own reservation. CHECK, GC and the
rollback of an ADD that finds the name taken halfway leave it alone too.
After each case the other interface keeps its kind, addresses and routes; a
real repeated ADD of our own link, then DEL, still removes that attachment."""

import pytest

from ipvlan_ip.commands import temporary_name

from ..conftest import SYSTEM_PATH
from .conftest import call_plugin, ip, ipj, reservations
from .test_plugin import addresses_in, link_in, links_in, netconf, ok

INTERFACE_EXISTS, CHECK_FAILURE = 104, 102


def make_foreign(kind: str, netns: str) -> None:
    """An `eth0` as another plugin would leave it: up, addressed, routed."""
    if kind == "veth":
        ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0", ns=netns)
    else:   # on a master inside the container, so of a master other than the config's
        ip("link", "add", "inner0", "type", "veth", "peer", "name", "peer0", ns=netns)
        ip("link", "set", "inner0", "up", ns=netns)
        ip("link", "add", "link", "inner0", "name", "eth0", "type", kind, "mode",
           "l2" if kind == "ipvlan" else "bridge", ns=netns)
    ip("address", "add", "192.0.2.5/24", "dev", "eth0", ns=netns)
    ip("link", "set", "eth0", "up", ns=netns)
    ip("route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", "eth0", ns=netns)


def state_of(netns: str) -> tuple:
    """What must survive of the foreign eth0: kind, MAC, addresses, its routes."""
    link = link_in(netns)
    routes = sorted(r["dst"] for r in ipj("route", "show", "dev", "eth0", ns=netns))
    return link["linkinfo"]["info_kind"], link["address"], addresses_in(netns), routes


@pytest.mark.parametrize("kind", [pytest.param("veth", marks=pytest.mark.native),
                                  pytest.param("macvlan", marks=pytest.mark.native), "ipvlan"])
def test_del_after_a_refused_add_leaves_another_plugins_interface(kind, master, netns, ipam_dir):
    make_foreign(kind, netns)
    before = state_of(netns)
    assert before[0] == kind and before[2] == {"192.0.2.5/24"}
    conf, path = netconf(master, ipam_dir), f"/run/netns/{netns}"

    refused = call_plugin("ADD", conf, path, container_id="c")
    assert refused.code == 1 and refused.out["code"] == INTERFACE_EXISTS, refused.stdout
    deleted = call_plugin("DEL", conf, path, container_id="c", env={"IPVLAN_IP_DEBUG": "1"})
    ok(deleted)
    assert state_of(netns) == before
    assert "not ours, left alone" in deleted.stderr and "link del" not in deleted.stderr   # no `ip` ran
    assert reservations(ipam_dir) == []


@pytest.mark.native
def test_check_against_an_interface_of_another_kind_changes_nothing(master, netns, ipam_dir):
    make_foreign("veth", netns)
    before = state_of(netns)
    path = f"/run/netns/{netns}"
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": path}],
            "ips": [{"address": "192.0.2.5/24", "interface": 0}], "routes": []}
    conf = netconf(master, ipam_dir, ipam=None, prevResult=prev)
    reply = call_plugin("CHECK", conf, path, container_id="c")
    assert reply.code == 1 and reply.out["code"] == CHECK_FAILURE, reply.stdout
    assert "not an ipvlan link" in reply.out["details"]
    assert state_of(netns) == before


@pytest.mark.native
def test_gc_leaves_another_plugins_interface(master, netns, tmp_path):
    make_foreign("macvlan", netns)
    before = state_of(netns)
    record = tmp_path / "calls"
    conf = {"cniVersion": "1.1.0", "name": "gcnet", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "test-ipam", "record": str(record)},
            "cni.dev/valid-attachments": []}
    ok(call_plugin("GC", conf, "", ifname=None, container_id=None))
    assert state_of(netns) == before
    assert '"GC"' in record.read_text()                   # it did run, and went to IPAM alone


def test_a_name_taken_halfway_through_add_stops_it_and_the_rollback_leaves_the_taker(
        master, netns, ipam_dir, tmp_path):
    # An `ip` first in PATH that, once the link exists under its temporary
    # name, lets another plugin take `eth0` in the container: the rename fails.
    wrapper = tmp_path / "bin" / "ip"
    wrapper.parent.mkdir()
    wrapper.write_text(f"""#!/bin/sh
/usr/sbin/ip "$@" || exit $?
case "$*" in *"-j -d -batch -"*)
  /usr/sbin/ip -n {netns} link add eth0 type veth peer name peer0 &&
  /usr/sbin/ip -n {netns} address add 192.0.2.5/24 dev eth0 ;;
esac
""")
    wrapper.chmod(0o755)
    path = f"/run/netns/{netns}"
    reply = call_plugin("ADD", netconf(master, ipam_dir), path, container_id="c",
                        env={"PATH": f"{wrapper.parent}:{SYSTEM_PATH}"})
    assert reply.code == 1 and reply.out["code"] == INTERFACE_EXISTS, reply.stdout
    assert "took the name 'eth0' meanwhile" in reply.out["details"]
    link = link_in(netns)
    assert link["linkinfo"]["info_kind"] == "veth" and "UP" not in link["flags"]   # not brought up by us
    assert addresses_in(netns) == {"192.0.2.5/24"}                                   # none of ours added
    assert ipj("route", "show", "dev", "eth0", ns=netns) == []
    assert temporary_name("c", "eth0") not in links_in(netns)                        # our own link taken back
    assert reservations(ipam_dir) == []


def test_a_repeated_add_then_del_still_removes_our_own_link(master, netns, ipam_dir):
    conf, path = netconf(master, ipam_dir), f"/run/netns/{netns}"
    ok(call_plugin("ADD", conf, path, container_id="c"))
    again = call_plugin("ADD", conf, path, container_id="c")
    assert again.code == 1 and again.out["code"] == INTERFACE_EXISTS
    ok(call_plugin("DEL", conf, path, container_id="c"))      # as a runtime sends it: no prevResult
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
