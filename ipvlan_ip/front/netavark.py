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

from ..capabilities import ALL as CAPABILITIES

API_VERSION = "1.0.0"

# podman's option names, and the config keys they set: podman's own names where it has one; each
# capability's as it declares it (capability.py).
OPTIONS = {"parent": "master", "mode": "mode", "flag": "flag", "mtu": "mtu",
           **{c.option: c.key for c in CAPABILITIES if c.option}, "timeout": "timeout", "debug": "debug",
           "log_file": "logFile"}
NUMBERS = ("mtu", "metric", "timeout", *(c.option for c in CAPABILITIES if c.option and c.option_type is int))
SWITCHES = ("debug", "no_default_route", *(c.option for c in CAPABILITIES if c.option and c.option_type is bool))
# podman's own options for every driver, which shape the routes podman's addresses come with, not the config.
ROUTING = ("metric", "no_default_route")
# The default routes' metric without -o metric: netavark's ipvlan and macvlan's, below its bridge's 100 so that
# the LAN's route wins over a bridge network's (podman#23984), in both families alike.
DEFAULT_METRIC = 99
# The host's interfaces, by name (read as a name, a look-up loads no module).
SYS_NET = "/sys/class/net"
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
    except Exception as e:      # never a traceback: netavark reads stdout as JSON, and would say "EOF"
        verb = argv[0] if argv else ""
        answer = {"error": f"ipvlan-ip: {verb} failed on what podman sent ({type(e).__name__}: {e}); check the "
                           "network (podman network inspect), or report it with that output"}
    if answer is not None:
        stdout.write(json.dumps(answer) + "\n")
    stdout.flush()
    return 1 if answer is not None and "error" in answer else 0


def _answer(argv: list[str], stdin: bytes) -> dict | None:
    verb = argv[0] if argv else ""
    if verb == "info":
        from .. import __version__
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
    from .. import dhcp
    options = dict(network.get("options") or {})
    parent = options.pop("parent", "")
    if parent and network.get("network_interface") and parent != network["network_interface"]:
        raise Refused(f"-o parent={parent} and --interface-name={network['network_interface']} name two masters")
    driver = (network.get("ipam_options") or {}).get("driver") or "host-local"
    # No aardvark-dns runs for a plugin's network (netavark starts it for its own drivers alone): saying
    # otherwise would have podman add gateways, and take --dns, for nothing.
    checked = {**network, "network_interface": parent or network.get("network_interface") or "",
               "options": options, "dns_enabled": False, "ipam_options": {**(network.get("ipam_options") or {}),
                                                                          "driver": driver}}
    if network.get("network_dns_servers"):
        raise Refused("--dns: no DNS server runs for an ipvlan-ip network, so the containers would never be "
                      "given it; set it per container (podman run --dns) instead")
    netconf(checked)
    if not checked["network_interface"]:
        # The default-route interface, as the CNI path picks it, but named now: it must not change under the network.
        raise Refused("name the master: -o parent=DEVICE (or --interface-name DEVICE)")
    if not os.path.exists(f"{SYS_NET}/{checked['network_interface']}"):
        raise Refused(f"-o parent={checked['network_interface']}: the host has no such interface (ip link show)")
    for route in network.get("routes") or []:
        if route.get("route_type") not in (None, "", "unicast"):
            raise Refused(f"--route {route.get('destination')}: a {route['route_type']} route cannot be given to "
                          "a container through ipvlan-ip, only a unicast one")
    if driver not in ("host-local", "dhcp", ""):
        raise Refused(f"--ipam-driver {driver}: ipvlan-ip takes podman's own addresses (host-local, the default) "
                      "or dhcp")
    if driver == "dhcp" and network.get("subnets"):
        raise Refused("--ipam-driver dhcp takes its addresses from the LAN's DHCP server: leave --subnet out")
    if driver == "dhcp" and not os.path.exists(dhcp.DEFAULT_SOCKET):
        # netavark-dhcp-proxy, which Podman 5 hosts run, serves netavark's own drivers alone.
        raise Refused(f"--ipam-driver dhcp: the CNI dhcp daemon is not listening on {dhcp.DEFAULT_SOCKET} "
                      f"(netavark-dhcp-proxy does not serve a plugin's network); {dhcp.START}")
    if driver != "dhcp" and not network.get("subnets"):
        raise Refused("give the LAN's subnet: --subnet CIDR (and --gateway ADDRESS), or --ipam-driver dhcp")
    return checked


def netconf(network: dict, ips: dict | None = None, teardown: bool = False) -> dict:
    """The CNI config a network stands for, checked as a CNI config is:
    Refused names the podman option at fault. `ips`, a CNI result, gives
    the container's addresses as a chained plugin's prevResult. For
    `teardown`, nothing is refused: DEL must run for a network that this
    version would not create (an option an upgrade refuses), as the CNI
    path's DEL runs for a config ADD refuses, and what it cannot read it
    leaves out."""
    from .. import config, validation
    conf: dict = {"cniVersion": "1.0.0", "name": network.get("name", ""), "type": "ipvlan-ip",
                  "master": network.get("network_interface") or ""}
    for option, value in (network.get("options") or {}).items():
        if option in ROUTING:
            _typed(option, value)
        elif option in OPTIONS:
            try:
                _put(conf, OPTIONS[option], _typed(option, value))
            except Refused:
                if not teardown:
                    raise
        elif not teardown:
            raise Refused(f"unknown option -o {option}: ipvlan-ip takes "
                          f"{', '.join(f'-o {o}' for o in (*OPTIONS, *ROUTING))}")
    if (network.get("ipam_options") or {}).get("driver") == "dhcp":
        conf["ipam"] = {"type": "dhcp"}
    if ips is not None:
        conf["prevResult"] = ips
    if teardown:
        return conf
    names = {key.split(".")[0]: option for option, key in OPTIONS.items()}
    for problem in validation.problems("netconf", conf):
        key = problem.split(":")[0].removeprefix("$.").split(".")[0]
        raise Refused(f"-o {names.get(key, key)}: {problem.split(': ', 1)[-1]}" if key in names else problem)
    refused = config.refusal(conf)
    if refused:
        raise Refused(refused)
    return conf


def _put(conf: dict, key: str, value) -> None:
    """A config key, dotted where it is nested ("ipv6.slaac")."""
    *outer, last = key.split(".")
    for name in outer:
        conf = conf.setdefault(name, {})
    conf[last] = value


def _typed(option: str, value: str):
    """podman's option values are strings; the config's are typed."""
    if option in NUMBERS:
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise Refused(f"-o {option}={value}: a whole number is needed") from None
        return number
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
    if verb == "setup":
        _own_mac(network, options.get("static_mac") or "")
        dhcp = (network.get("ipam_options") or {}).get("driver") == "dhcp"
        conf = netconf(network, None if dhcp else assigned(network, options))
    else:       # podman tears down even after its own IPAM lost the container's addresses: DEL needs none
        conf = netconf(network, teardown=True)
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


def _own_mac(network: dict, mac: str) -> None:
    """A MAC podman asks for: `podman network reload` and `container restore`
    ask for the one the status block gave, which is the master's (an ipvlan
    link carries its master's); any other cannot be had."""
    if not mac:
        return
    master = network.get("network_interface") or ""
    try:
        with open(f"{SYS_NET}/{master}/address") as f:
            own = f.read().strip()
    except OSError:
        own = ""
    if mac.lower() != own.lower():
        raise Refused(f"--mac-address {mac}: an ipvlan link carries its master's MAC ({master}'s is "
                      f"{own or 'unknown: no such interface'}), so it cannot have another")


def assigned(network: dict, options: dict) -> dict:
    """The addresses podman's IPAM gave the container, as a CNI 1.0.0
    result: each in its subnet's prefix, with its gateway; a default route
    per family through it unless the network is --internal or
    -o no_default_route (metric 99 unless -o metric), and the network's
    --route ones."""
    import ipaddress
    routing = {option: _typed(option, value) for option, value in (network.get("options") or {}).items()
               if option in ROUTING}
    try:
        subnets = [(ipaddress.ip_network(s["subnet"]), s.get("gateway")) for s in network.get("subnets") or []]
    except ValueError as e:     # a network file edited by hand
        raise Refused(f"the network's subnet: {e}; fix it in the network's file, or create the network again") from e
    ips, routes = [], []
    for address in options.get("static_ips") or []:
        ip = ipaddress.ip_address(address)
        found = next(((net, gw) for net, gw in subnets if ip in net), None)
        if found is None:
            raise Refused(f"{address} is in none of the network's subnets")
        net, gateway = found
        ips.append({"address": f"{ip}/{net.prefixlen}", **({"gateway": gateway} if gateway else {})})
        if gateway and not network.get("internal") and not routing.get("no_default_route"):
            routes.append({"dst": "0.0.0.0/0" if ip.version == 4 else "::/0", "gw": gateway,
                           "priority": routing.get("metric", DEFAULT_METRIC)})
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
