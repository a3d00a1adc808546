"""The benchmark's kernel half, as a smoke run: it works, and the process
budget holds (counted by strace, not by the plugin). No timing is asserted."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(BENCH), "--cycles", "1", "--links", "0", "--kernel-json", str(out)],
                   check=True, timeout=900)
    figures = json.loads(out.read_text())
    assert set(figures["median"]) == {"ipvlan-ip", "go ipvlan", "floor, 2 ip", "floor, 3 ip", "ipvlan-ip hostAccess",
                                      "ipvlan-ip vlan", "ipvlan-ip vlan, made", "ipvlan-ip ipv6.slaac",
                                      "ipvlan-ip l3s", "ipvlan-ip l3s proxyNeighbors",
                                      "ipvlan-ip hostAccess serviceCIDRs"}
    ours = figures["processes"]["ipvlan-ip"]
    assert ours["ADD"] == {"ip": 2, "IPAM": 1, "other": 0}
    assert ours["DEL"] == {"ip": 1, "IPAM": 1, "other": 0}
    assert figures["processes"]["go ipvlan"]["ADD"]["IPAM"] == 1     # strace sees the Go plugin's exec too
    with_host = figures["processes"]["ipvlan-ip hostAccess"]       # the host's link and routes: one more each
    assert with_host["ADD"] == {"ip": 3, "IPAM": 1, "other": 0}
    assert with_host["DEL"] == {"ip": 2, "IPAM": 1, "other": 0}
    # vlan: its link made (or used) by the create batch, removed by an ioctl: no process more;
    # ipv6.slaac: sysctls written in-process; l3s is l2's count.
    for name in ("ipvlan-ip vlan", "ipvlan-ip vlan, made", "ipvlan-ip ipv6.slaac", "ipvlan-ip l3s"):
        assert figures["processes"][name] == ours, name
    # serviceCIDRs: its routes are lines of the configure batch: no process more than hostAccess's.
    assert figures["processes"]["ipvlan-ip hostAccess serviceCIDRs"] == with_host
    # proxyNeighbors: its entries and route in one batch each way, one `ip` more per call.
    assert figures["processes"]["ipvlan-ip l3s proxyNeighbors"] == with_host
