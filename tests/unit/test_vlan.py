"""vlan's lines, from data to exact `ip` batch lines, the configs it refuses,
and its bookkeeping of which VLAN links the plugin made and which
attachments use them, on records in a temporary directory (the kernel tests
in tests/kernel/test_vlan.py show the same against the kernel)."""

import collections
import io
import json

import pytest

from ipvlan_ip import advice, commands
from ipvlan_ip.capabilities import vlan
from ipvlan_ip.errors import MASTER_FAILURE, CniError
from ipvlan_ip.front import plugin
from ipvlan_ip.node import state
from ipvlan_ip.node.rtnetlink import Link
from ipvlan_ip.node.runner import Runner
from ipvlan_ip.tools.plan import plan

from .test_host_access import created
from .test_input import ENV, GOOD, answer


def test_the_vlan_link_is_master_dot_id_where_that_fits_else_derived_from_both():
    assert vlan.link_name("eth0", 20) == "eth0.20"
    assert vlan.link_name("enp0s31f6", 4094) == "enp0s31f6.4094"       # 14 characters
    # MASTER.N would have 17 characters. The CRC-32 as gzip has it: printf enp0s31f6abc | gzip | tail -c8
    assert vlan.link_name("enp0s31f6abc", 4094) == "vl6cdb65f7.4094"
    derived = {vlan.link_name(m, v) for m in ("enp0s31f6abc", "enp0s31f6abd") for v in (1, 4094)}
    assert len(derived) == 4 and all(len(n) <= 15 for n in derived)


def test_the_create_batch_reads_the_master_makes_the_vlan_link_up_and_reads_it_before_the_ipvlan_link():
    script = plan(json.dumps({**GOOD, "vlan": 20, "mode": "l3", "mtu": 1400}).encode(), "/run/netns/blue", "eth0",
                  container_id="c1")
    assert "ip -j -d -batch - <<'EOF'\nlink show dev eth0\n" in script     # no -force: it stops at a missing master
    assert created(script) == ("link show dev eth0",
                               "link add link eth0 name eth0.20 type vlan id 20",
                               "link set dev eth0.20 alias \"made by ipvlan-ip\"",  # up once it takes no RA
                               "link show dev eth0.20",
                               f"link add link eth0.20 name {commands.temporary_name('c1', 'eth0')} netns "
                               "/run/netns/blue mtu 1400 type ipvlan mode l3")
    # A VLAN link that exists is only brought up (a node owner's may be down) and read.
    assert vlan.link_lines("eth0", 20, make=False) == ("link show dev eth0", "link set dev eth0.20 up",
                                                         "link show dev eth0.20")


@pytest.mark.parametrize("edit", [
    {"vlan": 0}, {"vlan": 4095}, {"vlan": -1}, {"vlan": "20"}, {"vlan": 20.5}, {"vlan": 20.0}, {"vlan": True},
    {"vlan": None}, {"vlan": 20, "master": "ipam"}, {"vlan": 20, "linkInContainer": True},
    {"vlan": 20, "hostAccess": True},
])
def test_configs_vlan_cannot_serve_are_refused_with_code_7(edit):
    code, out = answer(ENV, {**GOOD, **edit})
    assert code == 1 and out["code"] == 7, out


def test_vlan_is_in_the_schema_with_its_range():
    from ipvlan_ip import validation
    assert validation.problems("netconf", {**GOOD, "vlan": 4094}) == []
    assert validation.problems("netconf", {**GOOD, "vlan": 4095}) == [
        "$.vlan: 4095 is greater than the maximum of 4094"]


def test_what_to_do_names_the_8021q_driver_only_for_the_vlan_line():
    vlan_failure = "failed to read the master and make or bring up its VLAN link eth0.20: `link add link eth0 " \
                   "name eth0.20 type vlan id 20`: Error: Unknown device type."
    assert "modprobe 8021q" in advice.advise(vlan_failure)
    ipvlan_failure = "failed to create ipvlan on 'eth0.20': `link add link eth0.20 name ipvl1 type ipvlan mode l2`: " \
                     "Error: Unknown device type."
    assert "modprobe ipvlan" in advice.advise(ipvlan_failure)


class Node(Runner):
    """The kernel's side as data: the VLAN links (name: id, parent, ifindex,
    and whether the plugin made it, as its alias says), other interfaces
    by name, what stands on a link; records and locks for real, in a
    temporary directory."""

    def __init__(self, vlans: dict, others: dict, standing: tuple[Link, ...] = ()):
        super().__init__()
        self.vlan_links, self.others, self.standing, self.deleted = dict(vlans), others, standing, []

    def vlans(self):
        return {name: (vid, parent) for name, (vid, parent, _, _) in self.vlan_links.items()}

    def host_index(self, name):
        return self.vlan_links[name][2] if name in self.vlan_links else (7 if name in self.others else 0)

    def interfaces(self, netns):
        return {**self.others, **{name: Link(index, name, "vlan", "", vlan.MADE if made else "", 0, None, "", "", vid)
                                  for name, (vid, _, index, made) in self.vlan_links.items()}}

    def namespaces(self, commands=True):
        return [collections.namedtuple("Seen", "inode path")(0, "/proc/self/ns/net")] if self.standing else []

    def links(self, where):
        return list(self.standing)

    def addressed(self):
        return set()

    def delete_link(self, step):
        self.deleted.append(step.name)
        self.vlan_links.pop(step.name, None)


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(vlan, "STATE", str(tmp_path / "vlan"))
    monkeypatch.setattr(vlan, "LEGACY", str(tmp_path / "vlan-made"))
    monkeypatch.setattr(state, "LOCKS", str(tmp_path / "locks"))


def test_a_link_of_that_name_is_used_when_it_is_that_vlan_and_refused_when_it_is_anything_else(records):
    node = Node({"eth0.20": (20, "eth0", 5, False), "eth0.30": (31, "eth0", 6, False),
                 "eth1.20": (20, "eth0", 8, False)},
                {"eth0.40": Link(7, "eth0.40", "veth", "", "", 0, None, "", "", 0)})
    assert vlan.claim(node, "eth0", 20, make=False) == vlan.link_lines("eth0", 20, make=False)
    assert vlan.claim(node, "eth0", 20, make=True) is None      # made meanwhile: back to the shared lock
    assert vlan.claim(node, "eth0", 50, make=False) is None     # missing: the exclusive lock, to make it
    assert vlan.claim(node, "eth0", 50, make=True) == vlan.link_lines("eth0", 50, make=True)
    for master, vid, said in (("eth0", 30, "is VLAN 31 on eth0, not VLAN 30 on eth0"),
                              ("eth1", 20, "is VLAN 20 on eth0, not VLAN 20 on eth1"),
                              ("eth0", 40, "is a veth, not a VLAN link")):
        with pytest.raises(CniError) as refused:
            vlan.claim(node, master, vid, make=False)
        assert refused.value.code == MASTER_FAILURE and said in refused.value.details
        assert "try again" not in refused.value.details


def test_the_last_attachment_off_a_link_the_plugin_made_removes_it_and_no_other_does(records):
    node = Node({"eth0.20": (20, "eth0", 9, True)}, {})
    for cid in ("a", "b"):
        vlan.record(node, vlan.record_path("net1", cid, "eth0"), "eth0", 20)
    vlan.record(node, vlan.record_path("net2", "c", "net1"), "eth0", 20)     # another network on the same link
    vlan.leave(node, vlan.record_path("net1", "a", "eth0"))
    vlan.leave(node, vlan.record_path("net1", "b", "eth0"))
    assert node.deleted == [] and vlan.LEDGER.in_use(node, "link") == {"eth0.20"}
    vlan.leave(node, vlan.record_path("net2", "c", "net1"))
    assert node.deleted == ["eth0.20"]
    vlan.leave(node, vlan.record_path("net2", "c", "net1"))       # a DEL repeated: nothing recorded, nothing done
    assert node.deleted == ["eth0.20"]


def test_a_link_the_node_owner_made_or_one_made_anew_by_someone_else_is_never_removed(records):
    node = Node({"eth0.20": (20, "eth0", 5, False), "eth0.30": (30, "eth0", 12, False)}, {})
    vlan.record(node, vlan.record_path("net", "a", "eth0"), "eth0", 20)
    vlan.leave(node, vlan.record_path("net", "a", "eth0"))
    # An earlier version recorded that it made eth0.30 as ifindex 11; that one went with its master, and the
    # owner made index 12.
    node.save_record(vlan.legacy_path("eth0.30"), {"master": "eth0", "vlan": 30, "ifindex": 11})
    vlan.record(node, vlan.record_path("net", "b", "eth0"), "eth0", 30)
    vlan.leave(node, vlan.record_path("net", "b", "eth0"))
    assert node.deleted == [] and node.load_records(vlan.LEGACY) == {}


def test_a_link_the_plugin_made_stays_while_anything_else_stands_on_it(records):
    on_it = Link(3, "eth0", "macvlan", "", "", 9, None, "", "", 0)     # another plugin's, in some netns
    node = Node({"eth0.20": (20, "eth0", 9, True)}, {}, standing=(on_it,))
    vlan.record(node, vlan.record_path("net", "a", "eth0"), "eth0", 20)
    vlan.leave(node, vlan.record_path("net", "a", "eth0"))
    assert node.deleted == []
    node.standing = ()
    assert vlan.collect(node, "net", set()) == [] and node.deleted == ["eth0.20"]


def test_gc_takes_attachments_that_are_gone_off_their_link_and_then_removes_it(records):
    node = Node({"eth0.20": (20, "eth0", 9, True)}, {})
    vlan.record(node, vlan.record_path("net", "gone", "eth0"), "eth0", 20)
    vlan.record(node, vlan.record_path("net", "live", "eth0"), "eth0", 20)
    assert vlan.collect(node, "net", {("live", "eth0")}) == [] and node.deleted == []
    assert vlan.collect(node, "net", set()) == [] and node.deleted == ["eth0.20"]


def test_del_for_a_config_that_no_longer_says_vlan_still_takes_the_attachment_off(records):
    node = Node({"eth0.20": (20, "eth0", 9, True)}, {})
    vlan.record(node, vlan.record_path("n", "c1", "eth0"), "eth0", 20)
    out = io.StringIO()
    env = {**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}
    conf = {k: v for k, v in GOOD.items() if k != "ipam"}
    assert plugin.main(env, json.dumps(conf).encode(), out, make_runner=lambda echo, timeout: node) == 0
    assert out.getvalue() == "" and node.deleted == ["eth0.20"]
