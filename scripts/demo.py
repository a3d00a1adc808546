"""The main job, as a show: two throwaway containers (network namespaces) get
ipvlan interfaces from ipvlan-ip on one veth master, with Debian's host-local
IPAM; the debug echo shows every `ip` command; they ping each other; CHECK and
DEL run; everything is removed again. In a qemu VM when this kernel has no
ipvlan (see scripts/vm.py)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import sh

sys.path.insert(0, str(Path(__file__).parent))
from vm import host_has_ipvlan, plugin_launcher, run_in_vm  # noqa: E402

CONTAINERS = ("demo-a", "demo-b")
MASTER = "demo-m0"
# sh reads best for the commands a person would type; _tty_out=False as nothing here is a terminal.
ip = sh.Command("ip").bake(_tty_out=False)


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def show(*args: str) -> str:
    """Run `ip ARGS` as if typed at a prompt, and print what it says."""
    print(f"$ ip {' '.join(args)}", flush=True)
    try:
        out = ip(*args, _err_to_out=True)
    except sh.ErrorReturnCode as e:
        print(e.stdout.decode(), end="", flush=True)
        raise SystemExit(f"demo: `{' '.join(args)}` failed") from e
    print(out, end="", flush=True)
    return out


def cni(command: str, conf: dict, container: str) -> dict | None:
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": f"/run/netns/{container}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
           "IPVLAN_IP_DEBUG": "1"}
    print(f"$ CNI_COMMAND={command} CNI_CONTAINERID={container} CNI_NETNS=/run/netns/{container} "
          f"CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni IPVLAN_IP_DEBUG=1 ipvlan-ip < conf.json", flush=True)
    # subprocess, as a runtime does: the debug echo on stderr, the result on stdout, apart.
    done = subprocess.run([plugin_launcher()], input=json.dumps(conf), env=env, capture_output=True, text=True)
    print(done.stderr, end="", flush=True)       # the debug echo
    if done.stdout.strip():
        print("stdout:", done.stdout, end="", flush=True)
    if done.returncode:
        raise SystemExit(f"demo: {command} failed")
    return json.loads(done.stdout) if done.stdout.strip() else None


def demo(workdir: str, dot_file: str = "") -> None:
    conf = {"cniVersion": "1.0.0", "name": "demo", "type": "ipvlan-ip", "master": MASTER, "mode": "l2",
            "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "gateway": "10.99.0.1",
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{workdir}/ipam"}}
    banner("network config (conf.json)")
    print(json.dumps(conf, indent=2))

    banner("set up: a veth as master, two empty network namespaces")
    show("link", "add", MASTER, "type", "veth", "peer", "name", MASTER + "p")
    show("link", "set", MASTER, "up")
    show("link", "set", MASTER + "p", "up")
    for c in CONTAINERS:
        show("netns", "add", c)

    results = {}
    for c in CONTAINERS:
        banner(f"ADD {c}")
        results[c] = cni("ADD", conf, c)

    banner("what the kernel now has in demo-a")
    show("-n", "demo-a", "-d", "address", "show", "dev", "eth0")
    show("-n", "demo-a", "route")

    banner("ipvlan-ip show: the master, its links in every netns, and anything wrong")
    print(f"$ ipvlan-ip show --ipam-dir {workdir}/ipam", flush=True)
    tree = subprocess.run([plugin_launcher(), "show", "--ipam-dir", f"{workdir}/ipam"], capture_output=True, text=True)
    print(tree.stdout + tree.stderr, end="", flush=True)
    if tree.returncode:
        raise SystemExit("demo: ipvlan-ip show failed")
    if dot_file:
        graph = subprocess.run([plugin_launcher(), "show", "--dot", "--ipam-dir", f"{workdir}/ipam"],
                               capture_output=True, text=True, check=True)
        Path(dot_file).write_text(graph.stdout)
        print(f"(the same as a Graphviz graph: {dot_file})")

    banner("demo-a pings demo-b over ipvlan")
    b_address = results["demo-b"]["ips"][0]["address"].split("/")[0]
    show("netns", "exec", "demo-a", "ping", "-c", "3", "-W", "2", b_address)

    for command in ("CHECK", "DEL"):
        for c in CONTAINERS:
            banner(f"{command} {c}")
            cni(command, {**conf, "prevResult": results[c]}, c)

    banner("after DEL: no eth0 in the namespaces, no address held by host-local")
    for c in CONTAINERS:
        show("-n", c, "link", "show")
    left = sorted(p.name for p in Path(workdir, "ipam", "demo").glob("10.*"))
    print(f"host-local reservations left: {left}")
    if left:
        raise SystemExit("demo: reservations were left behind")


def cleanup() -> None:
    for c in CONTAINERS:
        ip("netns", "del", c, _ok_code=range(256))     # gone already is fine
    ip("link", "del", MASTER, _ok_code=range(256))


def main(argv: list[str]) -> int:
    here = "--here" in argv
    # --dot FILE: also write `ipvlan-ip show --dot` there (in the VM, only .vm/ is writable; docs/show-demo.svg
    # is `dot -Tsvg` of it)
    dot_file = argv[argv.index("--dot") + 1] if "--dot" in argv else ""
    if not here and not host_has_ipvlan():
        print("demo: this kernel has no ipvlan; running the demo in a qemu VM (about a minute)", flush=True)
        return run_in_vm([".venv/bin/python", "scripts/demo.py", "--here", *argv])
    with tempfile.TemporaryDirectory(prefix="ipvlan-ip-demo-") as workdir:
        try:
            demo(workdir, dot_file)
        finally:
            banner("clean up")
            cleanup()
    print("\ndemo: done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
