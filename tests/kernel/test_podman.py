"""podman 4 with its CNI backend attaches containers through ipvlan-ip.

The config is docs/podman/ (what the README shows), with only the paths, the
master and the subnet changed: podman's store and state live in the test's
own folder, and ipvlan-ip is put in a plugin dir of the test's own by
`ipvlan-ip install`. Each podman command costs 5-20 s in the VM, so each test
is one scenario with as few of them as it can."""

import fcntl
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import PLUGIN, reservations

DOCS = Path(__file__).resolve().parents[2] / "docs" / "podman"
IMAGE = "localhost/busybox:test"


class Podman:
    def __init__(self, root: Path):
        self.root = root
        self.net_dir = root / "net.d"
        self.bin_dir = root / "bin"
        self.node_bin = root / "node-bin"   # where tests/kernel/test_standalone.py's installer copies to
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF": str(root / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(root / "storage.conf")}
        self.started: list[str] = []

    def prepare(self) -> None:
        """Config as docs/podman says, ipvlan-ip installed, and a busybox image
        imported from a tar (no registry is reachable)."""
        self.net_dir.mkdir(parents=True)
        self.node_bin.mkdir()
        installed = subprocess.run([PLUGIN, "install", "--cni-bin-dir", str(self.bin_dir)], capture_output=True)
        assert installed.returncode == 0, installed.stderr
        conf = (DOCS / "containers.conf").read_text()
        for doc_path, ours in (("/opt/cni/bin", f'{self.bin_dir}", "{self.node_bin}'),
                               ("/etc/cni/net.d", self.net_dir)):
            assert f'"{doc_path}"' in conf, f"docs/podman/containers.conf no longer names {doc_path}"
            conf = conf.replace(f'"{doc_path}"', f'"{ours}"')
        # podman's state, which would be under /run/libpod and /var/lib/containers
        conf = conf.replace("[engine]\n", f'[engine]\ntmp_dir = "{self.root}/libpod"\n')
        (self.root / "containers.conf").write_text(conf)
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.root}/run"\ngraphroot = "{self.root}/graph"\n')
        rootfs = self.root / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
        applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in set(applets) - {"busybox"}:
            (rootfs / "bin" / applet).symlink_to("busybox")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(self.root / "rootfs.tar"), "."], check=True)
        self("import", str(self.root / "rootfs.tar"), IMAGE)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done

    def network(self, name: str, master: str, subnet: str, ipam_dir: Path, tuning: bool,
                plugin: str = "ipvlan-ip") -> str:
        """The documented conflist as network `name` on `master`, through the
        plugin file called `plugin`."""
        conflist = json.loads((DOCS / "ipvlan-net.conflist").read_text())
        ours = conflist["plugins"][0]
        ours["type"] = plugin
        ours["master"] = master
        ours["ipam"] = {"type": "host-local", "subnet": subnet, "dataDir": str(ipam_dir)}
        ours["logFile"] = str(self.root / f"{name}.log")
        ours["debug"] = True
        conflist["name"] = name
        if not tuning:
            del conflist["plugins"][1:]
        (self.net_dir / f"{name}.conflist").write_text(json.dumps(conflist))
        return name

    def start(self, *networks: str) -> dict:
        """A detached container on these networks: podman inspect's record of it."""
        name = f"t{uuid.uuid4().hex[:8]}"
        self.started.append(name)
        self("run", "-d", "--name", name, "--network", ",".join(networks), "--cap-add", "NET_RAW",
             IMAGE, "sleep", "600")
        return json.loads(self("inspect", name).stdout)[0]


@pytest.fixture(scope="session")
def podman(tmp_path_factory, worker_id):
    """One podman for all xdist workers of this run: a second one would find
    the first one's lock segment (/dev/shm/libpod_lock) and refuse to start."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    pm = Podman(shared / "podman")
    with open(shared / "podman.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (pm.root / "ready").exists():
            pm.root.mkdir()
            pm.prepare()
            (pm.root / "ready").touch()
    yield pm
    if pm.started:     # what a failed test left running
        pm("rm", "--ignore", "-f", "-t", "0", *pm.started, check=False)


def eth(container: dict, ifname: str) -> dict:
    """The container's interface as the kernel reports it, read from outside."""
    sandbox = container["NetworkSettings"]["SandboxKey"]
    shown = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-j", "-d", "address", "show", "dev", ifname],
                           capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)[0]


def ipv4(link: dict) -> str:
    return next(a["local"] for a in link["addr_info"] if a["family"] == "inet")


def inside_addresses(text: str) -> dict[str, str]:
    """Interface name -> address/prefix, from `ip -o -4 addr show` run in the container."""
    return {fields[1]: fields[3] for fields in map(str.split, text.splitlines()) if fields[2:3] == ["inet"]}


def deleted_cleanly(log: Path, container: dict) -> bool:
    """Our DEL for this container ran (its debug log says so), and deleting
    eth0 found it there, so podman's DEL went through ipvlan-ip."""
    ours = [line for line in log.read_text().splitlines() if f" {container['Id']} " in line]
    return (any('"CNI_COMMAND": "DEL"' in line for line in ours)
            and not any("already gone, which is fine: link del dev eth0" in line for line in ours))


def test_podman_containers_on_an_ipvlan_network(podman, make_master, tmp_path):
    ipam_dir = tmp_path / "ipam"
    net = podman.network("ipv-a", make_master(), "10.81.0.0/24", ipam_dir, tuning=True)
    a, b = podman.start(net), podman.start(net)

    link_a, link_b = eth(a, "eth0"), eth(b, "eth0")
    for link in (link_a, link_b):
        assert link["linkinfo"]["info_kind"] == "ipvlan"
        assert link["linkinfo"]["info_data"]["mode"] == "l2"
    addr_a, addr_b = ipv4(link_a), ipv4(link_b)
    assert addr_a != addr_b and reservations(ipam_dir) == sorted([addr_a, addr_b])
    assert a["NetworkSettings"]["Networks"][net]["IPAddress"] == addr_a

    inside = podman("exec", a["Id"], "sh", "-c",
                    "ip -o -4 addr show eth0; cat /proc/sys/net/ipv4/conf/eth0/arp_ignore").stdout
    assert inside_addresses(inside) == {"eth0": f"{addr_a}/24"}
    assert inside.split()[-1] == "1"          # the tuning plugin ran after ipvlan-ip
    ping = podman("exec", a["Id"], "ping", "-c", "1", "-W", "5", addr_b, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    podman("rm", "-f", "-t", "0", a["Id"], b["Id"])
    assert reservations(ipam_dir) == []
    for container in (a, b):
        assert not Path(container["NetworkSettings"]["SandboxKey"]).exists()
        assert deleted_cleanly(podman.root / f"{net}.log", container)


def test_podman_container_on_two_ipvlan_networks(podman, make_master, tmp_path):
    first = podman.network("ipv-b", make_master(), "10.82.0.0/24", tmp_path / "ipam-b", tuning=False)
    second = podman.network("ipv-c", make_master(), "10.83.0.0/24", tmp_path / "ipam-c", tuning=False)
    c = podman.start(first, second)

    inside = inside_addresses(podman("exec", c["Id"], "ip", "-o", "-4", "addr", "show").stdout)
    for ifname, ipam_dir in (("eth0", tmp_path / "ipam-b"), ("eth1", tmp_path / "ipam-c")):
        link = eth(c, ifname)
        assert link["linkinfo"]["info_kind"] == "ipvlan"
        assert reservations(ipam_dir) == [ipv4(link)]
        assert inside[ifname] == f"{ipv4(link)}/24"
    assert ipv4(eth(c, "eth0")).startswith("10.82.") and ipv4(eth(c, "eth1")).startswith("10.83.")

    podman("rm", "-f", "-t", "0", c["Id"])
    assert reservations(tmp_path / "ipam-b") == reservations(tmp_path / "ipam-c") == []
