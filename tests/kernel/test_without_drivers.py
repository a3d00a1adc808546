"""A kernel that cannot make ipvlan or VLAN links, made real: the driver
unloaded, and its loading made to fail by pointing the kernel's modprobe at
/bin/false, as on a cloud image built without it. ADD's error says what to
do, nothing is left behind, and `doctor` names it. The whole kernel is
changed, so these run alone, after every other kernel test
(tests/kernel_runner.py), and put it back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import call_plugin, reservations
from .test_doctor import doctor, write
from .test_plugin import links_in, netconf

pytestmark = pytest.mark.alone

MODPROBE = Path("/proc/sys/kernel/modprobe")


@pytest.fixture
def without(request):
    """without(module): the driver unloaded and unloadable until the test ends."""
    saved = MODPROBE.read_text()

    def unload(module: str) -> None:
        if Path(f"/sys/module/{module}").exists():
            done = subprocess.run(["rmmod", module], capture_output=True, text=True)
            assert done.returncode == 0, f"rmmod {module} (a link left on it by another test?): {done.stderr}"
        MODPROBE.write_text("/bin/false")
    yield unload
    MODPROBE.write_text(saved)


@pytest.mark.parametrize("module, extra, fix", [("ipvlan", {}, "modprobe ipvlan"),
                                                 ("8021q", {"vlan": 20}, "modprobe 8021q")])
def test_add_says_what_to_do_leaves_nothing_and_doctor_names_it(module, extra, fix, without, master, netns,
                                                                 ipam_dir, tmp_path):
    without(module)
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
