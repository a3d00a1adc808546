"""The network configuration on stdin: decoded, checked against
schemas/netconf.schema.json, then turned into a typed NetConf."""

import json
from collections import namedtuple

from . import results, validation
from .environment import batch_problem, interface_name_problem
from .errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, CniError
from .versions import SUPPORTED_VERSIONS, version_tuple

# A config without cniVersion predates the field: the spec reads it as 0.1.0.
DEFAULT_VERSION = "0.1.0"
DEFAULT_TIMEOUT = 30.0


class NetConf(namedtuple("NetConf", "cni_version name type master mode flag mtu link_in_container host_access "
                                    "ipam_type ipam dns prev_result debug log_file timeout stdin refused vlan "
                                    "proxy_neighbors slaac service_cidrs",
                                    defaults=("", 0, False, False, ()))):
    """The config as the plugin uses it. `master` "" means: from prevResult,
    else the default-route interface; `flag` "" the kernel's default (bridge);
    `mtu` 0 the kernel's choice; `ipam_type` "" no IPAM (addresses come from
    prevResult), `ipam` its section as given; `prev_result` is already in the internal shape (results.py);
    `stdin` goes unchanged to the IPAM plugin; `refused` is why ADD would
    refuse a config that DEL or GC still reads (see load); `vlan` 0 means
    none, else the master's VLAN sub-interface carries the links (vlan.py);
    `proxy_neighbors`, `slaac` and `service_cidrs` are proxyNeighbors,
    ipv6.slaac and serviceCIDRs (capabilities/). A namedtuple, as in commands.py,
    to keep dataclasses' import off every call."""
    __slots__ = ()

    @property
    def master_from_ipam(self) -> bool:
        return self.master == "ipam"

    @property
    def dhcp(self) -> bool:
        return self.ipam_type == "dhcp"


def decode(stdin: bytes):
    """stdin as JSON (code 6 when it is not), with no other check."""
    try:
        return json.loads(stdin)
    except (UnicodeDecodeError, ValueError) as e:
        raise CniError(DECODING_FAILURE, f"failed to decode the network configuration on stdin: {e}") from e


# Teardown must complete (spec: DEL): a config that ADD refuses made nothing
# but, edited since its ADD, may name what IPAM holds.
TEARDOWN = ("DEL", "GC")


def load(data, stdin: bytes, command: str) -> NetConf:
    """`data` is stdin already decoded (see decode): the entry point reads it
    first for the debug settings, and once is enough. For DEL and GC, a
    config that ADD would refuse is read as far as it can be (see usable),
    with what ADD would say in `refused`."""
    if not isinstance(data, dict):
        raise CniError(DECODING_FAILURE, "the network configuration must be a JSON object, "
                       f"not {type(data).__name__}")
    found = validation.check("netconf", data)
    if found and command not in TEARDOWN:
        raise CniError(INVALID_CONFIG, "invalid network configuration: " + "; ".join(found))
    name = data.get("name", "")
    if found:
        data = usable(data)
        # A name the schema refuses is still this network's, never another's: read as absent, it would be the
        # unnamed networks' (state.network_key), and GC would collect their records.
        name = name if isinstance(name, str) else json.dumps(name)
    version = data.get("cniVersion") or DEFAULT_VERSION
    _check_version(version, command)
    refused = refusal(data)
    if refused and command not in TEARDOWN:
        raise CniError(INVALID_CONFIG, refused)
    refused = "; ".join(found) if found else refused

    prev = data.get("prevResult")
    # 0.1.0 and 0.2.0 have no chaining: a prevResult there means nothing.
    if prev is not None and version_tuple(version) >= (0, 3, 0):
        try:
            prev = results.parse(prev, version, "prevResult")
        except CniError:
            if command not in TEARDOWN:
                raise
            prev = None     # DEL then knows the master less well; it still removes only ipvlan links
    else:
        prev = None

    ipam = data.get("ipam") or {}
    return NetConf(
        cni_version=version,
        name=name,
        type=data.get("type", ""),
        master=data.get("master", ""),
        mode=data.get("mode") or "l2",
        flag=data.get("flag", ""),
        mtu=int(data.get("mtu", 0)),   # JSON Schema's integer takes 1500.0 too
        link_in_container=data.get("linkInContainer", False),
        host_access=data.get("hostAccess", False),
        ipam_type=ipam.get("type", ""),
        ipam=ipam,
        dns=data.get("dns") or None,
        prev_result=prev,
        debug=data.get("debug", False),
        log_file=data.get("logFile", ""),
        timeout=float(data.get("timeout", DEFAULT_TIMEOUT)),
        stdin=stdin,
        refused=refused,
        vlan=int(data.get("vlan", 0)),
        proxy_neighbors=data.get("proxyNeighbors", False),
        slaac=(data.get("ipv6") or {}).get("slaac", False),
        service_cidrs=tuple(data.get("serviceCIDRs") or ()),
    )


def usable(data: dict) -> dict:
    """The settings of a config the schema rejects that it takes one by one:
    a wrong one reads as absent. An `ipam` whose type is no plugin file name
    goes too, so that nothing outside CNI_PATH is ever run."""
    return {key: value for key, value in data.items() if validation.valid("netconf", {"type": "-", key: value})}


def refusal(data: dict) -> str:
    """Why ADD cannot work with a config the schema takes, or ""."""
    ipam_type = (data.get("ipam") or {}).get("type", "")
    master, mode = data.get("master", ""), data.get("mode") or "l2"
    if ipam_type == "dhcp" and mode != "l2":
        return (f"ipam type \"dhcp\" needs mode l2: in {mode} no broadcast reaches an ipvlan link, so the "
                "DHCP server's replies never arrive (see docs/dhcp.md)")
    if ipam_type == "dhcp" and master == "ipam":
        return ("\"master\": \"ipam\" cannot work with ipam type \"dhcp\": the dhcp plugin names no "
                "interface, and it needs the link made first")
    problem = interface_name_problem(master) if master else None
    problem = problem or batch_problem(master)
    if problem:
        return f"master {master!r} {problem}"
    from . import capabilities  # their declarations: refusal is the one place config needs them
    for capability in capabilities.ALL:
        problem = capability.refusal(data) if capability.asked(data) else ""
        if problem:
            return problem
    if master == "ipam" and not ipam_type:
        return "\"master\": \"ipam\" needs an ipam section with a type"
    return ""


_FIRST = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def _check_version(version: str, command: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"CNI version {version} is not supported; "
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    first = _FIRST.get(command)
    if first and version_tuple(version) < version_tuple(first):
        raise CniError(INCOMPATIBLE_VERSION,
                       f"config version {version} does not allow {command} (it needs {first} or later)")
