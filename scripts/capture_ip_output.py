"""Captures what each node's iproute2 prints for the commands the runner
parses, into tests/fixtures/ip/NODE.json, for tests/unit/test_ip_versions.py:
the builder's own Commands (the batches of ADD, DEL and CHECK, the default
route read), run for real against an ipvlan link, each as it succeeds and as
it fails (a missing master or link, a route or address that exists, a netns
that is gone), and a name holding an apostrophe read back as JSON.

    .venv/bin/python scripts/capture_ip_output.py

Nodes: bookworm is the VM's own `ip` (iproute2 6.1); bullseye (5.9) and trixie
(6.15) are the roots of scripts/node-roots, entered with chroot. It boots the
test VM when this kernel has no ipvlan, like the demo. Each entry keeps the
command, its stdin, and what came back (stdout, stderr, exit status), with the
iproute2 version that printed it."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))
from vm import VM_DIR, host_has_ipvlan, run_in_vm  # noqa: E402

from ipvlan_ip import commands  # noqa: E402
from ipvlan_ip.capabilities import host_access  # noqa: E402
from ipvlan_ip.commands import Addressing, LinkSpec, Netns  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "ip"
CAPTURED = VM_DIR / "ip-fixtures"     # the VM can write there, not in the repository
NS, MASTER, TMP, ODD = "capture-ns", "capm0", "ipvlcap0", "a;b'c"
ADDRESSING = Addressing(ips=({"address": "10.70.0.5/24", "gateway": "10.70.0.1"},
                             {"address": "fd70::5/64", "gateway": "fd70::1"}),
                        routes=({"dst": "0.0.0.0/0"}, {"dst": "::/0"}))


def steps(target: Netns) -> list:
    """(name, Command) in the order they run; each leaves the state the next needs."""
    spec = LinkSpec(MASTER, TMP, "eth0", "l2")
    gone = Netns("/run/netns/capture-gone", "capture-gone")
    return [
        ("create", commands.create_on_master(spec, target, in_container=False)),
        ("create_missing_master", commands.create_on_master(spec._replace(master="nosuchm0"), target, False)),
        ("rename_odd", commands.Command("", commands.ip(target, "link", "set", "dev", TMP, "name", ODD))),
        ("show_odd", commands.show_master(target, ODD)),
        ("rename_back", commands.Command("", commands.ip(target, "link", "set", "dev", ODD, "name", "eth0"))),
        ("configure", commands.configure_link(target, spec, ADDRESSING)),
        ("configure_again", commands.configure_link(target, spec, ADDRESSING)),
        ("neighbour", commands.Command("", commands.ip(target, "neigh", "replace", "10.70.0.9", "lladdr",
                                                        "02:00:00:00:00:09", "dev", "eth0", "nud", "permanent"))),
        ("inspect", commands.inspect_container(target, "eth0")),
        ("address_master", commands.Command("", commands.ip(None, "address", "add", "10.71.0.2/24", "dev", MASTER))),
        # hostAccess's CHECK, with the master's veth peer standing in for the host's link
        ("inspect_host", host_access.inspect_host(MASTER + "p", MASTER)),
        ("default_route", commands.show_default_routes(target, 4)),
        ("show_master_missing", commands.show_master(None, "nosuchm0")),
        ("delete_missing", commands.delete_link(target, "nosuch0")),
        ("remove_attachment_missing", commands.remove_attachment(target, ["nosuch0"])),
        ("netns_gone", commands.remove_attachment(gone, ["eth0"])),
        ("remove_attachment", commands.remove_attachment(target, ["eth0"])),
    ]


def run(prefix: list[str], cmd) -> dict:
    stdin = "".join(line + "\n" for line in cmd.batch)
    done = subprocess.run([*prefix, *cmd.argv], input=stdin, capture_output=True, text=True)
    return {"argv": list(cmd.argv), "stdin": stdin, "exit": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr}


def capture(node: str, prefix: list[str]) -> None:
    version = subprocess.run([*prefix, "ip", "-V"], capture_output=True, text=True).stdout.split()
    version = next(w for w in version if w.startswith("iproute2-")).rstrip(",")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(["ip", "link", "add", MASTER, "type", "veth", "peer", "name", MASTER + "p"], check=True)
    subprocess.run(["ip", "link", "set", MASTER, "up"], check=True)
    try:
        entries = {name: run(prefix, cmd) for name, cmd in steps(Netns(f"/run/netns/{NS}", NS))}
    finally:
        subprocess.run(["ip", "link", "del", MASTER])
        subprocess.run(["ip", "netns", "del", NS])
    CAPTURED.mkdir(parents=True, exist_ok=True)
    doc = {"node": node, "iproute2": version, "made_by": "scripts/capture_ip_output.py", "commands": entries}
    (CAPTURED / f"{node}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"capture: {node} ({version}): {len(entries)} commands")


def main() -> int:
    if not host_has_ipvlan():
        rc = run_in_vm([str(REPO / ".venv" / "bin" / "python"), __file__])
        OUT.mkdir(parents=True, exist_ok=True)
        for captured in sorted(CAPTURED.glob("*.json")):
            captured.replace(OUT / captured.name)
            print(f"capture: wrote {OUT / captured.name}")
        return rc
    from tests.kernel.node_roots import NodeRoot
    capture("bookworm", [])
    for suite in ("bullseye", "trixie"):
        root = NodeRoot(suite).enter()
        try:
            capture(suite, ["chroot", str(root.path)])
        finally:
            root.leave()
    return 0


if __name__ == "__main__":
    sys.exit(main())
