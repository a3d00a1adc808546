"""Other nodes' Python and iproute2, on the test kernel: the Debian roots that
scripts/node-roots builds (cached in /var/lib/ipvlan-ip/roots), made ready
to run the plugin with chroot.

A root is bound onto a mount point of its own first: `ip -n` remounts / as a
slave mount, which fails where / is a plain directory. /proc, /sys, /dev,
/run/netns (shared, so that netns made later show up inside), /run/ipvlan-ip
(the plugin's records and locks, which the tests read, and which the
plugins of every node share, as on one node), /tmp (the tests' files) and
the repository are bound in at the same paths, so that every path a
test passes means the same inside; the root's standard library is read from
a copy in memory, and what is written in the root (/run, the plugin dirs)
goes to a tmpfs of each entry's. The IPAM plugins are the VM's own Go
binaries (not what is under test), run through the VM's loader and libraries:
those of Debian 12 need a newer glibc than Debian 11's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import sh

ROOTS = Path(os.environ.get("IPVLAN_IP_ROOTS", "/var/lib/ipvlan-ip/roots"))
MOUNTS = Path("/run/ipvlan-ip-roots")
REPO = Path(__file__).resolve().parents[2]
GO_PLUGINS = Path("/usr/lib/cni")
# By their real paths: /lib64/ld-linux-x86-64.so.2 is an absolute link, which inside the root leads to its own.
LOADER = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
LIBS = "/usr/lib/x86_64-linux-gnu"
# The node's own plugin dirs inside the root, where the standalone file goes, and netavark's default.
NODE_BIN = "/opt/cni/bin"
NETAVARK_PLUGINS = "/usr/libexec/netavark"

_mount = sh.Command("mount").bake(_tty_out=False)


class NodeRoot:
    def __init__(self, suite: str):
        self.suite = suite
        self.path = MOUNTS / f"{suite}-{os.getpid()}"
        self.mounted: list[Path] = []
        self.copies: list[Path] = []

    def enter(self) -> NodeRoot:
        source = ROOTS / self.suite
        if not (source / "usr" / "bin" / "python3").exists():
            raise RuntimeError(f"no {self.suite} root in {ROOTS}: scripts/node-roots builds it (./run-tests runs it)")
        # `ip netns add` makes /run/netns a shared mount point; binds of it are then its peers.
        probe = f"ipvlan-ip-probe-{os.getpid()}"
        sh.ip("netns", "add", probe, _tty_out=False)
        sh.ip("netns", "del", probe, _tty_out=False)
        self._bind(source, self.path)
        # What the tests and the programs they run write in the root goes to a tmpfs of this entry's: the
        # cached root stays as built, and two workers' entries (two podmans, their IPAM databases) stay apart.
        for written in ("run", NODE_BIN.lstrip("/"), GO_PLUGINS.relative_to("/"), NETAVARK_PLUGINS.lstrip("/")):
            self._private(self.path / written)
        (self.path / "run" / "lock").mkdir(mode=0o1777)
        os.makedirs("/run/ipvlan-ip", exist_ok=True)
        for outside in ("/proc", "/sys", "/dev", "/run/netns", "/run/ipvlan-ip", "/tmp", str(REPO), "/"):
            inside = self.path / ("host" if outside == "/" else outside.lstrip("/"))
            self._bind(Path(outside), inside, recursive=outside != "/")
        self._go_plugins()
        self._stdlib_in_memory()
        return self

    def _stdlib_in_memory(self) -> None:
        """The root's standard library copied to a tmpfs and bound over its own:
        read over the VM's 9p, each Python start took 0.25 s longer."""
        [stdlib] = (self.path / "usr" / "lib").glob("python3.[0-9]*")
        copy = Path("/run") / f"ipvlan-ip-stdlib-{self.path.name}"
        subprocess.run(["cp", "-a", str(stdlib), str(copy)], check=True)
        self._bind(copy, stdlib)
        self.copies.append(copy)

    def _private(self, inside: Path) -> None:
        inside.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "tmpfs", str(inside))
        self.mounted.append(inside)

    def _bind(self, outside: Path, inside: Path, recursive: bool = False) -> None:
        inside.mkdir(parents=True, exist_ok=True)
        _mount("--rbind" if recursive else "--bind", str(outside), str(inside))
        self.mounted.append(inside)

    def _go_plugins(self) -> None:
        """Each Go plugin of the VM at its usual path in the root, run through
        the VM's loader (the root's /host is the VM's /)."""
        target = self.path / GO_PLUGINS.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        for plugin in GO_PLUGINS.iterdir():
            wrapper = target / plugin.name
            wrapper.write_text(f'#!/bin/sh\nexec /host{LOADER} --library-path /host{LIBS} /host{plugin} "$@"\n')
            wrapper.chmod(0o755)

    def run(self, *argv: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        """argv inside the root, with a node's PATH."""
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
        return subprocess.run(["chroot", str(self.path), *argv], env=full_env, capture_output=True, text=True,
                              **kwargs)

    def versions(self) -> str:
        python = self.run("python3", "--version").stdout.strip()
        iproute2 = next(w for w in self.run("ip", "-V").stdout.split() if w.startswith("iproute2-")).rstrip(",")
        return f"{python}, {iproute2}"

    def install_standalone(self) -> str:
        """The standalone file, built by the root's own Python through the CLI, in
        the root's CNI bin dir; a wrapper outside that runs it in the root, as
        the plugin a test calls."""
        built = self.run("python3", "-m", "ipvlan_ip", "install", "--standalone", "--force", "--cni-bin-dir",
                         NODE_BIN, env={"PYTHONPATH": str(REPO)}, check=True)
        assert f"{NODE_BIN}/ipvlan-ip" in built.stdout, built.stdout + built.stderr
        wrapper = self.path / "tmp" / f"ipvlan-ip-in-{self.path.name}"
        wrapper.write_text(f'#!/bin/sh\nexec chroot {self.path} {NODE_BIN}/ipvlan-ip "$@"\n')
        wrapper.chmod(0o755)
        return f"/tmp/{wrapper.name}"

    def leave(self) -> None:
        # Private first: the bind of /run/netns is a peer of the real one, and
        # unmounting its netns files would otherwise unmount them everywhere.
        subprocess.run(["mount", "--make-rprivate", str(self.path)], capture_output=True)
        for inside in reversed(self.mounted):
            subprocess.run(["umount", "-R", "-l", str(inside)], capture_output=True)
        self.mounted.clear()
        for copy in self.copies:
            subprocess.run(["rm", "-rf", str(copy)])
        self.copies.clear()
