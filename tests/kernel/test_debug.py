"""The debug echo shows exactly what runs, and `plan` shows the same beforehand."""

import json
import re
import subprocess

from .conftest import PLUGIN, call_plugin
from .test_plugin import ok


def commands_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_add_and_del_run_what_plan_printed(master, netns, tmp_path):
    ipam_result = {"cniVersion": "1.0.0", "ips": [{"address": "10.60.0.7/24", "gateway": "10.60.0.1"},
                                                  {"address": "fd60::7/64", "gateway": "fd60::1"}],
                   "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    conf = {"cniVersion": "1.0.0", "name": "dbg", "type": "ipvlan-ip", "master": master, "mtu": 1400,
            "logFile": str(tmp_path / "log"), "ipam": {"type": "test-ipam", "result": ipam_result}}
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
        sysctls = [line for line in commands_of(planned) if " sysctl " in line]
        # Sysctls are written in-process; the echo prints them as the equivalent command.
        assert commands_of(reply.stderr) == commands_of(planned), reply.stderr
        assert len(sysctls) == (4 if command == "ADD" else 0)      # arp_notify, accept_ra, two for IPv6

    log = (tmp_path / "log").read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* dbg1 ", line) for line in log)
    assert any("# response:" in line for line in log) and any("# request:" in line for line in log)
