"""Faults and load against the real kernel: each `ip` call of ADD failing in
turn, an IPAM plugin printing garbage, a runtime racing ADD and DEL of one
container, 32 containers at once, and a soak. After each: no link, no
reservation, and the error says which step failed."""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ipvlan_ip.commands import temporary_name

from ..conftest import SYSTEM_PATH
from .conftest import call_plugin, reservations
from .test_plugin import addresses_in, links_in, netconf, ok

REPO = Path(__file__).resolve().parents[2]

# ADD runs `ip` twice: read the master and create the link in one batch, then configure it in another.
ADD_STEPS = {1: "failed to lookup master", 2: "failed to configure eth0"}


def failing_ip(tmp_path: Path, call: int) -> dict:
    """An `ip` first in PATH that fails its call-th run and passes the others
    to the real one: the environment that makes the plugin use it."""
    wrapper = tmp_path / "bin" / "ip"
    wrapper.parent.mkdir()
    wrapper.write_text(f"""#!/bin/sh
n=$(( $(cat {tmp_path}/ip-calls 2>/dev/null || echo 0) + 1 )); echo $n > {tmp_path}/ip-calls
[ $n = {call} ] && {{ echo "injected failure of ip call $n" >&2; exit 2; }}
exec /usr/sbin/ip "$@"
""")
    wrapper.chmod(0o755)
    return {"PATH": f"{wrapper.parent}:{SYSTEM_PATH}"}


def host_has_link(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


@pytest.mark.parametrize("call", sorted(ADD_STEPS))
def test_add_with_each_ip_call_failing_in_turn_leaves_nothing(call, master, netns, ipam_dir, tmp_path):
    reply = call_plugin("ADD", netconf(master, ipam_dir), f"/run/netns/{netns}", container_id="fault",
                        env=failing_ip(tmp_path, call))
    assert reply.code == 1 and reply.out["code"] in (100, 103), reply.stdout
    assert f"injected failure of ip call {call}" in reply.out["details"]
    assert ADD_STEPS[call] in reply.out["details"]                  # names the step that failed
    assert ("link add link" if call == 1 else "link set dev") in reply.out["details"]   # and quotes its command
    assert links_in(netns) == ["lo"] and not host_has_link(temporary_name("fault", "eth0"))
    assert reservations(ipam_dir) == []
    assert "Traceback" not in reply.stderr


def test_ipam_printing_garbage_is_released(master, netns, tmp_path):
    record = tmp_path / "calls"
    conf = {"cniVersion": "1.0.0", "name": "garbage", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "test-ipam", "record": str(record), "garbage": {"ADD": "{\"ips\": [oops"}}}
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}")
    assert reply.code == 1 and reply.out["code"] == 101 and "printed no JSON result" in reply.out["details"]
    assert [json.loads(line)["command"] for line in record.read_text().splitlines()] == ["ADD", "DEL"]
    assert links_in(netns) == ["lo"]


@pytest.mark.parametrize("delay", [0.5, 2.5])
def test_racing_add_and_del_of_one_container_ends_attached_or_removed(delay, master, netns, ipam_dir):
    # A runtime retrying: DEL starts while ADD is still running.
    conf, path = netconf(master, ipam_dir), f"/run/netns/{netns}"
    with ThreadPoolExecutor(2) as pool:
        adding = pool.submit(call_plugin, "ADD", conf, path)
        time.sleep(delay)
        deleting = pool.submit(call_plugin, "DEL", conf, path)
        added, deleted = adding.result(), deleting.result()
    assert deleted.code == 0, deleted.stdout
    if "eth0" in links_in(netns):           # DEL ran first, then ADD: fully attached
        address = ok(added)["ips"][0]["address"]
        assert addresses_in(netns) == {address} and reservations(ipam_dir) == [address.split("/")[0]]
    else:                                   # ADD ran first, then DEL: fully removed
        assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    ok(call_plugin("DEL", conf, path))
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []


def stress(*args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "stress.py"), "--here", *args],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.long(55)
def test_32_containers_at_once_on_one_master():
    # stress.py asserts per round: every call succeeded, distinct addresses and
    # temporary names, no link, reservation, file or process left.
    assert "1 cycles of 32 ADD + 32 DEL" in stress("--cycles", "1", "--parallel", "32")


@pytest.mark.long(75)
def test_soak_of_30_cycles_on_one_master():
    assert "30 cycles of 1 ADD + 1 DEL" in stress("--cycles", "30")
