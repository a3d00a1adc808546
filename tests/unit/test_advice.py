"""The plugin's errors say what to do (advice.py): each message the kernel or
iproute2 gives for a failure the plugin can meet maps to one, the error keeps
its code and its raw details, and an IPAM plugin's own error is left as it is.
On a kernel without ipvlan (this machine's kind), a real ADD shows it end to end."""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from ipvlan_ip import advice
from ipvlan_ip.errors import IPAM_FAILURE, LINK_FAILURE, MASTER_FAILURE, TRY_AGAIN_LATER, CniError
from ipvlan_ip.tools.install import install

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"

# As iproute2 6.1 prints them (the MTU one as an older kernel says it, and as 6.1 does).
SAID = {"Error: Unknown device type.": "modprobe ipvlan",
        "RTNETLINK answers: Device or resource busy": "macvlan",
        "RTNETLINK answers: Address already assigned to an ipvlan device": "range of its own",
        "RTNETLINK answers: Numerical result out of range": "lower `mtu`",
        "Error: mtu greater than device maximum.": "lower `mtu`",
        "RTNETLINK answers: File exists": "DEL removes it",
        "RTNETLINK answers: No such device": "ip link show dev MASTER",
        "RTNETLINK answers: Operation not permitted": "root",
        "open /run/netns/x: Permission denied": "root"}


@pytest.mark.parametrize("message", sorted(SAID))
def test_each_failure_says_what_to_do_and_keeps_its_code_and_details(message):
    details = f"failed to create ipvlan on 'eth0': `link add link eth0 ...`: {message}"
    for code in (LINK_FAILURE, MASTER_FAILURE):
        said = advice.explained(CniError(code, details))
        assert said.code == code and said.details == details and SAID[message] in said.msg


def test_errors_that_say_what_to_do_already_are_left_alone():
    for error in (CniError(TRY_AGAIN_LATER, "… Address already assigned to an ipvlan device"),
                  CniError(IPAM_FAILURE, "IPAM plugin 'x' ADD exited 1: Permission denied"),
                  CniError(LINK_FAILURE, "something no one has seen")):
        assert advice.explained(error) is error


@pytest.mark.no_ipvlan
def test_on_a_kernel_without_ipvlan_add_says_what_to_do_and_leaves_nothing(without_driver, tmp_path):
    without_driver("ipvlan")
    ns = f"advice-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "m0", "type", "veth", "peer", "name", "m1"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "m0", "up"], check=True)
        conf = {"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "m0", "linkInContainer": True,
                "ipam": {"type": "host-local", "subnet": "10.9.0.0/24", "dataDir": str(tmp_path / "ipam")}}
        env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
               "CNI_NETNS": f"/run/netns/{ns}", "CNI_PATH": "/usr/lib/cni"}
        done = subprocess.run([install(str(tmp_path / "bin"), "ipvlan-ip", force=True)], env=env,
                              input=json.dumps(conf).encode(), capture_output=True, timeout=60)
        error = json.loads(done.stdout)
        assert done.returncode == 1 and error["code"] == 100
        assert error == json.loads(ERRORS_DOC.read_text().split("<!-- ADD on a kernel without ipvlan -->\n```\n", 1)[1]
                                   .split("```", 1)[0])       # what docs/errors.md shows
        assert "modprobe ipvlan" in error["msg"] and "CONFIG_IPVLAN" in error["msg"]
        assert error["details"].endswith("Error: Unknown device type.")      # iproute2's words, kept
        assert b"modprobe ipvlan" in done.stderr
        shown = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True).stdout
        assert sorted(line.split(":")[1].strip().split("@")[0] for line in shown.splitlines()) == ["lo", "m0", "m1"]
        assert not (tmp_path / "ipam").exists()                         # nothing was allocated
    finally:
        subprocess.run(["ip", "netns", "del", ns])
