"""The one conversion layer between CNI result shapes.

Inside the plugin every result is held in the current (1.x) shape, without
its cniVersion: {"interfaces": [...], "ips": [...], "routes": [...], "dns": {...}}.
`parse` reads any version's result into that shape; `render` writes it out in
the version the runtime asked for. The shapes are:

- 0.1.0, 0.2.0: one "ip4" and one "ip6" object, routes inside them;
- 0.3.0, 0.3.1, 0.4.0: "interfaces" and "ips", each IP with a "version";
- 1.0.0, 1.1.0: as 0.3 with "version" dropped.
"""

from . import validation
from .errors import DECODING_FAILURE, INCOMPATIBLE_VERSION, INTERNAL, CniError
from .versions import SUPPORTED_VERSIONS

_SHAPE = {"0.1.0": "0.2", "0.2.0": "0.2", "0.3.0": "0.3", "0.3.1": "0.3",
          "0.4.0": "0.3", "1.0.0": "1.0", "1.1.0": "1.0"}


def schema_for(version: str) -> str:
    if version not in _SHAPE:
        raise CniError(INCOMPATIBLE_VERSION,
                       f"CNI version {version} is not supported; supported: {', '.join(SUPPORTED_VERSIONS)}")
    return f"result-{_SHAPE[version]}"


def family(address: str) -> int:
    """4 or 6, for an address with or without a prefix length (the schemas
    let only hex digits, dots, colons and a /prefix through)."""
    return 6 if ":" in address else 4


def parse(data: dict, default_version: str, what: str) -> dict:
    """Any version's result (or IPAM result) into the internal shape."""
    version = data.get("cniVersion") or default_version
    found = validation.check(schema_for(version), {**data, "cniVersion": version})
    if found:
        raise CniError(DECODING_FAILURE, f"{what} is not a valid {version} result: " + "; ".join(found))
    result = _from_legacy(data) if _SHAPE[version] == "0.2" else _from_current(data)
    try:
        _check_addresses(result)
    except ValueError as e:
        raise CniError(DECODING_FAILURE, f"{what} holds an invalid address: {e}") from e
    return result


def _check_addresses(result: dict) -> None:
    """The schema only checks the characters; ipaddress checks the values."""
    import ipaddress  # here, not at the top: VERSION and a DEL without prevResult never need it
    for ip in result["ips"]:
        ipaddress.ip_interface(ip["address"])
        if ip.get("gateway"):
            ipaddress.ip_address(ip["gateway"])
    for route in result["routes"]:
        ipaddress.ip_network(route["dst"], strict=False)
        if route.get("gw"):
            ipaddress.ip_address(route["gw"])


def _from_current(data: dict) -> dict:
    result: dict = {
        "interfaces": [dict(i) for i in data.get("interfaces", [])],
        "ips": [{k: v for k, v in ip.items() if k != "version"} for ip in data.get("ips", [])],
        "routes": [dict(r) for r in data.get("routes", [])],
    }
    if data.get("dns"):
        result["dns"] = dict(data["dns"])
    return result


def _from_legacy(data: dict) -> dict:
    result: dict = {"interfaces": [], "ips": [], "routes": []}
    for key in ("ip4", "ip6"):
        block = data.get(key)
        if block:
            ip = {"address": block["ip"]}
            if block.get("gateway"):
                ip["gateway"] = block["gateway"]
            result["ips"].append(ip)
            result["routes"] += [dict(r) for r in block.get("routes", [])]
    if data.get("dns"):
        result["dns"] = dict(data["dns"])
    return result


def render(result: dict, version: str) -> dict:
    """The internal shape written out as `version`, checked against its schema."""
    shape = _SHAPE[version] if version in _SHAPE else schema_for(version)
    if shape == "0.2":
        out = _to_legacy(result)
    else:
        out = {"interfaces": result.get("interfaces", []), "ips": result.get("ips", []),
               "routes": result.get("routes", [])}
        if shape == "0.3":
            out["ips"] = [{"version": str(family(ip["address"])), **ip} for ip in out["ips"]]
        if result.get("dns"):
            out["dns"] = result["dns"]
    out = {"cniVersion": version, **out}
    found = validation.check(schema_for(version), out)
    if found:
        raise CniError(INTERNAL, f"the {version} result breaks its own schema: " + "; ".join(found))
    return out


def _to_legacy(result: dict) -> dict:
    out = {}
    for ver, key in ((4, "ip4"), (6, "ip6")):
        ip = next((i for i in result.get("ips", []) if family(i["address"]) == ver), None)
        if ip is None:
            continue
        block = {"ip": ip["address"]}
        if ip.get("gateway"):
            block["gateway"] = ip["gateway"]
        routes = [{k: v for k, v in r.items() if k in ("dst", "gw")}
                  for r in result.get("routes", []) if family(r["dst"]) == ver]
        if routes:
            block["routes"] = routes
        out[key] = block
    if result.get("dns"):
        out["dns"] = result["dns"]
    return out
