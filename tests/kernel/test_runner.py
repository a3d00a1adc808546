"""The pipe end to end: the project's own runner makes an ipvlan link in a
netns and reads it back from the kernel."""

from ipvlan_ip import commands
from ipvlan_ip.commands import LinkSpec, Netns
from ipvlan_ip.runner import Runner

from .conftest import ip, ipj


def test_runner_creates_and_reads_back_an_ipvlan_link(netns, make_master):
    master = make_master(ns=netns)
    target = Netns(f"/run/netns/{netns}", netns)
    run = Runner()
    spec = LinkSpec(master=master, tmp_name="ipvl0", ifname="ipvl0", mode="l2")

    run.run(commands.create_link(spec, target, in_container=True))
    [link] = run.run_json(commands.show_link(target, "ipvl0"))[0]

    assert link["linkinfo"]["info_kind"] == "ipvlan"
    assert link["linkinfo"]["info_data"]["mode"] == "l2"
    assert link["link"] == master

    run.run(commands.delete_link(target, "ipvl0"))
    assert [l["ifname"] for l in ipj("link", "show", ns=netns) if l["ifname"] == "ipvl0"] == []
    ip("link", "show", master, ns=netns)  # the master survives its slave
