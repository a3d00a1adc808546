"""The network configuration on stdin: decoded, checked against
schemas/netconf.schema.json, then turned into a typed NetConf."""

import json
from collections import namedtuple

from . import results, validation
from .environment import batch_problem
from .errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, CniError
from .versions import SUPPORTED_VERSIONS, version_tuple

# A config without cniVersion predates the field: the spec reads it as 0.1.0.
DEFAULT_VERSION = "0.1.0"
DEFAULT_TIMEOUT = 30.0


class NetConf(namedtuple("NetConf", "cni_version name type master mode flag mtu link_in_container host_access "
                                    "ipam_type ipam dns prev_result debug log_file timeout stdin")):
    """The config as the plugin uses it. `master` "" means: from prevResult,
    else the default-route interface; `flag` "" the kernel's default (bridge);
    `mtu` 0 the kernel's choice; `ipam_type` "" no IPAM (addresses come from
    prevResult), `ipam` its section as given; `prev_result` is already in the internal shape (results.py);
    `stdin` goes unchanged to the IPAM plugin. A namedtuple, as in commands.py,
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


def load(data, stdin: bytes, command: str) -> NetConf:
    """`data` is stdin already decoded (see decode): the entry point reads it
    first for the debug settings, and once is enough."""
    if not isinstance(data, dict):
        raise CniError(DECODING_FAILURE, "the network configuration must be a JSON object, "
                       f"not {type(data).__name__}")
    found = validation.check("netconf", data)
    if found:
        raise CniError(INVALID_CONFIG, "invalid network configuration: " + "; ".join(found))
    version = data.get("cniVersion") or DEFAULT_VERSION
    _check_version(version, command)

    ipam = data.get("ipam") or {}
    ipam_type = ipam.get("type", "")
    master = data.get("master", "")
    mode = data.get("mode") or "l2"
    if ipam_type == "dhcp" and mode != "l2":
        raise CniError(INVALID_CONFIG, f"ipam type \"dhcp\" needs mode l2: in {mode} no broadcast reaches "
                       "an ipvlan link, so the DHCP server's replies never arrive (see README.md, "
                       "\"Addresses from your LAN's DHCP server\")")
    if ipam_type == "dhcp" and master == "ipam":
        raise CniError(INVALID_CONFIG, "\"master\": \"ipam\" cannot work with ipam type \"dhcp\": the dhcp "
                       "plugin names no interface, and it needs the link made first")
    problem = batch_problem(master)
    if problem:
        raise CniError(INVALID_CONFIG, f"master {master!r} {problem}")
    flag = data.get("flag", "")
    if data.get("hostAccess") and (flag in ("private", "vepa") or data.get("linkInContainer")):
        raise CniError(INVALID_CONFIG, "hostAccess cannot work with " + (
            f"flag {flag!r}: the host reaches its containers through an ipvlan link of its own, and with "
            f"{flag} one ipvlan link may not talk to another" if flag in ("private", "vepa") else
            "linkInContainer: the master is then in the container's netns, not the host's"))
    if master == "ipam" and not ipam_type:
        raise CniError(INVALID_CONFIG, "\"master\": \"ipam\" needs an ipam section with a type")

    prev = data.get("prevResult")
    # 0.1.0 and 0.2.0 have no chaining: a prevResult there means nothing.
    if prev is not None and version_tuple(version) >= (0, 3, 0):
        prev = results.parse(prev, version, "prevResult")
    else:
        prev = None

    return NetConf(
        cni_version=version,
        name=data.get("name", ""),
        type=data["type"],
        master=master,
        mode=mode,
        flag=flag,
        mtu=int(data.get("mtu", 0)),   # JSON Schema's integer takes 1500.0 too
        link_in_container=data.get("linkInContainer", False),
        host_access=data.get("hostAccess", False),
        ipam_type=ipam_type,
        ipam=ipam,
        dns=data.get("dns") or None,
        prev_result=prev,
        debug=data.get("debug", False),
        log_file=data.get("logFile", ""),
        timeout=float(data.get("timeout", DEFAULT_TIMEOUT)),
        stdin=stdin,
    )


_FIRST = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def _check_version(version: str, command: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"CNI version {version} is not supported; "
                       f"supported: {', '.join(SUPPORTED_VERSIONS)}")
    first = _FIRST.get(command)
    if first and version_tuple(version) < version_tuple(first):
        raise CniError(INCOMPATIBLE_VERSION,
                       f"config version {version} does not allow {command} (it needs {first} or later)")
