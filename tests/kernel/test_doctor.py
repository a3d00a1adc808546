"""`ipvlan-ip doctor` against the real kernel: a healthy node and config pass
(exit 0, every finding ok); each broken case is made real, `doctor` names it
with what to do, and the plugin's ADD says what to do too and leaves nothing
(no link, no reservation, no host link). The node checks run in the Debian 11
and 13 roots in test_nodes.py; a kernel without ipvlan, in
tests/unit/test_doctor.py on the host, whose kernel lacks it."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from ipvlan_ip.capabilities import host_access

from .conftest import GO_PLUGINS, PLUGIN, TEST_PLUGINS, call_plugin, ip, ipj, reservations, unique
from .test_plugin import host_local, links_in

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "doctor.schema.json").read_text())
BIN_DIRS = [arg for d in (str(Path(PLUGIN).parent), GO_PLUGINS, TEST_PLUGINS) for arg in ("--cni-bin-dir", d)]


def doctor(*args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "ipvlan_ip", "doctor", "--json", *args, *BIN_DIRS],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    jsonschema.validate(report, SCHEMA)
    return done.returncode, report


def write(tmp_path: Path, conf: dict) -> str:
    path = tmp_path / "net.conflist"
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": unique("doc-"), "plugins": [conf]}))
    return str(path)


def host_links() -> list[str]:
    return [link["ifname"] for link in ipj("link", "show")]


def test_a_healthy_node_and_config_pass(make_lan, tmp_path):
    lan = make_lan("10.150")
    conf = {"type": "ipvlan-ip", "master": lan.master, "hostAccess": True,
            "ipam": host_local(tmp_path / "ipam", subnet="10.150.0.0/24")}
    code, report = doctor(write(tmp_path, conf))
    findings = [*report["node"], *report["configs"][0]["findings"]]
    assert code == 0 and report["summary"] == {"failures": 0, "warnings": 0}, report
    assert {f["check"] for f in findings} >= {"python", "iproute2", "ipvlan", "/run", "schema", f"master {lan.master}",
                                              "hostAccess", "plugin ipvlan-ip", "plugin host-local"}
    # The probe's netns went with its process: doctor names none in /run/netns.
    assert not [line for line in str(ip("netns", "list")).splitlines() if "doctor" in line]


def with_macvlan(master: str) -> None:
    ip("link", "add", "link", master, "name", master + "m", "type", "macvlan")


def not_forwarding(master: str) -> None:
    """A master on the containers' LAN (its prefix routed on it: proxyNeighbors answers for that LAN alone),
    but that does not forward."""
    ip("route", "add", "10.152.0.0/24", "dev", master)
    subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{master}.forwarding=0", f"net.ipv6.conf.{master}.forwarding=0",
                    f"net.ipv6.conf.{master}.proxy_ndp=0"], check=True)


BROKEN = {
    # case: (what to do to the node, the config's settings, doctor's check and a word of its text,
    #        ADD's code and a word of what it says to do, where)
    "a macvlan on the master": (with_macvlan, {}, ("master", "macvlan"), (103, "macvlan", "msg")),
    "an mtu over the master's": (None, {"mtu": 9000}, ("mtu 9000", "above"), (7, 'lower "mtu"', "details")),
    "a missing IPAM plugin": (None, {"ipam": {"type": "no-such-ipam"}}, ("plugin no-such-ipam", "not an executable"),
                              (7, "install it into", "details")),
    "dhcp without its daemon": (None, {"ipam": {"type": "dhcp", "daemonSocketPath": "/run/no-dhcp-here.sock"}},
                                ("dhcp", "no dhcp daemon listens"), (101, "start it first", "details")),
    "hostAccess without an address on the master": (None, {"hostAccess": True}, ("hostAccess", "no address"),
                                                    (103, "give it one first", "details")),
    "proxyNeighbors on a master that does not forward": (
        not_forwarding, {"mode": "l3s", "proxyNeighbors": True}, ("proxyNeighbors", "does not forward"),
        (103, "forwarding=1", "details")),
}


# Those refused before any link is made run on the host, before the VM boots.
NATIVE = {"an mtu over the master's", "dhcp without its daemon"}


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.native) if case in NATIVE else case
                                  for case in sorted(BROKEN)])
def test_each_broken_case_is_named_by_doctor_and_by_add(case, make_master, netns, ipam_dir, tmp_path):
    prepare, settings, (check, said), (code, advice, where) = BROKEN[case]
    master = make_master()
    if prepare:
        prepare(master)
    conf = {"type": "ipvlan-ip", "master": master, "ipam": host_local(ipam_dir, subnet="10.152.0.0/24"),
            **settings}
    try:
        status, report = doctor(write(tmp_path, conf))
        [found] = [f for f in report["configs"][0]["findings"] if f["check"].startswith(check) and f["status"] != "ok"]
        assert status == 1 and found["status"] == "failure" and said in found["text"] and found["fix"], report

        reply = call_plugin("ADD", {"cniVersion": "1.0.0", "name": "doc", **conf}, f"/run/netns/{netns}")
        assert reply.code == 1 and reply.out["code"] == code and advice in reply.out[where], reply.stdout
        assert links_in(netns) == ["lo"] and reservations(ipam_dir) == []
        assert host_access.link_name(master) not in host_links()
    finally:
        ip("link", "del", master + "m", check=False)
