"""A kernel that cannot make ipvlan or VLAN links, made real (the fixture
without_driver, tests/conftest.py): ADD's error says what to do, nothing is
left behind, and `doctor` names it. On a host whose kernel has no ipvlan (as
this project's CI machine), the ipvlan case runs there, before the VM boots;
where the driver must be taken out, the whole kernel is changed, so that runs
alone, after every other kernel test (tests/kernel_runner.py), and puts it back."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import call_plugin, reservations
from .test_doctor import doctor, write
from .test_plugin import links_in, netconf


@pytest.mark.parametrize("module, extra, fix", [
    pytest.param("ipvlan", {}, "modprobe ipvlan", marks=[pytest.mark.native, pytest.mark.no_ipvlan]),
    pytest.param("8021q", {"vlan": 20}, "modprobe 8021q", marks=pytest.mark.alone)])
def test_add_says_what_to_do_leaves_nothing_and_doctor_names_it(module, extra, fix, without_driver, master, netns,
                                                                 ipam_dir, tmp_path):
    without_driver(module)
    conf = netconf(master, ipam_dir, **extra)
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}", container_id=netns)
    assert reply.code == 1 and reply.out["code"] == 100, reply.stdout
    assert fix in reply.out["msg"] and "Unknown device type" in reply.out["details"]     # what to do, and the raw words
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    assert subprocess.run(["ip", "link", "show", "type", "vlan"], capture_output=True, text=True).stdout == ""

    code, report = doctor(write(tmp_path, conf))
    found = {f["check"]: f for f in report["node"]}
    kind = "ipvlan" if module == "ipvlan" else "vlan"
    assert code == 1 and found[kind]["status"] == "failure" and fix in found[kind]["fix"], report
