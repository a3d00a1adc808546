"""The command builder: config in, exact argv out."""

import pytest

from ipvlan_ip import commands
from ipvlan_ip.commands import Addressing, LinkSpec, Netns
from ipvlan_ip.node.echo import shell_line

NAMED = Netns("/run/netns/blue", "blue")
PROC = Netns("/proc/42/ns/net")
SPEC = LinkSpec(master="eth0", tmp_name="ipvl1234abcd", ifname="net1", mode="l3", mtu=1400)


def test_ip_enters_named_netns_with_dash_n_and_others_with_nsenter():
    assert commands.ip(None, "link") == ("ip", "link")
    assert commands.ip(NAMED, "link") == ("ip", "-n", "blue", "link")
    assert commands.ip(PROC, "link") == ("nsenter", "--net=/proc/42/ns/net", "ip", "link")


def test_master_read_and_link_creation_on_the_host_are_one_batch_placing_the_link_in_the_container():
    cmd = commands.create_on_master(SPEC, NAMED, in_container=False)
    assert cmd.argv == ("ip", "-j", "-d", "-batch", "-")
    assert cmd.batch == ("link show dev eth0",
                         "link add link eth0 name ipvl1234abcd netns /run/netns/blue mtu 1400 type ipvlan mode l3")


def test_master_read_and_link_creation_in_container_run_inside_it():
    cmd = commands.create_on_master(LinkSpec("-n", "t", "net1", "l2", flag="private"), NAMED, in_container=True)
    assert cmd.argv == ("ip", "-n", "blue", "-j", "-d", "-batch", "-")
    assert cmd.batch == ("link show dev -n", "link add link -n name t type ipvlan mode l2 private")


def test_the_rename_is_a_step_of_its_own_before_the_batch():
    addressing = Addressing(ips=({"address": "10.1.2.3/24"},))
    steps = [*commands.name_link(SPEC, NAMED, addressing), commands.configure_link(NAMED, SPEC, addressing)]
    assert [type(s).__name__ for s in steps] == ["SysctlWrite", "SysctlWrite", "SysctlWrite", "Rename", "Command"]
    assert shell_line(steps[3]) == "ip -n blue link set dev ipvl1234abcd name net1"
    assert not any("name net1" in line for line in steps[4].batch)   # -force must never go past a failed rename


def test_configure_batch_addresses_brings_up_routes_and_reads_back():
    addressing = Addressing(
        ips=({"address": "10.1.2.3/24", "gateway": "10.1.2.1"}, {"address": "fd00::3/64", "gateway": "fd00::1"}),
        routes=({"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.254", "priority": 5},
                {"dst": "::/0"}, {"dst": "0.0.0.0/0"}))
    cmd = commands.configure_link(NAMED, SPEC, addressing)
    assert cmd.argv == ("ip", "-n", "blue", "-j", "-force", "-batch", "-")
    assert cmd.batch == (
        "address add 10.1.2.3/24 dev net1",
        "address add fd00::3/64 dev net1 nodad",
        "link set dev net1 up",
        "route add 0.0.0.0/0 via 10.1.2.1 dev net1",
        "route add 192.168.0.0/16 via 10.1.2.254 metric 5 dev net1",
        "route add ::/0 via fd00::1 dev net1",
        "link show dev net1",
    )


def test_a_link_that_is_up_already_goes_down_first_so_that_coming_up_announces_its_addresses():
    addressing = Addressing(ips=({"address": "10.1.2.3/24", "gateway": "10.1.2.1"},), routes=())
    cmd = commands.configure_link(NAMED, SPEC, addressing, is_up=True)
    assert cmd.batch == (
        "link set dev net1 down",
        "address add 10.1.2.3/24 dev net1",
        "link set dev net1 up",
        "link show dev net1",
    )


def test_route_without_gateway_and_without_ip_gateway_stays_on_link():
    addressing = Addressing(ips=({"address": "10.1.2.3/24"},), routes=({"dst": "10.9.0.0/16", "scope": 253},))
    assert commands.route_plan(addressing) == [{"dst": "10.9.0.0/16", "scope": 253}]
    assert commands.route_words(commands.route_plan(addressing)[0]) == ["10.9.0.0/16", "scope", "253"]


def test_sysctls_are_set_on_the_temporary_name_ipv6_on_only_when_needed_and_slaac_off():
    v4 = commands.notify_sysctls(NAMED, "ipvl1", Addressing(ips=({"address": "10.0.0.2/24"},)))
    assert [(w.key, w.value) for w in v4] == [("net/ipv4/conf/ipvl1/arp_notify", "1"),
                                              ("net/ipv6/conf/ipvl1/accept_ra", "0"),
                                              ("net/ipv6/conf/ipvl1/disable_ipv6", "1")]  # IPv4 only: IPv6 off
    assert v4[1].missing_ok and v4[2].missing_ok     # a kernel booted without IPv6 has no such key
    v6 = commands.notify_sysctls(NAMED, "ipvl1", Addressing(ips=({"address": "fd00::2/64"},)))
    assert [(w.key, w.value) for w in v6] == [("net/ipv4/conf/ipvl1/arp_notify", "1"),
                                              ("net/ipv6/conf/ipvl1/accept_ra", "0"),
                                              ("net/ipv6/conf/ipvl1/disable_ipv6", "0"),
                                              ("net/ipv6/conf/ipvl1/ndisc_notify", "1")]
    assert v6[0].path == "/proc/sys/net/ipv4/conf/ipvl1/arp_notify"


@pytest.mark.parametrize("word, quoted", [("eth0", "eth0"), ("a b", '"a b"'), ('a"b', "'a\"b'"), ("-n", "-n"),
                                          ("a;b", "a;b")])
def test_batch_words_are_quoted_so_iproute2_reads_them_back(word, quoted):
    assert commands.batch_word(word) == quoted


def test_delete_and_inspect():
    assert commands.delete_link(PROC, "eth0").argv == ("nsenter", "--net=/proc/42/ns/net",
                                                       "ip", "link", "del", "dev", "eth0")
    inspect = commands.inspect_container(NAMED, "eth0")
    assert inspect.argv == ("ip", "-n", "blue", "-j", "-d", "-batch", "-")
    assert inspect.batch == ("address show dev eth0", "route show table all root 0.0.0.0/0",
                             "route show table all root ::/0", "neigh show dev eth0")


def test_temporary_name_is_per_attachment_and_a_valid_interface_name():
    a = commands.temporary_name("c1", "eth0")
    assert a == commands.temporary_name("c1", "eth0") and len(a) == 12 and a.startswith("ipvl")
    assert len({a, commands.temporary_name("c2", "eth0"), commands.temporary_name("c1", "eth1")}) == 3


def test_del_removes_the_link_and_a_leftover_temporary_link_in_one_process():
    cmd = commands.remove_attachment(NAMED, ["eth0", "ipvl0123abcd"])
    assert cmd.argv == ("ip", "-n", "blue", "-force", "-batch", "-")
    assert cmd.batch == ("link del dev eth0", "link del dev ipvl0123abcd")
