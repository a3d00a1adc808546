"""The compiled validators against their source and their engine of record:
ipvlan_ip/compiled_schemas.py is exactly what scripts/compile_schemas.py makes
of schemas/ today, and it accepts and rejects the same documents as
jsonschema, over generated configs and results, valid and broken."""

import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from ipvlan_ip import validation
from ipvlan_ip.compiled_schemas import VALIDATORS, JsonSchemaValueException

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import compile_schemas  # noqa: E402


def test_the_compiled_module_is_what_the_schemas_compile_to_today():
    assert compile_schemas.TARGET.read_text() == compile_schemas.generate(), \
        "ipvlan_ip/compiled_schemas.py drifted from schemas/: run .venv/bin/python scripts/compile_schemas.py"


def test_every_schema_has_a_compiled_validator():
    assert set(VALIDATORS) == set(compile_schemas.load_schemas())


def compiled_accepts(name: str, doc) -> bool:
    try:
        VALIDATORS[name](doc)
        return True
    except JsonSchemaValueException:
        return False


scalars = (st.none() | st.booleans() | st.integers(-70000, 70000) | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(["", "eth0", "ipam", "l2", "l3s", "vepa", "1.0.0", "0.4.0", "0.2.0", "10.1.2.3/24",
                              "10.1.2.1", "fd00::5/64", "::/0", "4", "6", "a/b", "x" * 16, ".", "/var/log/x",
                              "host-local", "0.0.0.0/0", "1.0.0\n", "é"]))
keys = st.sampled_from(["name", "address", "dst", "gw", "ip", "x"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
                      max_leaves=8)


def mutated(base: dict, keys: list[str], leaf_values):
    """`base` with some keys set to arbitrary values, or removed."""
    return st.lists(st.tuples(st.sampled_from(keys), st.none() | leaf_values), max_size=4).map(
        lambda changes: _apply(base, changes))


def _apply(base: dict, changes) -> dict:
    doc = dict(base)
    for key, value in changes:
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


NETCONF = {"cniVersion": "1.0.0", "name": "net", "type": "ipvlan-ip", "master": "eth0", "mode": "l2",
           "ipam": {"type": "host-local"}}
IP = st.fixed_dictionaries({"address": scalars}, optional={"gateway": scalars, "interface": scalars,
                                                           "version": scalars})
ROUTE = st.fixed_dictionaries({"dst": scalars}, optional={"gw": scalars, "mtu": scalars, "table": scalars,
                                                          "scope": scalars, "priority": scalars})
# A valid document of each schema, and what may be put in its keys: mostly
# plausible parts, which keep it valid or break it in one place.
VALID = {
    "netconf": NETCONF,
    "result-1.0": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff"}],
                   "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.1.2.1"]}},
    "result-0.3": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.2.3/24"}]},
    "result-0.2": {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/24", "gateway": "10.1.2.1"}},
    "version": {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]},
    "error": {"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "x"},
}
PARTS = {
    "cniVersion": st.sampled_from(["1.0.0", "1.1.0", "0.4.0", "0.3.1", "0.2.0", "0.1.0", "1.0", ""]),
    "mode": st.sampled_from(["l2", "l3", "l3s", "", "l4"]), "flag": st.sampled_from(["private", "x"]),
    "mtu": st.sampled_from([0, 67, 68, 1500, 1500.0, 65536, True, "1500"]),
    "master": st.sampled_from(["eth0", "ipam", "", "a b", "x" * 16, ".", "a/b"]),
    "ipam": st.sampled_from([{}, {"type": "dhcp"}, {"type": ""}, {"type": "a/b"}, {"type": 1}]),
    "timeout": st.sampled_from([1, 0.5, 3600, 3601, "30"]), "logFile": st.sampled_from(["/x", "x"]),
    "interfaces": st.lists(st.fixed_dictionaries({"name": scalars}, optional={"mac": scalars, "mtu": scalars}),
                           max_size=2),
    "ips": st.lists(IP, max_size=2), "routes": st.lists(ROUTE, max_size=2),
    "dns": st.fixed_dictionaries({}, optional={"nameservers": values, "domain": scalars}),
    "ip4": st.fixed_dictionaries({"ip": scalars}, optional={"gateway": scalars, "routes": st.lists(ROUTE)}),
    "code": scalars, "msg": scalars, "supportedVersions": st.lists(scalars, max_size=2),
}
KEYS = sorted({*PARTS, "name", "type", "linkInContainer", "prevResult", "debug", "ip6", "details", "other"})


@st.composite
def documents(draw):
    name = draw(st.sampled_from(sorted(VALIDATORS)))
    if draw(st.integers(0, 9)) == 0:
        return name, draw(values)                              # anything at all
    doc = dict(VALID[name])
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        if draw(st.integers(0, 4)) == 0:
            doc.pop(key, None)
        else:
            doc[key] = draw(PARTS.get(key, values) | values) if draw(st.booleans()) else draw(PARTS.get(key, values))
    return name, doc


@settings(max_examples=800, deadline=None)
@given(documents())
def test_compiled_and_jsonschema_give_the_same_verdict(case):
    name, doc = case
    assert compiled_accepts(name, doc) == (validation.problems(name, doc) == []), (name, doc)


def test_a_rejected_document_is_explained_by_jsonschema_with_json_paths():
    found = validation.check("netconf", {**NETCONF, "mtu": 10, "mode": "l4"})
    assert found == ["$.mode: 'l4' is not one of ['', 'l2', 'l3', 'l3s']",
                     "$.mtu: 10 is not valid: 0 or absent: the kernel's choice (the master's MTU)"]


def test_without_jsonschema_the_compiled_message_names_path_and_reason(monkeypatch):
    def no_jsonschema(name):
        raise ImportError("no jsonschema here")
    monkeypatch.setattr(validation, "_validator", no_jsonschema)
    assert validation.check("netconf", {**NETCONF, "mode": "l4"}) == \
        ["$.mode: must be one of ['', 'l2', 'l3', 'l3s']"]
    assert validation.check("result-1.0", {"cniVersion": "1.0.0", "ips": [{"address": "x"}]}) == \
        ["$.ips[0].address: must match pattern ^[0-9A-Fa-f.:]+/[0-9]{1,3}$"]
