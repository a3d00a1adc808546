"""The standalone file as clusters install it. The installer image of
deploy/kubernetes/ is built with podman, offline, on the busybox image the
podman tests import, and run with a scratch directory as the node's CNI bin
dir; the file it copies there is the one `install --standalone` writes, and
the guest's own /usr/bin/python3 runs it for podman and for containerd (its
go-cni library, through `ctr run --cni`), from a PATH without our venv. The
plugin's kernel tests also pass through that file, on this node and in the
roots of other Debian releases (test_nodes.py)."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from ..conftest import SYSTEM_PATH
from .conftest import reservations
from .node_roots import ROOTS
from .runtimes import IMAGE, eth, ipv4

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
INSTALLER = "localhost/ipvlan-ip-installer:test"
NODE_NAME = "ipvlan-ip-node"      # the installer's CNI_PLUGIN_NAME: beside the podman tests' own plugin


def install_standalone(bin_dir: Path) -> Path:
    cli = REPO / ".venv" / "bin" / "ipvlan-ip"
    subprocess.run([cli, "install", "--standalone", "--cni-bin-dir", str(bin_dir)], check=True, capture_output=True)
    return bin_dir / "ipvlan-ip"


def test_the_installer_image_puts_the_file_on_the_node_for_podman_and_containerd(podman, make_master, tmp_path):
    # Build: the context holds the standalone file and the installer script.
    context = tmp_path / "context"
    install_standalone(context)
    shutil.copy(DEPLOY / "install-cni.sh", context)
    podman("build", "--pull=never", "--build-arg", f"BASE={IMAGE}", "-f", str(DEPLOY / "Containerfile"),
           "-t", INSTALLER, str(context))

    # Run it as the DaemonSet does, the node's CNI bin dir and its root (read only) mounted in.
    copied = podman.node_bin / NODE_NAME
    copied.unlink(missing_ok=True)
    node_dirs = ["-e", f"CNI_PLUGIN_NAME={NODE_NAME}", "-v", f"{podman.node_bin}:/host/opt/cni/bin"]
    no_python = tmp_path / "node-without-python"
    (no_python / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", no_python / "bin" / "sh")
    refused = podman("run", "--rm", "--network", "none", *node_dirs, "-v", f"{no_python}:/host/root:ro", INSTALLER,
                     check=False)
    assert refused.returncode == 1 and not copied.exists()
    [said] = [line for line in refused.stderr.splitlines() if line.startswith("install-cni:")]
    assert said.startswith("install-cni: this node cannot run ipvlan-ip: it lacks python3 (3.9 or later)"), said
    # A Debian 11 node (Python 3.9, iproute2 5.9): the root tests/kernel/test_nodes.py runs the plugin in,
    # privileged, with its bin dir and a /run of its own inside its root, as the DaemonSet has them.
    node = ["--privileged", "-e", "NODE_CNI_BIN_DIR=/opt", "-v", f"{ROOTS / 'bullseye'}:/host/root:ro",
            "-v", f"{podman.node_bin}:/host/root/opt", "--mount", "type=tmpfs,destination=/host/root/run"]
    # The same node with an iproute2 older than 5.9: doctor, run there, fails it, and nothing is installed.
    old_ip = tmp_path / "old-ip"
    old_ip.write_text("#!/bin/sh\necho 'ip utility, iproute2-ss200127'\n")
    old_ip.chmod(0o755)
    unfit = podman("run", "--rm", "--network", "none", *node_dirs, *node, "-v", f"{old_ip}:/host/root/bin/ip:ro",
                   INSTALLER, check=False)
    assert unfit.returncode == 1 and not copied.exists(), unfit.stderr
    assert not (podman.node_bin / f".{NODE_NAME}.new").exists()
    assert "install-cni: ipvlan-ip doctor finds this node unfit; nothing installed:" in unfit.stderr
    assert "failure iproute2: `ip -V` says 'ip utility, iproute2-ss200127'" in unfit.stderr, unfit.stderr
    podman("run", "-d", "--name", "installer", "--network", "none", *node_dirs, *node, INSTALLER)
    try:
        for _ in range(120):
            if copied.exists():
                break
            time.sleep(0.5)
        assert "install-cni: installed" in podman("logs", "installer").stdout
    finally:
        podman.remove("installer")
    assert copied.read_bytes() == install_standalone(tmp_path / "fresh").read_bytes()
    assert os.access(copied, os.X_OK) and ".venv" not in podman.env["PATH"]

    # podman: two containers on a network whose plugin is the copied file.
    ipam_dir = tmp_path / "ipam"
    net = podman.network("ipv-node", make_master(), "10.84.0.0/24", ipam_dir, tuning=False, plugin=NODE_NAME)
    a, b = podman.start(net), podman.start(net)
    assert eth(a, "eth0")["linkinfo"]["info_kind"] == eth(b, "eth0")["linkinfo"]["info_kind"] == "ipvlan"
    ping = podman("exec", a["Id"], "ping", "-c", "1", "-W", "5", ipv4(eth(b, "eth0")), check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    podman.remove(a["Id"], b["Id"])
    assert reservations(ipam_dir) == []
    assert not any(Path(c["NetworkSettings"]["SandboxKey"]).exists() for c in (a, b))

    # containerd: the same file in the CNI bin dir `ctr run --cni` reads (/opt/cni/bin).
    Containerd(tmp_path / "containerd", podman).run_two_containers(copied, make_master())


class Containerd:
    """A containerd of the test's own; ctr runs in a mount namespace of its own
    where the node's /opt/cni/bin and /etc/cni/net.d are the test's folders."""

    def __init__(self, root: Path, podman):
        self.root, self.podman = root, podman
        self.node = root / "node"
        self.socket = root / "containerd.sock"
        self.ipam = root / "ipam"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # go-cni reads the default dirs: bind the test's over them, for ctr alone.
        script = 'mount --bind "$0/opt" /opt && mount --bind "$0/etc-cni" /etc/cni && exec ctr "$@"'
        done = subprocess.run(["unshare", "-m", "sh", "-c", script, str(self.node), "-a", str(self.socket), *args],
                              env={"PATH": SYSTEM_PATH}, capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, f"ctr {' '.join(args)}: {done.stdout} {done.stderr}"
        return done

    def run_two_containers(self, plugin: Path, master: str) -> None:
        bin_dir = self.node / "opt" / "cni" / "bin"
        (self.node / "etc-cni" / "net.d").mkdir(parents=True)
        bin_dir.mkdir(parents=True)
        shutil.copy2(plugin, bin_dir / "ipvlan-ip")
        shutil.copy2("/usr/lib/cni/host-local", bin_dir)
        conflist = {"cniVersion": "1.0.0", "name": "ctr-ipvlan", "plugins": [
            {"type": "ipvlan-ip", "master": master,
             "ipam": {"type": "host-local", "subnet": "10.85.0.0/24", "dataDir": str(self.ipam)}}]}
        (self.node / "etc-cni" / "net.d" / "10-ipvlan.conflist").write_text(json.dumps(conflist))
        (self.root / "config.toml").write_text(
            f'version = 2\nroot = "{self.root}/root"\nstate = "{self.root}/state"\n'
            f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.socket}"\n')
        with open(self.root / "containerd.log", "w") as log:
            daemon = subprocess.Popen(["containerd", "--config", str(self.root / "config.toml")],
                                      stdout=log, stderr=log)
        try:
            for _ in range(240):
                if self.socket.exists():
                    break
                time.sleep(0.5)
            self.podman("save", "--format", "docker-archive", "-o", str(self.root / "busybox.tar"), IMAGE)
            self.ctr("images", "import", "--snapshotter", "native", str(self.root / "busybox.tar"))
            self.attach_and_ping()
        finally:
            for leftover in ("c1", "c2"):     # their shims outlive containerd otherwise
                self.ctr("task", "delete", "--force", leftover, check=False)
                self.ctr("container", "delete", leftover, check=False)
            daemon.terminate()
            daemon.wait(timeout=60)

    def attach_and_ping(self) -> None:
        pid_file = self.root / "c1.pid"
        self.ctr("run", "-d", "--cni", "--snapshotter", "native", "--pid-file", str(pid_file), IMAGE, "c1",
                 "sleep", "600")
        netns = f"/proc/{pid_file.read_text().strip()}/ns/net"
        shown = subprocess.run(["nsenter", f"--net={netns}", "ip", "-j", "-d", "address", "show", "dev", "eth0"],
                               capture_output=True, text=True, check=True)
        [link] = json.loads(shown.stdout)
        assert link["linkinfo"]["info_kind"] == "ipvlan"
        address = ipv4(link)
        # In the foreground ctr runs the network's DEL itself when the container ends.
        ping = self.ctr("run", "--rm", "--cni", "--snapshotter", "native", IMAGE, "c2",
                        "ping", "-c", "1", "-W", "5", address, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert reservations(self.ipam) == [address]               # c2's address went back
        # ctr leaves a detached container's network to whoever removes it: a DEL as a runtime sends it.
        self.ctr("task", "kill", "-s", "SIGKILL", "c1")
        for _ in range(120):
            if not Path(netns).exists():
                break
            time.sleep(0.5)
        assert not Path(netns).exists()         # c1's netns, and so its ipvlan link, are gone
        del_env = {"PATH": SYSTEM_PATH, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "default-c1", "CNI_NETNS": netns,
                   "CNI_IFNAME": "eth0", "CNI_PATH": str(self.node / "opt" / "cni" / "bin")}
        conf = json.loads((self.node / "etc-cni" / "net.d" / "10-ipvlan.conflist").read_text())
        plugin_conf = {**conf["plugins"][0], "name": conf["name"], "cniVersion": conf["cniVersion"]}
        deleted = subprocess.run([str(self.node / "opt" / "cni" / "bin" / "ipvlan-ip")], env=del_env,
                                 input=json.dumps(plugin_conf).encode(), capture_output=True)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert reservations(self.ipam) == []
