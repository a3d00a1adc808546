"""The pipe end to end: the project's own runner makes an ipvlan link in a
netns and reads it back from the kernel."""

from ipvlan_ip import commands
from ipvlan_ip.commands import LinkSpec, Netns
from ipvlan_ip.node.runner import Runner

from .conftest import ip, ipj


def test_runner_creates_and_reads_back_an_ipvlan_link(netns, make_master):
    master = make_master(ns=netns)
    target = Netns(f"/run/netns/{netns}", netns)
    run = Runner()
    spec = LinkSpec(master=master, tmp_name="ipvl0", ifname="ipvl0", mode="l2")

    docs, failures = run.run_batch(commands.create_on_master(spec, target, in_container=True))
    assert failures == [] and docs[0][0]["ifname"] == master             # the master, read in the same process
    present = run.interfaces(target)
    assert {"lo", master, "ipvl0"} <= set(present) and "ipvl1" not in present
    assert present["ipvl0"].kind == "ipvlan" and present[master].kind == "veth"     # as `ip -d link` says
    assert present["ipvl0"].mac == present[master].mac                                   # a slave has its master's
    [link] = ipj("-d", "link", "show", "dev", "ipvl0", ns=netns)

    assert link["linkinfo"]["info_kind"] == "ipvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "l2"
    assert link["link"] == master

    run.run(commands.delete_link(target, "ipvl0"))
    assert "ipvl0" not in run.interfaces(target)
    assert [link["ifname"] for link in ipj("link", "show", ns=netns) if link["ifname"] == "ipvl0"] == []
    ip("link", "show", master, ns=netns)  # the master survives its slave
