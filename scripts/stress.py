"""Load on one master: PARALLEL ADDs at once (each into its own netns), then
PARALLEL DELs at once, CYCLES times, with host-local IPAM. After every round:
all calls succeeded, the addresses and temporary link names were distinct, and
nothing is left (no link on the master, no reservation); at the end, no file
but host-local's own two and no stray process. With --vlan N the ADDs race to
make the master's VLAN N link: each round checks that exactly one was made,
and that the round's last DEL removed it. Prints cycles per second. In the
qemu VM when this kernel has no ipvlan.

    python scripts/stress.py [--cycles 200] [--parallel 1] [--vlan N] [--timeout S]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sh

sys.path.insert(0, str(Path(__file__).parent))
from vm import host_has_ipvlan, plugin_launcher, run_in_vm  # noqa: E402

from ipvlan_ip.commands import temporary_name  # noqa: E402

PLUGIN = plugin_launcher()
# sh for the set-up and the look-around, which read like the commands; the
# plugin calls go through subprocess, as a runtime makes them.
ip = sh.Command("ip").bake(_tty_out=False)


# Every process this run starts inherits this variable, so strays are found
# even while other tests run processes of the same names.
RUN_TAG = ("IPVLAN_IP_STRESS_RUN", uuid.uuid4().hex)


def call(command: str, conf: bytes, netns: str, container: str) -> dict | None:
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
           RUN_TAG[0]: RUN_TAG[1]}
    done = subprocess.run([PLUGIN], input=conf, env=env, capture_output=True, timeout=300)
    if done.returncode:
        raise SystemExit(f"stress: {command} {container} failed: {done.stdout.decode()} {done.stderr.decode()}")
    return json.loads(done.stdout) if done.stdout.strip() else None


def leftover_links(namespaces: list[str]) -> list[str]:
    found = []
    for ns in namespaces:
        out = ip("-n", ns, "-j", "link", "show", _ok_code=range(256))
        found += [f"{ns}/{link['ifname']}" for link in json.loads(out or "[]") if link["ifname"] != "lo"]
    return found


def strays() -> list[str]:
    """Command lines of processes of this run still alive."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and "=".join(RUN_TAG).encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:     # it ended while we looked
            pass
    return found


def vlan_links(master: str) -> list[str]:
    links = json.loads(ip("-j", "-d", "link", "show", "type", "vlan") or "[]")
    return [link["ifname"] for link in links if link.get("link") == master]


def stress(cycles: int, parallel: int, vlan: int | None, timeout: float | None = None) -> int:
    master = f"st{uuid.uuid4().hex[:6]}"
    ip("link", "add", master, "type", "veth", "peer", "name", master + "p")
    ip("link", "set", master, "up")
    namespaces = [f"stress-{n}-{uuid.uuid4().hex[:4]}" for n in range(parallel)]
    for ns in namespaces:
        ip("netns", "add", ns)
    with tempfile.TemporaryDirectory(prefix="ipvlan-stress-") as workdir:
        settings = {"cniVersion": "1.0.0", "name": "stress", "type": "ipvlan-ip", "master": master,
                    "ipam": {"type": "host-local", "subnet": "10.124.0.0/16", "dataDir": workdir}}
        conf = json.dumps({**settings, **({"vlan": vlan} if vlan else {}),
                           **({"timeout": timeout} if timeout else {})}).encode()
        start = time.monotonic()
        try:
            with ThreadPoolExecutor(parallel) as pool:
                for cycle in range(cycles):
                    ids = [f"s{cycle}x{n}" for n in range(parallel)]
                    assert len({temporary_name(i, "eth0") for i in ids}) == parallel, "temporary names collide"
                    added = list(pool.map(lambda a: call("ADD", conf, *a), zip(namespaces, ids, strict=True)))
                    addresses = [r["ips"][0]["address"] for r in added]
                    assert len(set(addresses)) == parallel, f"addresses not distinct: {addresses}"
                    if vlan:
                        made = vlan_links(master)
                        assert made == [f"{master}.{vlan}"], f"cycle {cycle}: VLAN links on {master}: {made}"
                    list(pool.map(lambda a: call("DEL", conf, *a), zip(namespaces, ids, strict=True)))
                    left = sorted(p.name for p in Path(workdir, "stress").glob("10.*"))
                    assert not left, f"cycle {cycle}: reservations left: {left}"
                    assert not leftover_links(namespaces), f"cycle {cycle}: links left: {leftover_links(namespaces)}"
                    assert not vlan_links(master), f"cycle {cycle}: VLAN link left: {vlan_links(master)}"
            elapsed = time.monotonic() - start
            files = sorted(str(p.relative_to(workdir)) for p in Path(workdir).rglob("*") if p.is_file())
            assert files == ["stress/last_reserved_ip.0", "stress/lock"], f"files left: {files}"
        finally:
            for ns in namespaces:
                ip("netns", "del", ns, _ok_code=range(256))
            ip("link", "del", master, _ok_code=range(256))
    left = strays()
    on = f"VLAN {vlan} of one master" if vlan else "one master"
    print(f"stress: {cycles} cycles of {parallel} ADD + {parallel} DEL on {on} in {elapsed:.1f} s: "
          f"{cycles / elapsed:.3f} cycles/s; nothing left (links, reservations, files); "
          f"processes left: {left or 'none'}")
    return 1 if left else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--vlan", type=int, help="ADDs race to make this VLAN of the master, once a round")
    parser.add_argument("--timeout", type=float, help="the config's timeout: a burst against a tighter deadline, "
                                                       "as on a slower node")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.here or host_has_ipvlan():
        return stress(args.cycles, args.parallel, args.vlan, args.timeout)
    vlan = ["--vlan", str(args.vlan)] if args.vlan else []
    timeout = ["--timeout", str(args.timeout)] if args.timeout else []
    return run_in_vm([".venv/bin/python", "scripts/stress.py", "--here", "--cycles", str(args.cycles),
                      "--parallel", str(args.parallel), *vlan, *timeout])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
