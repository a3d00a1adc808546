"""`ipvlan-ip doctor`: a node, and the network configs it will serve, checked
before the first pod, so that what would fail an ADD (on one node out of
many, when a pod starts) is named first, with what to do.

Read-only but for real tries: the kernel is asked to make an ipvlan link
(and a VLAN link, where a config asks for "vlan"), in a throwaway netns on
a throwaway veth master, removed afterwards, since no file tells whether a
driver is built in, a module, or missing.

The first part builds commands and findings (pure); the second runs the
checks through the runner.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections import namedtuple

from .. import advice, config, dhcp, validation
from ..capabilities import host_access, proxy_neighbors, vlan
from ..commands import Command, batch_line
from ..environment import find_plugin
from ..errors import CniError
from ..node import port

PYTHON = ((3, 9), (3, 13))      # the supported range (docs/nodes.md)
IPROUTE2 = (5, 9)
DEFAULT_BIN_DIRS = ("/opt/cni/bin",)
# podman 4's settings, whose `cni_plugin_dirs` name where it looks for CNI plugins (docs/install.md).
CONTAINERS_CONF = ("/etc/containers/containers.conf", "/usr/share/containers/containers.conf")


def runtime_bin_dirs() -> list[str]:
    """Where the node's runtimes look for CNI plugins: containerd's and CRI-O's default, then the dirs
    a containers.conf gives podman (as docs/install.md sets them: the reference plugins in /usr/lib/cni)."""
    import re
    found = list(DEFAULT_BIN_DIRS)
    for path in CONTAINERS_CONF:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        listed = re.search(r"^\s*cni_plugin_dirs\s*=\s*\[(.*?)\]", text, re.M | re.S)
        if listed:
            found += [d for d in re.findall(r'"([^"]+)"', listed.group(1)) if d not in found]
            break       # the first file that sets it is podman's
    return found


class Finding(namedtuple("Finding", "status check text fix", defaults=("",))):
    """One line of the report: `status` ok, warning or failure; `fix` what
    to do, as a command where there is one."""
    __slots__ = ()


def ok(check: str, text: str) -> Finding:
    return Finding("ok", check, text)


def warning(check: str, text: str, fix: str) -> Finding:
    return Finding("warning", check, text, fix)


def failure(check: str, text: str, fix: str) -> Finding:
    return Finding("failure", check, text, fix)


# ---------------------------------------------------------------- the commands and the verdicts

def probe(kind: str) -> Command:
    """Make a link of `kind` (ipvlan, or vlan: 802.1Q) on a veth, in a
    throwaway netns that goes with the process: nothing to remove, and
    nothing written to /run/netns (the installer runs this on a read-only
    node root)."""
    made = ("type", "ipvlan", "mode", "l2") if kind == "ipvlan" else ("type", "vlan", "id", "20")
    return Command(f"make a {kind} link on a veth, in a netns of its own", ("unshare", "--net", "ip", "-batch", "-"),
                   (batch_line("link", "add", "dr0", "type", "veth", "peer", "name", "dr1"),
                    batch_line("link", "add", "link", "dr0", "name", "dr2", *made)))


def python_finding(version: tuple[int, ...]) -> Finding:
    shown = ".".join(map(str, version[:3]))
    if version[:2] < PYTHON[0]:
        return failure("python", f"Python {shown} is older than 3.9, which ipvlan-ip needs",
                       "install python3 3.9 or later (Debian 11 and later, Ubuntu 22.04 and later, RHEL 9 have it)")
    if version[:2] > PYTHON[1]:
        return warning("python", f"Python {shown} is newer than 3.13, the newest ipvlan-ip is tested with",
                       "run the test suite on this node's Python, or use python3 3.9 to 3.13")
    return ok("python", f"Python {shown}")


def iproute2_finding(said: str) -> Finding:
    """From `ip -V`: "ip utility, iproute2-6.1.0, libbpf 1.1.2"."""
    found = re.search(r"iproute2-(\d+)\.(\d+)", said)
    if not found:
        return failure("iproute2", f"`ip -V` says {said.strip()!r}: an iproute2 older than 5.9, or not iproute2",
                       "install iproute2 5.9 or later (apt-get install iproute2)")
    version = (int(found.group(1)), int(found.group(2)))
    if version < IPROUTE2:
        return failure("iproute2", f"iproute2 {version[0]}.{version[1]} is older than 5.9",
                       "install iproute2 5.9 or later (Debian 11 has 5.9)")
    return ok("iproute2", f"iproute2 {version[0]}.{version[1]}")


def ours(data: dict, type_name: str = "ipvlan-ip") -> list[tuple[str, dict]]:
    """(JSON path, config) of each of our plugin's configs in a network
    config or conflist, with the name and cniVersion a runtime adds to each
    plugin of a conflist."""
    if not isinstance(data.get("plugins"), list):
        return [("$", data)]
    found = []
    for n, conf in enumerate(data["plugins"]):
        if isinstance(conf, dict) and conf.get("type") == type_name:
            merged = {"name": data.get("name"), "cniVersion": data.get("cniVersion"), **conf}
            found.append((f"$.plugins[{n}]", {k: v for k, v in merged.items() if v is not None}))
    return found


def master_findings(conf: dict, master: dict | None, name: str, links: list[dict]) -> list[Finding]:
    """The master as `ip -j -d address show` listed it (None: not there) can carry our links: one line
    for the master, and one each for the `mtu` and `hostAccess` the config asks of it."""
    check = f"master {name}"
    if master is None:
        return [failure(check, f"there is no interface {name} on this node",
                        "name an interface this node has in \"master\" (ip link show)")]
    problems = []
    kind = master.get("linkinfo", {}).get("info_kind")
    if kind == "ipvlan":
        problems.append(failure(check, f"{name} is itself an ipvlan link", "name its own master instead"))
    if "UP" not in master.get("flags", []):
        problems.append(failure(check, f"{name} is down", f"ip link set dev {name} up"))
    macvlans = [link["ifname"] for link in links
                if link.get("link") == name and link.get("linkinfo", {}).get("info_kind") == "macvlan"]
    if macvlans:
        problems.append(failure(check, f"{name} carries macvlan links ({', '.join(macvlans)}), and a master "
                                       "serves macvlan or ipvlan, not both",
                                f"use another master, or remove them (ip link del dev {macvlans[0]})"))
    found = problems or [ok(check, f"{name} is up, MTU {master.get('mtu')}"
                                   + (f", kind {kind}" if kind else "") + ", no macvlan links")]
    mtu = conf.get("mtu")
    if isinstance(mtu, int) and mtu:
        found.append(ok(f"mtu {mtu}", f"at most {name}'s MTU {master.get('mtu')}") if mtu <= master.get("mtu", 0)
                     else failure(f"mtu {mtu}", f"above {name}'s MTU {master.get('mtu')}",
                                  f"lower \"mtu\" to at most {master.get('mtu')}, or leave it out"))
    if conf.get("hostAccess"):
        addresses = host_access.host_addresses(master)
        found.append(ok("hostAccess", f"the host has {', '.join(addresses)} on {name}, for its containers "
                                      "to answer") if addresses
                     else failure("hostAccess", f"the host has no address on {name}, so its containers cannot "
                                                "answer it", f"ip address add ADDRESS/PREFIX dev {name}"))
    return found


# The reference plugins a config may name, which Debian's containernetworking-plugins ships (in /usr/lib/cni).
REFERENCE_PLUGINS = frozenset({"bandwidth", "bridge", "dhcp", "dummy", "firewall", "host-device", "host-local",
                               "ipvlan", "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tap", "tuning",
                               "vlan", "vrf"})


def plugin_finding(plugin_type: str, found: str | None, bin_dirs: list[str]) -> Finding:
    check = f"plugin {plugin_type}"
    if found:
        return ok(check, found)
    if plugin_type == "ipvlan-ip":
        how = f"ipvlan-ip install --cni-bin-dir {bin_dirs[0]} (docs/install.md)"
    elif plugin_type in REFERENCE_PLUGINS:
        how = "install it there (Debian: apt-get install containernetworking-plugins puts it in /usr/lib/cni)"
    else:
        how = "install it there, as its own project says"
    return failure(check, f"{plugin_type} is not an executable file in {':'.join(bin_dirs)}",
                   f"{how}, or name the right dir with --cni-bin-dir")


def as_text(report: dict) -> str:
    lines = []
    for heading, findings in [("node", report["node"]),
                              *((f"config {c['file']}", c["findings"]) for c in report["configs"])]:
        lines.append(f"{heading}:")
        for f in findings:
            lines.append(f"  {f['status']:<8}{f['check']}: {f['text']}")
            if f.get("fix"):
                lines.append(f"  {'':<8}  what to do: {f['fix']}")
    counts = report["summary"]
    lines.append(f"{counts['failures']} failures, {counts['warnings']} warnings")
    return "\n".join(lines) + "\n"


def report(node: list[Finding], configs: list[tuple[str, list[Finding]]]) -> dict:
    """The document schemas/doctor.schema.json describes."""
    every = [*node, *(f for _, findings in configs for f in findings)]
    return {"node": [_entry(f) for f in node],
            "configs": [{"file": path, "findings": [_entry(f) for f in findings]} for path, findings in configs],
            "summary": {"failures": sum(f.status == "failure" for f in every),
                        "warnings": sum(f.status == "warning" for f in every)}}


def _entry(f: Finding) -> dict:
    return {"status": f.status, "check": f.check, "text": f.text, **({"fix": f.fix} if f.fix else {})}


# ---------------------------------------------------------------- the checks

def check_node(run) -> list[Finding]:
    found = [python_finding(sys.version_info[:3])]
    try:
        found.append(iproute2_finding(run.run(Command("the iproute2 version", ("ip", "-V")))))
        run.run_json(Command("ip -j must print JSON", ("ip", "-j", "link", "show", "dev", "lo")))
        found.append(ok("ip -j", "prints JSON"))
    except (CniError, ValueError) as e:
        found.append(failure("ip", f"cannot run `ip -j`: {getattr(e, 'details', e)}",
                             "install iproute2 5.9 or later (apt-get install iproute2)"))
        return found
    found.append(try_kind(run, "ipvlan"))
    found.append(ok("/run", "writable") if run.writable("/run") else
                 failure("/run", "not writable: the plugin keeps its locks and records in /run/ipvlan-ip",
                         "run the plugin as root, with /run writable, as runtimes do"))
    return found + netavark_finding(os.path.exists)


# netavark, Podman's network backend (Podman 5's only one), where Debian and Fedora put it; and the
# plugin dirs it searches when containers.conf names none (netavark_plugin_dirs).
NETAVARK = ("/usr/lib/podman/netavark", "/usr/libexec/podman/netavark")
NETAVARK_DIRS = ("/usr/local/libexec/netavark", "/usr/libexec/netavark", "/usr/local/lib/netavark",
                 "/usr/lib/netavark")


def netavark_finding(exists) -> list[Finding]:
    """On a node with netavark, whether ipvlan-ip is where it looks for plugins; nothing elsewhere."""
    if not any(exists(path) for path in NETAVARK):
        return []
    where = next((d for d in NETAVARK_DIRS if exists(f"{d}/ipvlan-ip")), None)
    if where:
        return [ok("netavark", f"podman finds ipvlan-ip in {where}: podman network create -d ipvlan-ip")]
    return [warning("netavark", "this node has netavark (Podman 5's only network backend), and ipvlan-ip is "
                    f"in none of the dirs it searches by default ({', '.join(NETAVARK_DIRS)})",
                    "ipvlan-ip install --netavark (docs/podman.md)")]


def try_kind(run, kind: str) -> Finding:
    """Whether the kernel makes a link of `kind` (ipvlan, vlan), tried for real."""
    article = "an" if kind == "ipvlan" else "a"
    try:
        _, failures = run.run_batch(probe(kind))
    except CniError as e:
        return failure(kind, f"could not try to make {article} {kind} link: {e.details}",
                       advice.advise(e.details) or "run doctor as root, with unshare (util-linux) installed")
    if failures:
        said = f"`{failures[0].line}`: {failures[0].message}"
        return failure(kind, f"this kernel cannot make {article} {kind} link: {said}",
                       advice.advise(said) or "see the message above")
    return ok(kind, f"this kernel makes {kind} links (tried in a throwaway netns)")


def check_config(run, path: str, bin_dirs: list[str], links: list[dict] | None = None) -> list[Finding]:
    """Each of our plugin's configs in the file at `path`; `links` is the
    host's `ip -j -d address show`, read once for every file."""
    data = _load(path)
    if isinstance(data, str):
        return [failure("file", data, "give a network config or conflist in JSON")]
    found = []
    plugins = data["plugins"] if isinstance(data.get("plugins"), list) else [data]
    for plugin in plugins:
        if isinstance(plugin, dict) and isinstance(plugin.get("type"), str):
            found.append(plugin_finding(plugin["type"], _find(plugin["type"], bin_dirs), bin_dirs))
    for where, conf in ours(data):
        found += _check_ours(run, where, conf, bin_dirs, links if links is not None else _links(run))
    if not found:
        found.append(warning("plugins", "no ipvlan-ip plugin in this conflist", "add one of type \"ipvlan-ip\""))
    return found


def _check_ours(run, where: str, conf: dict, bin_dirs: list[str], links: list[dict]) -> list[Finding]:
    problems = validation.problems("netconf", conf)
    if problems:
        return [failure("schema", p.replace("$", where, 1), "ipvlan-ip validate FILE lists every problem; "
                                                            "docs/config.md")
                for p in problems]
    found = [ok("schema", f"{where} is a valid ipvlan-ip config")]
    refused = config.refusal(conf)
    if refused:
        found.append(failure("combination", refused, "change the config as the message says"))
    master = conf.get("master", "")
    if master == "ipam":
        found.append(ok("master", "the IPAM result names it; checked at each ADD"))
    else:
        name = master or _default_route_interface(run)
        if not name:
            found.append(failure("master", "no master is named and this node has no default route",
                                 "name the master in \"master\""))
        else:
            found += master_findings(conf, next((link for link in links if link.get("ifname") == name), None),
                                     name, links)
            if isinstance(conf.get("vlan"), int):
                found.append(vlan_finding(conf, name, links))
            if conf.get("proxyNeighbors") and not refused:
                found.append(proxy_finding(run, vlan.link_name(name, conf["vlan"]) if conf.get("vlan") else name))
            if conf.get("serviceCIDRs") and not refused:
                found.append(services_finding(run, name, conf["serviceCIDRs"]))
    ipam = conf.get("ipam") or {}
    if ipam.get("type"):
        found.append(plugin_finding(ipam["type"], _find(ipam["type"], bin_dirs), bin_dirs))
    if ipam.get("type") == "dhcp":
        found.append(_dhcp_finding(run, dhcp.socket_path(ipam)))
    return found


def proxy_finding(run, master: str) -> Finding:
    """The sysctls without which the host answers for no container on `master` (proxy_neighbors.py)."""
    missing = proxy_neighbors.missing_sysctls(run, master, {4, 6})
    if not missing:
        return ok("proxyNeighbors", f"{master} forwards IPv4 and IPv6 and proxies NDP")
    return failure("proxyNeighbors", f"{master} does not forward as the host must to answer for its containers "
                   f"({', '.join(missing)} unset; the IPv6 ones matter for IPv6 addresses only)",
                   f"sysctl -w {' '.join(missing)}, and the same in /etc/sysctl.d/ (docs/modes.md says what "
                   "forwarding changes)")


def services_finding(run, master: str, cidrs: list) -> Finding:
    """What the node must do for serviceCIDRs (service_cidrs.py): forward, and not drop the pods' requests on
    the master by a strict reverse-path filter (they come in there, while the way back to the pod goes
    through the host's link)."""
    keys = ["net.ipv4.ip_forward"] + (["net.ipv6.conf.all.forwarding"] if any(":" in c for c in cidrs) else [])
    unset = [f"{key}=1" for key in keys if run.host_sysctl(key.replace(".", "/")) != "1"]
    strict = max(int(run.host_sysctl(f"net/ipv4/conf/{scope}/rp_filter") or 0) for scope in ("all", master)) == 1
    on_master = f"net/ipv4/conf/{master}/rp_filter" if "." in master else f"net.ipv4.conf.{master}.rp_filter"
    fixes = unset + ([f"net.ipv4.conf.all.rp_filter=2 {on_master}=2"] if strict else [])
    if not fixes:
        return ok("serviceCIDRs", "the node forwards, and its reverse-path filter on the master lets the pods' "
                                  "requests in; a backend on another node also needs the pods' traffic masqueraded "
                                  "(kube-proxy's clusterCIDR or masqueradeAll: docs/host-access.md)")
    said = ((f"the node does not forward ({', '.join(unset)} unset)" if unset else "") +
            ("; " if unset and strict else "") +
            (f"a strict reverse-path filter on {master} drops the pods' requests to the node" if strict else ""))
    return failure("serviceCIDRs", said, f"sysctl -w {' '.join(fixes)}, and the same in /etc/sysctl.d/")


def _dhcp_finding(run, socket: str) -> Finding:
    if not run.listening(socket):
        return failure("dhcp", f"no dhcp daemon listens on {socket}", dhcp.START)
    daemons = [argv for argv in run.command_lines() if any(a.endswith("dhcp") for a in argv[:1]) and
               "daemon" in argv]
    if daemons and not any("-broadcast" in argv for argv in daemons):
        return warning("dhcp", f"the dhcp daemon ({' '.join(daemons[0])}) runs without -broadcast: in an ipvlan "
                               "link, which has no address yet, the server's unicast replies never arrive",
                       "restart it with -broadcast (docs/dhcp.md)")
    return ok("dhcp", f"a daemon listens on {socket}; it must run with -broadcast")


def _find(plugin_type: str, bin_dirs: list[str]) -> str | None:
    try:
        return find_plugin(plugin_type, tuple(bin_dirs))
    except CniError:
        return None


def _asks_for_vlan(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and any(conf.get("vlan") for _, conf in ours(data))


def vlan_finding(conf: dict, master: str, links: list[dict]) -> Finding:
    """The VLAN link a config with "vlan" would put its links on, as the host's links show it."""
    name = vlan.link_name(master, conf["vlan"])
    shown = next((link for link in links if link.get("ifname") == name), None)
    if shown is None:
        return ok("vlan", f"{name} (VLAN {conf['vlan']} on {master}) is made at the first ADD")
    problem = vlan.mismatch(shown, master, conf["vlan"])
    if problem:
        return failure("vlan", f"{name} {problem}, so ADD refuses it",
                       f"rename or remove it (ip link del dev {name}), or use another vlan or master")
    if (conf.get("mtu") or 0) > shown.get("mtu", 0):
        return failure("vlan", f"mtu {conf['mtu']} is above {name}'s MTU {shown.get('mtu')}",
                       f"lower \"mtu\" to at most {shown.get('mtu')}, or leave it out")
    if shown.get("ifalias") == vlan.MADE:
        return ok("vlan", f"{name} is VLAN {conf['vlan']} on {master}, made by ipvlan-ip at an earlier ADD: used, "
                  "and removed once nothing stands on it")
    return ok("vlan", f"{name} is VLAN {conf['vlan']} on {master}, made by the node's owner: used as it is")


def _links(run) -> list[dict]:
    return run.run_json(Command("every link of the host, with its addresses", ("ip", "-j", "-d", "address", "show")))[0]


def _default_route_interface(run) -> str:
    for version in ("-4", "-6"):
        routes = run.run_json(Command("the default route", ("ip", "-j", version, "route", "show", "default")))[0]
        if routes and routes[0].get("dev"):
            return routes[0]["dev"]
    return ""


def examine(run, paths: list[str], bin_dirs: list[str]) -> dict:
    node = check_node(run)
    if any(_asks_for_vlan(path) for path in paths):
        node.append(try_kind(run, "vlan"))
    try:
        links = _links(run) if paths else []
    except CniError as e:     # no usable ip: the node's findings say so
        unread = [failure("links", f"cannot list this node's links: {e.details}", "see the node's findings")]
        return report(node, [(path, unread) for path in paths])
    checked = {path: check_config(run, path, bin_dirs, links) for path in paths}
    for path, finding in port_findings(run, paths, links):
        checked[path].append(finding)
    return report(node, list(checked.items()))


def port_findings(run, paths: list[str], links: list[dict]):
    """(path, finding) for each config whose mode and flag differ from
    another config's on the same master, or from what the master carries
    now (port.py: the kernel keeps one of each per master, so that ADD is
    refused)."""
    wanted: dict[str, list[tuple[str, str, tuple[str, str]]]] = {}
    for path in paths:
        for where, conf in _readable(path):
            device = _port_device(conf)
            if device:
                wanted.setdefault(device, []).append((path, where, (conf.get("mode") or "l2",
                                                                    conf.get("flag") or "bridge")))
    present = {link.get("ifname") for link in links}
    fix = "the kernel keeps one mode and one flag per master"
    for device, asks in wanted.items():
        carried = next(((link.mode, link.flag) for _, link in port.stacked(run, device) if link.kind == "ipvlan"),
                       None) if device in present else None
        for path, where, (mode, flag) in asks:
            said = f"{where} asks for mode {mode}, flag {flag}"
            others = sorted({f"{p} {w}" for p, w, settings in asks if settings != (mode, flag)})
            if carried and carried != (mode, flag):
                yield path, failure(f"port {device}", f"{said}; {device} carries ipvlan links in mode {carried[0]}, "
                                    f"flag {carried[1]} now, so its ADD is refused",
                                    f"{fix}: ask for what it carries, or give this network a master of its own "
                                    "(\"vlan\": N)")
            elif others:
                yield path, failure(f"port {device}", f"{said}, and {', '.join(others)} differ on the same master",
                                    f"{fix}, so the network that ADDs second is refused: give them the same, or "
                                    "masters of their own (\"vlan\": N)")


def _port_device(conf: dict) -> str:
    """The device a valid config's links go on, where the config names it on the host."""
    master = conf.get("master") or ""
    if not master or master == "ipam" or conf.get("linkInContainer") or validation.problems("netconf", conf):
        return ""
    return vlan.link_name(master, conf["vlan"]) if conf.get("vlan") else master


def _readable(path: str) -> list[tuple[str, dict]]:
    data = _load(path)
    return [] if isinstance(data, str) else ours(data)


def _load(path: str) -> dict | str:
    """The JSON object in the file at `path`, or why there is none."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError) as e:
        return f"cannot read {path}: {e}"
    return data if isinstance(data, dict) else f"{path} holds no JSON object"
