"""Fixtures for tests against a real kernel: throwaway network namespaces,
veth masters, LANs on a master's far side, and a way to call the plugin as a
runtime does."""

import fcntl
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
import sh

from ipvlan_ip.capabilities import host_access

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from vm import plugin_launcher  # noqa: E402

from .runtimes import Podman  # noqa: E402

# What a runtime runs: the launcher `ipvlan-ip install` writes, or the file
# IPVLAN_IP_TEST_PLUGIN names (tests/kernel/test_standalone.py sets it).
PLUGIN = os.environ.get("IPVLAN_IP_TEST_PLUGIN") or plugin_launcher()
GO_PLUGINS = "/usr/lib/cni"
TEST_PLUGINS = str(Path(__file__).parent / "plugins")
# The first octet of the LANs' addresses instead of 10 (make_lan): test_nodes.py runs tests in the node
# roots while the same tests run beside them, and the host's routes to one address are one.
NET_FIRST = os.environ.get("IPVLAN_IP_TEST_NET_FIRST", "")


# sh for driving ip by hand: it reads like the command line, and time does
# not matter here (the plugin itself spawns through subprocess).
_ip = sh.Command("ip").bake(_tty_out=False)


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    """`ip [-n NS] ARGS`: its stdout. A failure fails the test, unless check=False."""
    try:
        return _ip(*(("-n", ns) if ns else ()), *args, _ok_code=[0] if check else range(256))
    except sh.ErrorReturnCode as e:
        raise AssertionError(f"ip {' '.join(args)} failed: {e.stderr.decode()}") from e


def ipj(*args: str, ns: str | None = None):
    return json.loads(ip("-j", *args, ns=ns) or "[]")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@dataclass
class Reply:
    code: int
    out: dict | None
    stdout: str
    stderr: str


def call_plugin(command: str, conf: dict | str | bytes, netns: str = "", ifname: str = "eth0",
                container_id: str = "c1", env: dict | None = None, plugin: str = PLUGIN, timeout: float = 120) -> Reply:
    stdin = conf if isinstance(conf, bytes) else (conf if isinstance(conf, str) else json.dumps(conf)).encode()
    full_env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
                "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": f"{GO_PLUGINS}:{TEST_PLUGINS}",
                **(env or {})}
    done = subprocess.run([plugin], input=stdin, env={k: v for k, v in full_env.items() if v is not None},
                          capture_output=True, timeout=timeout)
    stdout = done.stdout.decode()
    return Reply(done.returncode, json.loads(stdout) if stdout.strip() else None, stdout, done.stderr.decode())


@pytest.fixture
def make_netns():
    """make_netns() -> name of a new named netns (path /run/netns/NAME), deleted afterwards."""
    made = []

    def make() -> str:
        name = unique("cni-test-")
        ip("netns", "add", name)
        ip("link", "set", "lo", "up", ns=name)
        made.append(name)
        return name
    yield make
    for name in made:
        ip("netns", "del", name, check=False)


@pytest.fixture
def make_master():
    """make_master(ns=None, mtu=None) -> an up veth end to enslave, removed afterwards."""
    made = []

    def make(ns: str | None = None, mtu: int | None = None) -> str:
        name = unique("mst")
        ip("link", "add", name, *(("mtu", str(mtu)) if mtu else ()), "type", "veth", "peer", "name", name + "p", ns=ns)
        ip("link", "set", name, "up", ns=ns)
        ip("link", "set", name + "p", "up", ns=ns)
        made.append((name, ns))
        return name
    yield make
    for name, ns in made:
        ip("link", "del", name, ns=ns, check=False)


@pytest.fixture
def master(make_master) -> str:
    return make_master()


@pytest.fixture
def netns(make_netns) -> str:
    return make_netns()


@pytest.fixture
def ipam_dir(tmp_path) -> Path:
    """A host-local dataDir of the test's own, to check reservations."""
    d = tmp_path / "ipam"
    d.mkdir()
    return d


def reservations(ipam_dir: Path) -> list[str]:
    """IPs host-local holds, over all networks and data dirs below ipam_dir."""
    return sorted(p.name for p in ipam_dir.rglob("*") if p.is_file() and (p.name[0].isdigit() or ":" in p.name))


@pytest.fixture(scope="session")
def podman(tmp_path_factory, worker_id):
    """One podman for all xdist workers of this run: a second one would find
    the first one's lock segment (/dev/shm/libpod_lock) and refuse to start."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    pm = Podman(shared / "podman", PLUGIN)
    with open(shared / "podman.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (pm.root / "ready").exists():
            pm.root.mkdir()
            pm.prepare()
            (pm.root / "ready").touch()
    yield pm
    if pm.started:     # what a failed test left running
        pm.remove(*pm.started, check=False)


class Lan(NamedTuple):
    """A master whose far side (the LAN, a netns on its veth peer) has
    `{net}.0.1`, the host `{net}.0.2` on the master. Each test has a `net`
    of its own: a host route is one per address, whichever link it goes
    through, so two tests on one address would take it from each other."""
    master: str
    ns: str
    net: str

    @property
    def host(self) -> str:
        return f"{self.net}.0.2"

    @property
    def lan(self) -> str:
        return f"{self.net}.0.1"

    @property
    def port(self) -> int:
        """A TCP port of this LAN's own on the host: a server that cannot bind would leave its client
        talking to another test's."""
        first, second = map(int, self.net.split("."))
        return 8000 + (first - 10) * 256 + second


@pytest.fixture
def make_lan(make_netns, make_master):
    made = []

    def make(net: str) -> Lan:
        net = NET_FIRST + net[net.index("."):] if NET_FIRST else net
        master, lan_ns = make_master(), make_netns()
        ip("link", "set", master + "p", "netns", lan_ns)
        ip("address", "add", f"{net}.0.1/24", "dev", master + "p", ns=lan_ns)
        ip("link", "set", master + "p", "up", ns=lan_ns)
        ip("address", "add", f"{net}.0.2/24", "dev", master)
        made.append(master)
        return Lan(master, lan_ns, net)
    yield make
    for master in made:
        subprocess.run(["ip", "link", "del", host_access.link_name(master)], capture_output=True)
