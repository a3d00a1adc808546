"""A conflist [ipvlan-ip, tuning] driven as libcni drives it, through
`ipvlan-ip conflist`, with ipvlan-ip put in the plugin dir by `ipvlan-ip install`."""

import json
import subprocess

from .conftest import GO_PLUGINS, PLUGIN, ipj, reservations
from .test_plugin import host_local, link_in, links_in


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PLUGIN, *args], capture_output=True, text=True)


def test_conflist_with_tuning(master, netns, ipam_dir, tmp_path):
    bin_dir = tmp_path / "bin"
    assert run("install", "--cni-bin-dir", str(bin_dir)).returncode == 0
    conflist = {"cniVersion": "1.0.0", "name": "tuned", "plugins": [
        {"type": "ipvlan-ip", "master": master,
         "ipam": host_local(ipam_dir, subnet="10.70.0.0/24", gateway="10.70.0.1")},
        {"type": "tuning", "mtu": 1300, "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}]}
    (tmp_path / "tuned.conflist").write_text(json.dumps(conflist))
    common = [str(tmp_path / "tuned.conflist"), "--netns", f"/run/netns/{netns}", "--container-id", "t1",
              "--cni-path", f"{bin_dir}:{GO_PLUGINS}", "--cache-dir", str(tmp_path / "cache")]

    added = run("conflist", "ADD", *common)
    assert added.returncode == 0, added.stderr
    result = json.loads(added.stdout)
    assert result["interfaces"][0]["name"] == "eth0"
    link = link_in(netns)
    assert link["linkinfo"]["info_kind"] == "ipvlan" and link["mtu"] == 1300      # tuning ran after us
    sysctl = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_filter"],
                            capture_output=True, text=True)
    assert sysctl.stdout.strip() == "1"
    cached = json.loads((tmp_path / "cache" / "tuned-t1-eth0").read_text())
    assert cached["result"] == result

    checked = run("conflist", "CHECK", *common)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    deleted = run("conflist", "DEL", *common)
    assert deleted.returncode == 0, deleted.stderr
    assert "eth0" not in links_in(netns) and reservations(ipam_dir) == []
    assert not (tmp_path / "cache" / "tuned-t1-eth0").exists()
    assert ipj("link", "show", "dev", master)   # the master is untouched
