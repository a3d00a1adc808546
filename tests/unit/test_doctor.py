"""`ipvlan-ip doctor`: its verdicts from data (the versions, the master as
`ip -j -d address show` lists it, the plugins on disk), the report against
schemas/doctor.schema.json, and a real run on this machine, whose kernel has
no ipvlan: the node check names it, says what to do, and leaves nothing.
tests/kernel/test_doctor.py checks configs against the VM's real kernel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from ipvlan_ip.tools import doctor

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas" / "doctor.schema.json").read_text())
FIXTURES = REPO / "tests" / "fixtures" / "ip"


@pytest.mark.parametrize("version, status", [((3, 8, 10), "failure"), ((3, 9, 2), "ok"), ((3, 13, 5), "ok"),
                                             ((3, 14, 0), "warning")])
def test_python_versions(version, status):
    assert doctor.python_finding(version).status == status


@pytest.mark.parametrize("node", ["bullseye", "bookworm", "trixie"])
def test_each_supported_iproute2_passes(node):
    said = json.loads((FIXTURES / f"{node}.json").read_text())["iproute2"]    # as `ip -V` names it
    assert doctor.iproute2_finding(f"ip utility, {said}, libbpf 1.1.2").status == "ok"


def test_an_old_or_unknown_ip_fails_with_what_to_do():
    for said in ("ip utility, iproute2-5.4.0", "ip utility, iproute2-ss200127", "BusyBox v1.35.0 multi-call binary"):
        found = doctor.iproute2_finding(said)
        assert found.status == "failure" and "iproute2 5.9" in found.fix


MASTER = {"ifname": "eth0", "flags": ["BROADCAST", "UP"], "mtu": 1500, "linkinfo": {"info_kind": "veth"},
          "addr_info": [{"local": "10.1.0.2", "prefixlen": 24, "scope": "global"}]}


@pytest.mark.parametrize("conf, master, links, said", [
    ({}, None, [], "there is no interface eth0"),
    ({}, {**MASTER, "flags": ["BROADCAST"]}, [], "ip link set dev eth0 up"),
    ({}, {**MASTER, "linkinfo": {"info_kind": "ipvlan"}}, [], "itself an ipvlan link"),
    ({}, MASTER, [{"ifname": "mv0", "link": "eth0", "linkinfo": {"info_kind": "macvlan"}}], "ip link del dev mv0"),
    ({"mtu": 9000}, MASTER, [], "at most 1500"),
    ({"hostAccess": True}, {**MASTER, "addr_info": []}, [], "ip address add ADDRESS/PREFIX dev eth0"),
])
def test_each_master_problem_is_a_failure_that_says_what_to_do(conf, master, links, said):
    [found] = [f for f in doctor.master_findings(conf, master, "eth0", links) if f.status != "ok"]
    assert found.status == "failure" and said in found.text + found.fix


def test_a_good_master_and_what_the_config_asks_of_it_are_ok_lines():
    found = doctor.master_findings({"mtu": 1400, "hostAccess": True}, MASTER, "eth0", [])
    assert [(f.check, f.status) for f in found] == [("master eth0", "ok"), ("mtu 1400", "ok"), ("hostAccess", "ok")]
    assert "10.1.0.2/24" in found[2].text


def test_the_report_meets_its_schema_and_every_problem_has_a_fix():
    node = [doctor.ok("python", "Python 3.11.2"), doctor.failure("ipvlan", "no driver", "modprobe ipvlan")]
    configs = [("a.conf", [doctor.warning("dhcp", "no -broadcast", "restart it with -broadcast")])]
    report = doctor.report(node, configs)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"] == {"failures": 1, "warnings": 1}
    with pytest.raises(jsonschema.ValidationError):       # the schema holds a failure without a fix
        jsonschema.validate({**report, "node": [{"status": "failure", "check": "x", "text": "y"}]}, SCHEMA)
    assert "what to do: modprobe ipvlan" in doctor.as_text(report)


def test_a_config_file_and_each_plugin_of_a_conflist_must_be_in_the_bin_dirs(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "host-local").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "host-local").chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0", "ipam": {"type": "host-local"}}
    single, conflist = tmp_path / "n.conf", tmp_path / "n.conflist"
    single.write_text(json.dumps(conf))
    conflist.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {k: v for k, v in conf.items() if k not in ("name", "cniVersion")}, {"type": "tuning"}]}))
    for path, missing in ((single, {"plugin ipvlan-ip"}), (conflist, {"plugin ipvlan-ip", "plugin tuning"})):
        found = doctor.check_config(None, str(path), [str(tmp_path / "bin")], links=[MASTER])
        assert {f.check for f in found if f.status == "failure"} == missing, found
        assert {f.check: f.status for f in found}["plugin host-local"] == "ok"


def test_the_bin_dirs_are_where_the_runtimes_look_podmans_from_its_containers_conf(tmp_path, monkeypatch):
    """docs/install.md's podman setup keeps the reference plugins in /usr/lib/cni: doctor looks there too."""
    etc, usr = tmp_path / "containers.conf", tmp_path / "default.conf"
    monkeypatch.setattr(doctor, "CONTAINERS_CONF", (str(etc), str(usr)))
    assert doctor.runtime_bin_dirs() == ["/opt/cni/bin"]
    usr.write_text('[network]\ncni_plugin_dirs = ["/usr/libexec/cni"]\n')
    page = (Path(__file__).resolve().parents[2] / "docs" / "install.md").read_text()
    etc.write_text(page.split("```toml\n", 1)[1].split("```", 1)[0])     # the documented file, as written
    assert doctor.runtime_bin_dirs() == ["/opt/cni/bin", "/usr/lib/cni"]


# Doctor runs in a netns and a mount namespace of its own, with a /run/netns of its own: what is left there
# after it is its alone (a netns list or a link list of the host also holds whatever the tests beside it made).
ALONE = ('mkdir -p /run/netns && mount -t tmpfs ipvlan-ip-test /run/netns && "$0" -m ipvlan_ip doctor --json; '
         'rc=$?; ip netns list >&2; ip -o link show >&2; exit $rc')


@pytest.mark.no_ipvlan
def test_on_a_kernel_without_ipvlan_the_node_check_fails_saying_what_to_do_and_leaves_nothing(without_driver,
                                                                                              tmp_path):
    without_driver("ipvlan")
    done = subprocess.run(["unshare", "--mount", "--net", "sh", "-c", ALONE, sys.executable], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    report = json.loads(done.stdout)
    jsonschema.validate(report, SCHEMA)
    [ipvlan] = [f for f in report["node"] if f["check"] == "ipvlan"]
    assert done.returncode == 1 and ipvlan["status"] == "failure" and "Unknown device type" in ipvlan["text"]
    assert "modprobe ipvlan" in ipvlan["fix"]
    assert {f["check"]: f["status"] for f in report["node"]}["iproute2"] == "ok"
    left = done.stderr.splitlines()
    assert len(left) == 1 and ": lo: " in left[0], done.stderr       # no netns named, no link but lo


DOC = REPO / "docs" / "doctor.md"


def _versions(text: str) -> str:
    import re
    return re.sub(r"(Python|iproute2) \d+\.\d+(\.\d+)?", r"\1 X", text)


@pytest.mark.no_ipvlan      # the example is of a kernel without ipvlan
def test_the_docs_example_is_what_doctor_prints(without_driver, tmp_path):
    without_driver("ipvlan")
    text = DOC.read_text()
    setup = text.split("```sh\n", 1)[1].split("```", 1)[0]
    shown = text.split("<!-- doctor example -->\n```\n", 1)[1].split("```", 1)[0]
    command, expected = shown.split("\n", 1)
    try:
        subprocess.run(["sh", "-ec", setup], cwd=tmp_path, check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-m", "ipvlan_ip", *command.removeprefix("$ ipvlan-ip ").split()],
                              cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                              timeout=60)
    finally:
        subprocess.run(["ip", "link", "del", "dm1"], capture_output=True)
    assert done.returncode == 1
    assert _versions(done.stdout) == _versions(expected)


def test_the_vlan_link_a_config_would_use_is_checked_by_name_kind_id_parent_and_mtu():
    from ipvlan_ip.tools import doctor
    conf = {"type": "ipvlan-ip", "master": "eth0", "vlan": 20}
    vlan20 = {"ifname": "eth0.20", "link": "eth0", "mtu": 1400,
              "linkinfo": {"info_kind": "vlan", "info_data": {"id": 20}}}
    assert doctor.vlan_finding(conf, "eth0", []).status == "ok"                      # made at the first ADD
    assert doctor.vlan_finding(conf, "eth0", [vlan20]).text.endswith("made by the node's owner: used as it is")
    ours = doctor.vlan_finding(conf, "eth0", [{**vlan20, "ifalias": "made by ipvlan-ip"}])     # its mark
    assert ours.status == "ok" and "made by ipvlan-ip at an earlier ADD" in ours.text and "owner" not in ours.text
    assert doctor.vlan_finding({**conf, "mtu": 1450}, "eth0", [vlan20]).status == "failure"
    for other in ({**vlan20, "link": "eth1"}, {**vlan20, "linkinfo": {"info_kind": "vlan", "info_data": {"id": 30}}},
                  {"ifname": "eth0.20", "linkinfo": {"info_kind": "veth"}}):
        found = doctor.vlan_finding(conf, "eth0", [other])
        assert found.status == "failure" and "ip link del dev eth0.20" in found.fix


def test_configs_on_one_master_that_ask_for_different_modes_or_flags_fail_each_naming_the_other(tmp_path):
    base = {"cniVersion": "1.0.0", "type": "ipvlan-ip", "master": "nosuch0", "ipam": {"type": "static"}}
    files = []
    for name, extra in (("a", {}), ("b", {"flag": "private"}), ("c", {"vlan": 20, "mode": "l3"}), ("d", {})):
        files.append(tmp_path / f"{name}.conf")
        files[-1].write_text(json.dumps({**base, "name": name, **extra}))
    # nosuch0 is not among the host's links: only the configs are compared
    found = dict(doctor.port_findings(None, [str(f) for f in files], links=[]))
    a, b, c, d = (str(f) for f in files)
    assert set(found) == {a, b, d} and {f.status for f in found.values()} == {"failure"}    # c is on nosuch0.20
    assert found[a].text == f"$ asks for mode l2, flag bridge, and {b} $ differ on the same master"
    assert found[b].text == f"$ asks for mode l2, flag private, and {a} $, {d} $ differ on the same master"


def test_a_missing_plugin_is_advised_by_where_it_comes_from():
    bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
    advice = {plugin: doctor.plugin_finding(plugin, None, bin_dirs).fix for plugin in ("ipvlan-ip", "host-local",
                                                                                      "whereabouts")}
    assert advice["ipvlan-ip"].startswith("ipvlan-ip install --cni-bin-dir /opt/cni/bin")
    assert "containernetworking-plugins" in advice["host-local"]
    assert "containernetworking-plugins" not in advice["whereabouts"] + advice["ipvlan-ip"]


def test_a_node_with_netavark_is_told_where_podman_finds_the_plugin():
    netavark = {"/usr/lib/podman/netavark"}
    [missing] = doctor.netavark_finding(netavark.__contains__)
    assert missing.status == "warning" and "ipvlan-ip install --netavark" in missing.fix
    [found] = doctor.netavark_finding((netavark | {"/usr/libexec/netavark/ipvlan-ip"}).__contains__)
    assert found.status == "ok" and "/usr/libexec/netavark" in found.text
    assert doctor.netavark_finding(set().__contains__) == []      # no netavark, no word of it
