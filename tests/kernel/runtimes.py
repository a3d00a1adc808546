"""podman for the kernel tests, with its CNI backend, configured as docs/podman/
says but with its store, state and plugin dirs in a folder of the test run's
own (tests/kernel/conftest.py gives one to all of a run's tests: the `podman`
fixture). Each podman command costs 5-20 s in the VM."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path

from ..conftest import SYSTEM_PATH

DOCS = Path(__file__).resolve().parents[2] / "docs" / "podman"
IMAGE = "localhost/busybox:test"


class Podman:
    def __init__(self, root: Path, plugin: str):
        self.root, self.plugin = root, plugin
        self.net_dir = root / "net.d"
        self.bin_dir = root / "bin"
        self.node_bin = root / "node-bin"   # where tests/kernel/test_standalone.py's installer copies to
        # podman passes its environment on to the plugins: the logs may go in its root (docs/debugging.md)
        self.env = {"PATH": SYSTEM_PATH, "CONTAINERS_CONF": str(root / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"), "IPVLAN_IP_LOG_DIR": str(root)}
        self.started: list[str] = []

    def prepare(self) -> None:
        """Config as docs/podman says, ipvlan-ip installed, and a busybox image
        imported from a tar (no registry is reachable)."""
        self.net_dir.mkdir(parents=True)
        self.node_bin.mkdir()
        installed = subprocess.run([self.plugin, "install", "--cni-bin-dir", str(self.bin_dir)], capture_output=True)
        assert installed.returncode == 0, installed.stderr
        conf = (DOCS / "containers.conf").read_text()
        for doc_path, ours in (("/opt/cni/bin", f'{self.bin_dir}", "{self.node_bin}'),
                               ("/etc/cni/net.d", self.net_dir)):
            assert f'"{doc_path}"' in conf, f"docs/podman/containers.conf no longer names {doc_path}"
            conf = conf.replace(f'"{doc_path}"', f'"{ours}"')
        # podman's state, which would be under /run/libpod and /var/lib/containers
        conf = conf.replace("[engine]\n", f'[engine]\ntmp_dir = "{self.root}/libpod"\n')
        (self.root / "containers.conf").write_text(conf)
        self.write_storage_conf()
        self.import_busybox()

    def write_storage_conf(self) -> None:
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.root}/run"\ngraphroot = "{self.root}/graph"\n')

    def import_busybox(self) -> None:
        """A busybox image imported from a tar: no registry is reachable."""
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

    def remove(self, *names: str, check: bool = True) -> None:
        """podman rm -f, a container a call: given several, podman 4.3 removes them
        in parallel, which can fail with EBUSY on userdata/shm (containers/podman#10454).
        The network is torn down before that step, so one more try finishes the job."""
        for name in names:
            done = self("rm", "--ignore", "-f", "-t", "0", name, check=False)
            if done.returncode != 0 and "device or resource busy" in done.stderr:
                done = self("rm", "--ignore", "-f", "-t", "0", name, check=False)
            assert not check or done.returncode == 0, f"podman rm {name}: {done.stderr}"

    def network(self, name: str, master: str, subnet: str, ipam_dir: Path, tuning: bool,
                plugin: str = "ipvlan-ip", **settings) -> str:
        """The documented conflist as network `name` on `master`, through the
        plugin file called `plugin`, with any further `settings` of ours."""
        conflist = json.loads((DOCS / "ipvlan-net.conflist").read_text())
        ours = conflist["plugins"][0]
        ours["type"] = plugin
        ours["master"] = master
        ours["ipam"] = {"type": "host-local", "subnet": subnet, "dataDir": str(ipam_dir)}
        ours["logFile"] = str(self.root / f"{name}.log")
        ours["debug"] = True
        ours.update(settings)
        conflist["name"] = name
        if not tuning:
            del conflist["plugins"][1:]
        (self.net_dir / f"{name}.conflist").write_text(json.dumps(conflist))
        return name

    def start(self, *networks: str, command: tuple[str, ...] = ("sleep", "600")) -> dict:
        """A detached container on these networks: podman inspect's record of it."""
        name = f"t{uuid.uuid4().hex[:8]}"
        self.started.append(name)
        self("run", "-d", "--name", name, "--network", ",".join(networks), "--cap-add", "NET_RAW",
             IMAGE, *command)
        return json.loads(self("inspect", name).stdout)[0]


def eth(container: dict, ifname: str) -> dict:
    """The container's interface as the kernel reports it, read from outside."""
    sandbox = container["NetworkSettings"]["SandboxKey"]
    shown = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "-j", "-d", "address", "show", "dev", ifname],
                           capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)[0]


def ipv4(link: dict) -> str:
    return next(a["local"] for a in link["addr_info"] if a["family"] == "inet")


class Podman5(Podman):
    """Podman 5 with netavark, Debian 13's own, run in the podman5 root
    (scripts/node-roots) through chroot: ipvlan-ip installed there as a
    netavark plugin by the root's own Python (`ipvlan-ip install --netavark`),
    its store, state and plugin dir in a folder of the test's own. File locks
    rather than podman's shared-memory segment, which the VM's podman 4 holds
    in the same /dev/shm."""

    def __init__(self, root: Path, node):
        super().__init__(root, "")
        self.node = node
        self.plugin_dir = root / "netavark-plugins"
        self.transcript: list[str] = []
        self.env = {"CONTAINERS_CONF": str(root / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"), "IPVLAN_IP_LOG_DIR": str(root)}

    def prepare(self) -> None:
        from .node_roots import REPO
        installed = self.node.run("python3", "-m", "ipvlan_ip", "install", "--netavark", str(self.plugin_dir),
                                  env={"PYTHONPATH": str(REPO)})
        assert installed.returncode == 0, installed.stdout + installed.stderr
        (self.root / "containers.conf").write_text(
            f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "crun"\n'
            f'lock_type = "file"\ntmp_dir = "{self.root}/libpod"\n'
            f'[network]\nnetwork_backend = "netavark"\nnetavark_plugin_dirs = ["{self.plugin_dir}"]\n'
            f'network_config_dir = "{self.root}/networks"\n')
        self.write_storage_conf()
        self.import_busybox()

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = self.node.run("podman", *args, env=self.env, timeout=300)
        self.transcript.append(f"$ podman {' '.join(args)}\n{done.stdout}{done.stderr}(exit {done.returncode})")
        if check:
            assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done
