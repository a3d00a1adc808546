"""Faults and load against the real kernel: each `ip` call of ADD failing in
turn, its sysctl writes refused, an IPAM plugin printing garbage, DEL arriving while ADD of the same
container runs, 32 containers at once, and a soak. After each: no link, no
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
from .conftest import PLUGIN, call_plugin, reservations
from .test_plugin import links_in, netconf, ok

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


def test_sysctl_writes_refused_by_the_kernel_roll_the_add_back(master, netns, ipam_dir, tmp_path):
    """The plugin run as in a container whose /proc/sys is read-only (the kernel answers EROFS): ADD
    stops at its first sysctl write, after the link was made and the address reserved, and undoes both."""
    confined = tmp_path / "ipvlan-ip-ro-sysctl"
    confined.write_text("#!/bin/sh\nexec unshare --mount sh -c 'mount --bind /proc/sys /proc/sys && "
                        f"mount -o remount,bind,ro /proc/sys && exec {PLUGIN}'\n")
    confined.chmod(0o755)
    reply = call_plugin("ADD", netconf(master, ipam_dir), f"/run/netns/{netns}", container_id="ro",
                        plugin=str(confined))
    assert reply.code == 1 and reply.out["code"] == 100, reply.stdout
    assert "arp_notify" in reply.out["details"] and "Read-only file system" in reply.out["details"], reply.stdout
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
    ok(call_plugin("DEL", netconf(master, ipam_dir), f"/run/netns/{netns}", container_id="ro"))


def test_ipam_printing_garbage_is_released(master, netns, tmp_path):
    record = tmp_path / "calls"
    conf = {"cniVersion": "1.0.0", "name": "garbage", "type": "ipvlan-ip", "master": master,
            "ipam": {"type": "test-ipam", "record": str(record), "garbage": {"ADD": "{\"ips\": [oops"}}}
    reply = call_plugin("ADD", conf, f"/run/netns/{netns}")
    assert reply.code == 1 and reply.out["code"] == 101 and "printed no JSON result" in reply.out["details"]
    assert [json.loads(line)["command"] for line in record.read_text().splitlines()] == ["ADD", "DEL"]
    assert links_in(netns) == ["lo"]


def gate(script: Path, when: str, then: str, log: Path) -> None:
    """`script` runs `then`; first, where the shell test `when` holds, it says it got there (a file
    beside the log) and waits until DEL's log says that DEL waits for the container's lock."""
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"""#!/bin/sh
if {when}; then
  touch {log}.gate
  n=0; until grep -q '# waiting' {log} 2>/dev/null || [ $n -ge 1200 ]; do n=$((n+1)); sleep 0.1; done
fi
exec {then} "$@"
""")
    script.chmod(0o755)


@pytest.mark.parametrize("where", ["in its IPAM call", "in its configure batch"])
def test_del_arriving_while_add_runs_waits_for_it_and_removes_everything(where, master, netns, ipam_dir, tmp_path):
    """A runtime giving up on a slow ADD: DEL starts while ADD holds the container's lock. ADD waits at
    a gate, inside its lock, until DEL's own log says DEL waits: the two overlap however threads start."""
    conf, path, log, gates = netconf(master, ipam_dir), f"/run/netns/{netns}", tmp_path / "del.log", tmp_path / "g"
    if where == "in its IPAM call":
        gate(gates / "host-local", '[ "$CNI_COMMAND" = ADD ]', "/usr/lib/cni/host-local", log)
        env = {"CNI_PATH": f"{gates}:/usr/lib/cni"}
    else:       # ADD's second `ip` (ADD_STEPS)
        calls = tmp_path / "ip-calls"
        gate(gates / "ip", f'n=$(( $(cat {calls} 2>/dev/null || echo 0) + 1 )); echo $n > {calls}; [ $n = 2 ]',
             "/usr/sbin/ip", log)
        env = {"PATH": f"{gates}:{SYSTEM_PATH}"}
    with ThreadPoolExecutor(2) as pool:
        adding = pool.submit(call_plugin, "ADD", conf, path, env=env)
        for _ in range(1200):
            if Path(f"{log}.gate").exists() or adding.done():
                break
            time.sleep(0.1)
        deleted = call_plugin("DEL", {**conf, "logFile": str(log)}, path, env={"IPVLAN_IP_LOG_DIR": str(tmp_path)})
        added = adding.result()
    assert f"# waiting for another operation holding {path}" in log.read_text(), log.read_text()
    ok(added)
    ok(deleted)
    assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []


def stress(*args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "stress.py"), "--here", *args],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_32_containers_at_once_on_one_master():
    # stress.py asserts per round: every call succeeded, distinct addresses and
    # temporary names, no link, reservation, file or process left.
    assert "1 cycles of 32 ADD + 32 DEL" in stress("--cycles", "1", "--parallel", "32")


def test_soak_of_10_cycles_on_one_master():
    # Enough rounds to see anything a call leaves grow (stress.py checks after every round); the long
    # soaks are scripts/stress.py's and ./bench/run's.
    assert "10 cycles of 1 ADD + 1 DEL" in stress("--cycles", "10")
