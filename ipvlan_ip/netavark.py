"""Podman 5's front end: ipvlan-ip as a netavark plugin (netavark's
plugin-API.md). Podman runs it, through netavark, as an executable in one of
containers.conf's `netavark_plugin_dirs`, with a subcommand:

  create          a network's config on stdin (what `podman network create`
                  was given); checked, it goes back on stdout;
  setup NETNS     a container joins the network: the network and the
                  container's options on stdin, a status block on stdout;
  teardown NETNS  the container leaves it;
  info            the plugin's version and the API's.
A failure is `{"error": "..."}` on stdout, which podman shows its user.

Nothing here configures anything: each subcommand translates podman's JSON
into the CNI config and environment that the CNI path takes (the options
checked by the same schema), runs it through plugin.main (ADD for setup,
DEL for teardown), and translates the answer back. The addresses are the
ones podman's own IPAM assigned (`static_ips`), given to ADD as a chained
plugin's prevResult is; with `--ipam-driver dhcp`, the CNI dhcp plugin
leases them from the LAN, as on the CNI path.
"""
from __future__ import annotations

import io
import json
import os
import sys

API_VERSION = "1.0.0"
# podman's option names, and the config keys they set: podman's own names where it has one.
OPTIONS = {"parent": "master", "mode": "mode", "flag": "flag", "mtu": "mtu", "vlan": "vlan",
           "host_access": "hostAccess", "proxy_neighbors": "proxyNeighbors", "debug": "debug", "log_file": "logFile"}
NUMBERS = ("mtu", "vlan")
SWITCHES = ("host_access", "proxy_neighbors", "debug")
# Where the CNI dhcp plugin is looked for, as the CNI bin dirs of Debian's package and of upstream's.
CNI_PATH = "/usr/lib/cni:/opt/cni/bin"


class Refused(Exception):
    """What the podman user is told, as netavark's {"error": ...}."""


def main(argv: list[str], stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    try:
        answer = _answer(argv, stdin.read())
    except Refused as e:
        answer = {"error": f"ipvlan-ip: {e}"}
    if answer is not None:
        stdout.write(json.dumps(answer) + "\n")
    stdout.flush()
    return 1 if answer is not None and "error" in answer else 0


def _answer(argv: list[str], stdin: bytes) -> dict | None:
    verb = argv[0] if argv else ""
    if verb == "info":
        from . import __version__
        return {"version": __version__, "api_version": API_VERSION}
    try:
        data = json.loads(stdin)
    except ValueError as e:
        raise Refused(f"{verb}: stdin is not JSON: {e}") from e
    if verb == "create":
        return create(data)
    if verb in ("setup", "teardown") and len(argv) == 2:
        return run(verb, argv[1], data)
    raise Refused(f"unknown subcommand {' '.join(argv)!r}: netavark runs create, setup NETNS, teardown NETNS, info")


# ---------------------------------------------------------------- create

def create(network: dict) -> dict:
    """The network as `podman network create` made it, checked: the same
    schema and combinations as a CNI config, so that the user hears of a bad
    option now rather than at the first container. -o parent= becomes the
    network's interface."""
    options = dict(network.get("options") or {})
    parent = options.pop("parent", "")
    if parent and network.get("network_interface") and parent != network["network_interface"]:
        raise Refused(f"-o parent={parent} and --interface-name={network['network_interface']} name two masters")
    checked = {**network, "network_interface": parent or network.get("network_interface") or "",
               "options": options}
    netconf(checked)
    if not checked["network_interface"]:
        # The default-route interface, as the CNI path picks it, but named now: it must not change under the network.
        raise Refused("name the master: -o parent=DEVICE (or --interface-name DEVICE)")
    driver = (network.get("ipam_options") or {}).get("driver", "host-local")
    if driver not in ("host-local", "dhcp", ""):
        raise Refused(f"--ipam-driver {driver}: ipvlan-ip takes podman's own addresses (host-local, the default) "
                      "or dhcp")
    if driver == "dhcp" and network.get("subnets"):
        raise Refused("--ipam-driver dhcp takes its addresses from the LAN's DHCP server: leave --subnet out")
    if driver != "dhcp" and not network.get("subnets"):
        raise Refused("give the LAN's subnet: --subnet CIDR (and --gateway ADDRESS), or --ipam-driver dhcp")
    return checked


def netconf(network: dict, ips: dict | None = None) -> dict:
    """The CNI config a network stands for, checked as a CNI config is:
    Refused names the podman option at fault. `ips`, a CNI result, gives
    the container's addresses as a chained plugin's prevResult."""
    from . import config, validation
    conf: dict = {"cniVersion": "1.0.0", "name": network.get("name", ""), "type": "ipvlan-ip",
                  "master": network.get("network_interface") or ""}
    for option, value in (network.get("options") or {}).items():
        if option not in OPTIONS:
            raise Refused(f"unknown option -o {option}: ipvlan-ip takes {', '.join(f'-o {o}' for o in OPTIONS)}")
        conf[OPTIONS[option]] = _typed(option, value)
    if (network.get("ipam_options") or {}).get("driver") == "dhcp":
        conf["ipam"] = {"type": "dhcp"}
    if ips is not None:
        conf["prevResult"] = ips
    names = {key: option for option, key in OPTIONS.items()}
    for problem in validation.problems("netconf", conf):
        key = problem.split(":")[0].removeprefix("$.").split(".")[0]
        raise Refused(f"-o {names.get(key, key)}: {problem.split(': ', 1)[-1]}" if key in names else problem)
    refused = config.refusal(conf)
    if refused:
        raise Refused(refused)
    return conf


def _typed(option: str, value: str):
    """podman's option values are strings; the config's are typed."""
    if option in NUMBERS:
        try:
            return int(value)
        except ValueError:
            raise Refused(f"-o {option}={value}: a whole number is needed") from None
    if option in SWITCHES:
        if value not in TRUE + FALSE:
            raise Refused(f"-o {option}={value}: true or false")
        return value in TRUE
    return value


# What podman's own boolean options take (Go's strconv.ParseBool).
TRUE, FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")


# ---------------------------------------------------------------- setup, teardown

def run(verb: str, netns: str, exec_: dict) -> dict | None:
    """setup: ADD, and its result as a status block; teardown: DEL."""
    from .plugin import main as plugin_main
    network, options = exec_.get("network") or {}, exec_.get("network_options") or {}
    if verb == "setup" and options.get("static_mac"):
        raise Refused("--mac-address: an ipvlan link carries its master's MAC, so it cannot have one of its own")
    dhcp = (network.get("ipam_options") or {}).get("driver") == "dhcp"
    conf = netconf(network, None if dhcp else assigned(network, options))
    environ = {"CNI_COMMAND": "ADD" if verb == "setup" else "DEL", "CNI_CONTAINERID": exec_.get("container_id", ""),
               "CNI_NETNS": netns, "CNI_IFNAME": options.get("interface_name", ""),
               "CNI_PATH": os.environ.get("CNI_PATH", CNI_PATH),
               **{k: v for k, v in os.environ.items() if k.startswith("IPVLAN_IP_")}}
    out = io.StringIO()
    code = plugin_main(environ, json.dumps(conf).encode(), out)
    answer = json.loads(out.getvalue() or "null")
    if code != 0:
        raise Refused(f"{answer['msg']}: {answer.get('details', '')}" if isinstance(answer, dict) else
                      f"{verb} failed")
    return status(answer) if verb == "setup" else None


def assigned(network: dict, options: dict) -> dict:
    """The addresses podman's IPAM gave the container, as a CNI 1.0.0
    result: each in its subnet's prefix, with its gateway; a default route
    per family through it unless the network is --internal, and the
    network's --route ones."""
    import ipaddress
    subnets = [(ipaddress.ip_network(s["subnet"]), s.get("gateway")) for s in network.get("subnets") or []]
    ips, routes = [], []
    for address in options.get("static_ips") or []:
        ip = ipaddress.ip_address(address)
        found = next(((net, gw) for net, gw in subnets if ip in net), None)
        if found is None:
            raise Refused(f"{address} is in none of the network's subnets")
        net, gateway = found
        ips.append({"address": f"{ip}/{net.prefixlen}", **({"gateway": gateway} if gateway else {})})
        if gateway and not network.get("internal"):
            routes.append({"dst": "0.0.0.0/0" if ip.version == 4 else "::/0", "gw": gateway})
    if not ips:
        raise Refused("podman assigned the container no address on this network")
    for route in network.get("routes") or []:
        routes.append({"dst": route["destination"], **({"gw": route["gateway"]} if route.get("gateway") else {}),
                       **({"priority": route["metric"]} if route.get("metric") is not None else {})})
    return {"cniVersion": "1.0.0", "interfaces": [], "ips": ips, "routes": routes}


def status(result: dict) -> dict:
    """The CNI result as netavark's status block, which `podman inspect` shows."""
    [interface] = result["interfaces"]
    return {"dns_search_domains": (result.get("dns") or {}).get("search", []),
            "dns_server_ips": (result.get("dns") or {}).get("nameservers", []),
            "interfaces": {interface["name"]: {
                "mac_address": interface.get("mac", ""),
                "subnets": [{"ipnet": ip["address"], **({"gateway": ip["gateway"]} if ip.get("gateway") else {})}
                            for ip in result["ips"]]}}}
