"""The debug echo shows exactly what runs, and `plan` shows the same beforehand."""

import json
import re
import subprocess

import pytest

from .conftest import PLUGIN, call_plugin
from .test_plugin import ok


def commands_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("extra, sysctls", [({}, 4), ({"vlan": 20}, 6)], ids=["plain", "vlan"])
def test_add_and_del_run_what_plan_printed(master, netns, tmp_path, extra, sysctls):
    """plan runs ADD and DEL against a runner that records: on a fresh master, the plugin runs what it printed,
    line for line; with a VLAN, the VLAN link's lines, and DEL removing the link, too."""
    ipam_result = {"cniVersion": "1.0.0", "ips": [{"address": "10.60.0.7/24", "gateway": "10.60.0.1"},
                                                  {"address": "fd60::7/64", "gateway": "fd60::1"}],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    # A network of each case's own: the two run at once, and a DEL takes back what its network's records say.
    conf = {"cniVersion": "1.0.0", "name": f"dbg{len(extra)}", "type": "ipvlan-ip", "master": master, "mtu": 1400,
            "logFile": str(tmp_path / "log"), "ipam": {"type": "test-ipam", "result": ipam_result}, **extra}
    (tmp_path / "conf").write_text(json.dumps(conf))
    (tmp_path / "ipam").write_text(json.dumps(ipam_result))
    path = f"/run/netns/{netns}"
    for command in ("ADD", "DEL"):
        planned = subprocess.run([PLUGIN, "plan", str(tmp_path / "conf"), "--netns", path, "--ifname", "eth0",
                                  "--command", command, "--ipam-result", str(tmp_path / "ipam"),
                                  "--container-id", "dbg1"],
                                 capture_output=True, text=True, check=True).stdout
        reply = call_plugin(command, conf, path, container_id="dbg1",
                            env={"IPVLAN_IP_DEBUG": "1", "IPVLAN_IP_LOG_DIR": str(tmp_path)})
        ok(reply)
        written = [line for line in commands_of(planned) if " sysctl " in line or line.startswith("sysctl ")]
        # Sysctls are written in-process; the echo prints them as the equivalent command.
        assert commands_of(reply.stderr) == commands_of(planned), reply.stderr
        # arp_notify, accept_ra, two for IPv6; accept_ra and autoconf on a VLAN link the plugin makes
        assert len(written) == (sysctls if command == "ADD" else 0)

    log = (tmp_path / "log").read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* dbg1 ", line) for line in log)
    assert any("# response:" in line for line in log) and any("# request:" in line for line in log)
