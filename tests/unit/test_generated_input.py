"""Generated input (hypothesis): whatever comes in, the plugin answers with one
schema-valid JSON document, exits 0 or 1, and never raises. The runner is a
recording fake that answers like a healthy kernel and IPAM plugin, so the
bulk runs here; tests/kernel/test_generated_sample.py sends a sample of the
same inputs through the real plugin in the VM."""

import contextlib
import io
import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from ipvlan_ip import validation
from ipvlan_ip.commands import Command, Rename, SysctlWrite, netns_at
from ipvlan_ip.environment import find_plugin
from ipvlan_ip.front import plugin
from ipvlan_ip.node.rtnetlink import Link
from ipvlan_ip.versions import SUPPORTED_VERSIONS

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51}

KEYS = ["cniVersion", "name", "type", "master", "mode", "flag", "mtu", "linkInContainer", "ipam", "dns",
        "prevResult", "runtimeConfig", "args", "debug", "timeout", "capabilities", "extra", "cni.dev/x"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)

odd_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=300)
plausible = {
    "cniVersion": st.sampled_from([*SUPPORTED_VERSIONS, "9.9.9", "", "1.0"]),
    "name": st.sampled_from(["net", "a/b", "x" * 300, "ünï", ""]) | odd_text,
    "type": st.just("ipvlan-ip"),
    "master": st.sampled_from(["eth0", "ipam", "", "-n", "help", "a b", "x" * 16]) | odd_text,
    "mode": st.sampled_from(["l2", "l3", "l3s", "", "L2", "l4"]),
    "flag": st.sampled_from(["bridge", "private", "vepa", "", "x"]),
    "mtu": st.sampled_from([0, 67, 68, 1500, 65535, 65536, -1, 1500.5, "1500"]),
    "linkInContainer": st.booleans(),
    "ipam": st.fixed_dictionaries({"type": st.sampled_from(["host-local", "dhcp", "../x", "", "nope"])}),
}


@st.composite
def configs(draw, master: str = "eth0", ipam: dict | None = None):
    conf = {"cniVersion": "1.0.0", "name": "net", "type": "ipvlan-ip", "master": master,
            "ipam": ipam or {"type": "host-local"}}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        strategy = plausible.get(key, json_values)
        conf[key] = draw(strategy | json_values) if draw(st.booleans()) else draw(strategy)
    for key in draw(st.lists(st.sampled_from(list(conf)), max_size=1)):
        conf.pop(key, None)
    encoded = json.dumps(conf).encode()
    mangle = draw(st.sampled_from(["none", "none", "none", "truncate", "garbage", "non-object"]))
    if mangle == "truncate":
        encoded = encoded[: draw(st.integers(0, max(0, len(encoded) - 1)))]
    elif mangle == "garbage":
        encoded = draw(st.binary(max_size=200))
    elif mangle == "non-object":
        encoded = json.dumps(draw(json_values)).encode()
    return encoded


env_values = st.sampled_from(["", "eth0", "c1", "/proc/self/ns/net", "/run/netns/none", "a/b", "x" * 20,
                              ".", "-x", "IgnoreUnknown=1;K8S_POD_NAME=p", "/usr/lib/cni"]) | odd_text


@st.composite
def environments(draw):
    command = st.sampled_from(["ADD"] * 6 + ["DEL", "DEL", "CHECK", "VERSION", "STATUS", "GC", "", "add"])
    env = {"CNI_COMMAND": draw(command),
           "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
    for key in draw(st.lists(st.sampled_from(list(env) + ["CNI_ARGS"] * 3), max_size=2)):
        if draw(st.booleans()):
            env[key] = draw(env_values)
        else:
            env.pop(key, None)
    return env


class FakeRunner:
    """Answers like a healthy host: the master is up, IPAM hands out an address."""

    def __init__(self, echo, timeout):
        self.echo, self.timeout, self.calls = echo, timeout, []

    def run(self, cmd: Command) -> str:
        self.calls.append(cmd.argv)
        return ""

    def run_json(self, cmd: Command) -> list:
        self.calls.append(cmd.argv)
        if "route" in cmd.argv:
            return [[{"dst": "default", "dev": "eth0"}]]
        if cmd.batch:   # CHECK's read of the container
            return [[{"ifname": "eth0", "address": "aa:bb:cc:dd:ee:ff", "flags": ["UP"],
                      "linkinfo": {"info_kind": "ipvlan", "info_data": {"mode": "l2", "bridge": True}},
                      "addr_info": []}], [], [], []]     # the link, IPv4 and IPv6 routes, neighbours
        return [[{"ifname": cmd.argv[-1], "flags": ["UP"], "mtu": 1500, "linkinfo": {}}]]

    def run_batch(self, cmd: Command):
        self.calls.append(cmd.argv)
        if cmd.batch[-1].startswith("link add"):   # ADD's read of the master, and the link created on it
            master = cmd.batch[0].split()[-1]
            return [[{"ifname": master, "flags": ["UP"], "mtu": 1500, "linkinfo": {}}]], []
        return [[{"address": "aa:bb:cc:dd:ee:ff"}]], []

    def netns(self, path: str):
        return netns_at(path)

    def interfaces(self, netns) -> dict:
        return {"lo": Link(1, "lo", "", "00:00:00:00:00:00", "", 0, None, "", "", 0)}

    def host_index(self, name: str) -> int:
        return 0        # no master on this host: no ipvlan port to read (port.py)

    def links(self, where: str) -> list:
        return []

    def rename_link(self, step: Rename) -> None:
        self.calls.append(f"rename {step.old} {step.new}")

    def load_record(self, path: str):
        return None      # no hostAccess record: the host has none of this attachment's routes

    def load_records(self, directory: str) -> dict:
        return {}        # GC: no hostAccess records on this host

    def save_record(self, path: str, record) -> None:
        pass             # the master's hint (port.py): nothing on this host to keep it for

    def write_sysctls(self, writes: list[SysctlWrite]) -> None:
        self.calls += [write.key for write in writes]

    def exclusive(self, path, create=False, shared=False, patience=1.0):
        return contextlib.nullcontext()

    def listening(self, path: str) -> bool:
        return True      # a dhcp daemon is up

    def link_up(self, step) -> None:
        self.calls.append(f"up {step.name}")

    def find_plugin(self, plugin_type, paths):
        return find_plugin(plugin_type, paths)      # the node's real CNI_PATH

    def run_plugin(self, path, env, stdin):
        self.calls.append(path)
        if env["CNI_COMMAND"] == "ADD":
            return 0, json.dumps({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}]})
        return 0, ""


def answer(env: dict, stdin: bytes):
    out = io.StringIO()
    code = plugin.main(env, stdin, out, make_runner=FakeRunner)
    return code, out.getvalue()


@settings(max_examples=400, deadline=None)
@given(environments(), configs())
def test_any_input_gets_a_valid_answer(env, stdin):
    code, printed = answer(env, stdin)
    assert code in (0, 1)
    if code == 1:
        error = json.loads(printed)
        assert validation.problems("error", error) == []
        assert error["code"] in SPEC_CODES or error["code"] >= 100
        assert error["code"] != 199, error          # 199 would be a bug
        return
    if not printed:
        assert env["CNI_COMMAND"] in ("DEL", "CHECK", "STATUS", "GC")
        return
    result = json.loads(printed)
    if env["CNI_COMMAND"] == "VERSION":
        assert validation.problems("version", result) == []
    else:
        from ipvlan_ip.results import schema_for
        assert validation.problems(schema_for(result["cniVersion"]), result) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=40))
def test_interface_names_either_pass_to_ip_as_one_word_or_are_refused(name):
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": name,
           "CNI_PATH": "/usr/lib/cni"}
    conf = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0",
                       "ipam": {"type": "host-local"}}).encode()
    code, printed = answer(env, conf)
    if code == 0:
        assert 0 < len(name.encode()) < 16 and not any(c in "/:" or c.isspace() for c in name)
    else:       # FakeRunner's netns holds lo: a name that is there already is 104
        assert json.loads(printed)["code"] == (104 if name == "lo" else 4)
