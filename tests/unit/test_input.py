"""Bad input never reaches `ip`: the plugin answers with a CNI error object.
These run the real entry point in-process; nothing here touches the system."""

import io
import json

import pytest

from ipvlan_ip.environment import interface_name_problem, parse_cni_args
from ipvlan_ip.front import plugin

GOOD = {"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0",
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}


def answer(env, stdin):
    out = io.StringIO()
    code = plugin.main(env, stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode(), out)
    return code, json.loads(out.getvalue())


@pytest.mark.parametrize("change, code", [
    ({"CNI_COMMAND": None}, 4), ({"CNI_COMMAND": "FOO"}, 4), ({"CNI_IFNAME": None}, 4),
    ({"CNI_IFNAME": "a b"}, 4), ({"CNI_IFNAME": "a/b"}, 4), ({"CNI_IFNAME": "x" * 16}, 4),
    ({"CNI_IFNAME": ".."}, 4), ({"CNI_IFNAME": "a#b"}, 4), ({"CNI_IFNAME": "a'b\"c"}, 4),
    # the kernel reads % as a name template (net%d is named net0); iproute2's batch input joins a line
    # ending in a backslash to the next
    ({"CNI_IFNAME": "net%d"}, 4), ({"CNI_IFNAME": "eth0\\"}, 4),
    ({"CNI_CONTAINERID": "-x"}, 4), ({"CNI_CONTAINERID": ""}, 4),
    ({"CNI_NETNS": None}, 4), ({"CNI_NETNS": "relative"}, 4),
    ({"IPVLAN_IP_TIMEOUT": "soon"}, 4), ({"IPVLAN_IP_TIMEOUT": "0"}, 4), ({"IPVLAN_IP_TIMEOUT": "nan"}, 4),
])
def test_bad_environment(change, code):
    env = {k: v for k, v in {**ENV, **change}.items() if v is not None}
    rc, out = answer(env, GOOD)
    assert rc == 1 and out["code"] == code and out["cniVersion"] == "1.0.0"


@pytest.mark.parametrize("conf, code", [
    (b"{nope", 6), (b"", 6), (b"[1,2]", 6), (b"\xff\xfe", 6),
    ({**GOOD, "mode": "l4"}, 7), ({**GOOD, "mtu": 10}, 7), ({**GOOD, "mtu": "1500"}, 7),
    ({**GOOD, "master": "a b"}, 7), ({**GOOD, "master": "x" * 16}, 7), ({**GOOD, "name": "a/b"}, 7),
    # iproute2's batch input, which reads the master and creates the link, cuts a line at '#'
    ({**GOOD, "master": "help#1"}, 7), ({**GOOD, "master": "a'b\"c"}, 7),
    ({**GOOD, "ipam": {"type": "../evil"}}, 7),
    # dhcp: no broadcast reaches an ipvlan link in l3 or l3s; and it names no master
    ({**GOOD, "ipam": {"type": "dhcp"}, "mode": "l3"}, 7), ({**GOOD, "ipam": {"type": "dhcp"}, "mode": "l3s"}, 7),
    ({**GOOD, "ipam": {"type": "dhcp"}, "master": "ipam"}, 7),
    ({**GOOD, "linkInContainer": "yes"}, 7), ({**GOOD, "master": "ipam", "ipam": {}}, 7),
    ({k: v for k, v in GOOD.items() if k != "type"}, 7),
    ({**GOOD, "cniVersion": "2.0.0"}, 1), ({**GOOD, "cniVersion": 1}, 7),
])
def test_bad_config(conf, code):
    rc, out = answer(ENV, conf)
    assert rc == 1 and out["code"] == code, out
    assert set(out) == {"cniVersion", "code", "msg", "details"}


REFUSED_BY_ADD = [{"mode": "l3", "ipam": {"type": "dhcp"}}, {"master": "ipam", "ipam": {"type": "dhcp"}},
                  {"hostAccess": True, "flag": "vepa"}, {"hostAccess": True, "linkInContainer": True},
                  {"master": "a#b"}, {"master": "net%d"}, {"mode": "l4"}, {"mtu": "1500"}, {"cniVersion": 1}]


@pytest.mark.parametrize("edit", REFUSED_BY_ADD)
def test_del_completes_for_a_config_that_add_refuses(edit):
    # ADD refuses it before anything; DEL asks IPAM to release (the config may have been
    # edited since an ADD that did allocate) and succeeds even when IPAM cannot.
    conf = json.dumps({**GOOD, **edit}).encode()
    assert answer(ENV, conf)[1]["code"] == 7
    for ipam_answer in ((0, ""), (1, '{"code": 999, "msg": "no such range"}')):
        make, runner = _recording(ipam_answer)
        out = io.StringIO()
        assert plugin.main({**ENV, "CNI_COMMAND": "DEL"}, conf, out, make_runner=make) == 0, out.getvalue()
        assert out.getvalue() == ""
        ipam_type = {**GOOD, **edit}["ipam"]["type"]
        assert f"/usr/lib/cni/{ipam_type}" in runner[0].calls


@pytest.mark.parametrize("change", [{"CNI_IFNAME": "net%d"}, {"CNI_IFNAME": "a b"}, {"CNI_CONTAINERID": "../x"},
                                    {"CNI_NETNS": "relative"}])
def test_del_with_names_add_refuses_completes_without_touching_anything(change):
    make, runner = _recording((0, ""))
    out = io.StringIO()
    assert plugin.main({**ENV, "CNI_COMMAND": "DEL", **change}, json.dumps(GOOD).encode(), out, make_runner=make) == 0
    assert out.getvalue() == "" and runner[0].calls == []


def test_del_still_refuses_what_is_no_request():
    assert answer({**ENV, "CNI_COMMAND": "DEL"}, b"{nope")[1]["code"] == 6
    assert answer({k: v for k, v in ENV.items() if k != "CNI_COMMAND"}, GOOD)[1]["code"] == 4


def _recording(ipam_answer):
    from .test_generated_input import FakeRunner
    made = []

    class Recording(FakeRunner):
        def run_plugin(self, path, env, stdin):
            self.calls.append(path)
            return ipam_answer

    def make(echo, timeout):
        made.append(Recording(echo, timeout))
        return made[-1]
    return make, made


@pytest.mark.parametrize("valid", [{"containerID": "c1"}, "c1", [["c1", "eth0"]], 7, [{"containerID": 7}],
                                   [{"containerID": ["c1"]}], [{"containerID": "c1", "ifname": {"a": 1}}]])
def test_gc_refuses_valid_attachments_it_cannot_read_before_collecting_anything(valid):
    make, runner = _recording((0, ""))
    conf = json.dumps({**GOOD, "cniVersion": "1.1.0", "cni.dev/valid-attachments": valid}).encode()
    out = io.StringIO()
    assert plugin.main({"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}, conf, out, make_runner=make) == 1
    assert json.loads(out.getvalue())["code"] == 7 and runner[0].calls == []


def test_check_and_status_need_recent_versions():
    assert answer({**ENV, "CNI_COMMAND": "CHECK"}, {**GOOD, "cniVersion": "0.3.1"})[1]["code"] == 1
    assert answer({**ENV, "CNI_COMMAND": "STATUS"}, GOOD)[1]["code"] == 1
    assert answer({**ENV, "CNI_COMMAND": "CHECK"}, GOOD)[1]["code"] == 7   # no prevResult


def test_version_answers_whatever_the_environment():
    env = {"CNI_COMMAND": "VERSION", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy", "CNI_PATH": "dummy"}
    rc, out = answer(env, {"cniVersion": "1.0.0"})
    assert rc == 0 and out == {"cniVersion": "1.0.0", "supportedVersions":
                               ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_missing_ipam_plugin_is_reported_before_any_command():
    # ADD looks from inside the netns (our own here) for CNI_IFNAME, which must not exist.
    env = {**ENV, "CNI_PATH": "/nonexistent", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "absent-if0"}
    rc, out = answer(env, {**GOOD, "master": "ipam"})
    assert rc == 1 and out["code"] == 7 and "host-local" in out["details"]


def test_a_netns_path_that_is_no_netns(tmp_path):
    # ADD refuses it before anything is allocated; DEL still releases the address and succeeds.
    plain = tmp_path / "netns"
    plain.touch()
    conf = {**GOOD, "ipam": {**GOOD["ipam"], "dataDir": str(tmp_path / "ipam")}}
    rc, out = answer({**ENV, "CNI_NETNS": str(plain)}, conf)
    assert rc == 1 and out["code"] == 4 and "is not a network namespace" in out["details"]
    assert not (tmp_path / "ipam").exists()
    out = io.StringIO()
    assert plugin.main({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": str(plain)}, json.dumps(conf).encode(), out) == 0
    assert out.getvalue() == ""


def test_cni_args_keep_unknown_keys_and_skip_garbage():
    assert parse_cni_args("IgnoreUnknown=true;K8S_POD_NAME=web-0;junk;=x") == {
        "IgnoreUnknown": "true", "K8S_POD_NAME": "web-0"}


def test_interface_names():
    assert interface_name_problem("eth0") is None
    assert interface_name_problem("x" * 15) is None
    assert "longer" in interface_name_problem("é" * 8)
