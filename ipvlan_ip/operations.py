"""The CNI operations, composed from config, builder, runner and IPAM.

Each function reads like the steps it takes; the `ip` details are in
commands.py and every execution goes through the runner `run`.
"""

import ipaddress
import os

from . import commands, ipam
from .commands import Addressing, LinkSpec, Netns
from .config import NetConf
from .environment import CniEnv
from .errors import (CniError, CHECK_FAILURE, INVALID_CONFIG, INVALID_ENVIRONMENT, LINK_FAILURE,
                     MASTER_FAILURE, NOT_AVAILABLE)
from .runner import CommandFailed

def resolve_netns(path: str) -> Netns:
    if not os.path.exists(path):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} does not exist")
    return commands.netns_at(path)


# ---------------------------------------------------------------- ADD

def add(conf: NetConf, env: CniEnv, run) -> dict:
    target = resolve_netns(env.netns)
    master_ns = target if conf.link_in_container else None
    master = None if conf.master_from_ipam else lookup_master(run, conf, master_name(conf, run, master_ns), master_ns)

    undo = []
    try:
        addressing_result = _addresses(conf, env, run, undo)
        if master is None:
            master = lookup_master(run, conf, _master_from_ipam(addressing_result), master_ns)
        spec = LinkSpec(master=master["ifname"], tmp_name=commands.temporary_name(env.container_id, env.ifname), ifname=env.ifname,
                        mode=conf.mode, flag=conf.flag, mtu=conf.mtu)
        addressing = Addressing(tuple(addressing_result["ips"]), tuple(addressing_result["routes"]))
        mac = _create_and_configure(run, conf, target, spec, addressing, undo)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except CniError as cleanup_error:
                run.echo(f"# rollback step failed: {cleanup_error.details}")
        raise

    return {
        "interfaces": [{"name": env.ifname, "mac": mac, "sandbox": env.netns}],
        "ips": [{**ipc, "interface": 0} for ipc in addressing.ips],
        "routes": list(addressing.routes),
        **({"dns": conf.dns} if conf.dns else {}),
    }


def master_name(conf: NetConf, run, netns: Netns | None) -> str:
    """The master, when the config does not say "ipam": named, else the single
    interface of a chained prevResult, else the default-route interface."""
    if conf.master:
        return conf.master
    if conf.prev_result is not None:
        interfaces = conf.prev_result["interfaces"]
        if len(interfaces) == 1 and interfaces[0].get("name"):
            return interfaces[0]["name"]
        raise CniError(INVALID_CONFIG, "chained master failure: prevResult lacks a single named interface")
    for version in (4, 6):
        routes = run.run_json(commands.show_default_routes(netns, version))[0]
        if routes and routes[0].get("dev"):
            return routes[0]["dev"]
    raise CniError(MASTER_FAILURE, "no master given and no default route interface found")


def lookup_master(run, conf: NetConf, name: str, netns: Netns | None) -> dict:
    where = f" in {netns.path}" if netns else ""
    try:
        link = run.run_json(commands.show_master(netns, name))[0][0]
    except CommandFailed as e:
        raise CniError(MASTER_FAILURE, f"failed to lookup master {name!r}{where}: {e.stderr.strip()}")
    if link.get("linkinfo", {}).get("info_kind") == "ipvlan":
        raise CniError(MASTER_FAILURE, f"master {name!r} is itself an ipvlan link; "
                       "enslave its own master instead")
    if "UP" not in link.get("flags", []):
        raise CniError(MASTER_FAILURE, f"master {name!r}{where} is down; bring it up first "
                       f"(ip link set dev {name} up)")
    if conf.mtu and conf.mtu > link.get("mtu", 0):
        raise CniError(INVALID_CONFIG, f"mtu {conf.mtu} is larger than the MTU {link.get('mtu')} "
                       f"of master {name!r}")
    return link


def _addresses(conf: NetConf, env: CniEnv, run, undo: list) -> dict:
    """The IPs and routes to configure: from IPAM, or from a chained prevResult."""
    if conf.ipam_type:
        # Registered first: the spec asks for DEL after a failed IPAM ADD too,
        # which may have reserved an address before failing (or being killed).
        undo.append(lambda: ipam.execute(run, conf, env, "DEL"))
        found = ipam.add(run, conf, env)
        if not found["ips"]:
            raise CniError(INVALID_CONFIG, f"IPAM plugin {conf.ipam_type!r} returned no IP configuration")
        return found
    if conf.prev_result and conf.prev_result["ips"]:
        return conf.prev_result
    raise CniError(INVALID_CONFIG, "no ipam section, and no prevResult with IPs to configure")


def _master_from_ipam(found: dict) -> str:
    names = [i.get("name") for i in found.get("interfaces", [])]
    if len(names) != 1 or not names[0]:
        raise CniError(MASTER_FAILURE, "\"master\": \"ipam\" needs the IPAM result to name exactly one "
                       f"interface, and it named {len(names)}")
    return names[0]


def _create_and_configure(run, conf, target: Netns, spec: LinkSpec, addressing: Addressing, undo) -> str:
    """Create the link, configure it; the MAC read back from the kernel."""
    create, *sysctls, configure = commands.link_steps(spec, target, conf.link_in_container, addressing)
    try:
        run.run(create)
    except CommandFailed as e:
        raise _explain_create_failure(e, spec)
    current = [spec.tmp_name]
    undo.append(lambda: run.run(commands.delete_link(target, current[0])))

    for write in sysctls:
        run.write_sysctl(write)

    docs, failures = run.run_batch(configure)
    if configure.batch[0] not in (f.line for f in failures):
        current[0] = spec.ifname
    serious = [f for f in failures if not (f.line.startswith("route add") and "File exists" in f.message)]
    if serious:
        first = serious[0]
        raise CniError(LINK_FAILURE, f"failed to `{first.line}` in {target.path}: {first.message}")
    return docs[-1][0]["address"]


def _explain_create_failure(e: CommandFailed, spec: LinkSpec) -> CniError:
    if "Device or resource busy" in e.stderr:
        return CniError(MASTER_FAILURE, f"failed to create ipvlan on {spec.master!r}: the master is busy, "
                        "most likely because it already carries macvlan links (a master cannot serve "
                        "both macvlan and ipvlan)")
    return e.wrap("failed to create ipvlan")


# ---------------------------------------------------------------- DEL

# What `ip` says when the link or the netns is already gone: DEL must succeed then.
GONE = ("Cannot find device", "Cannot open network namespace", "reassociate to namespace",
        "setting the network namespace")


def delete(conf: NetConf, env: CniEnv, run) -> None:
    if conf.ipam_type:
        ipam.execute(run, conf, env, "DEL")
    if not env.netns or not os.path.exists(env.netns):
        return
    cmd = commands.remove_attachment(resolve_netns(env.netns), env.ifname,
                                     commands.temporary_name(env.container_id, env.ifname))
    try:
        _, failures = run.run_batch(cmd)
    except CommandFailed as e:
        if any(text in e.stderr for text in GONE):
            return
        raise
    for failure in failures:
        if "Cannot find device" not in failure.message:
            raise CniError(LINK_FAILURE, f"failed to `{failure.line}` in {env.netns}: {failure.message}")
        run.echo(f"# already gone, which is fine: {failure.line}")


# ---------------------------------------------------------------- CHECK

def check(conf: NetConf, env: CniEnv, run) -> None:
    prev = conf.prev_result
    if prev is None:
        raise CniError(INVALID_CONFIG, "CHECK needs the prevResult of the ADD, and there is none")
    if conf.ipam_type:
        ipam.execute(run, conf, env, "CHECK")
    target = resolve_netns(env.netns)
    index = next((n for n, i in enumerate(prev["interfaces"])
                  if i.get("name") == env.ifname and i.get("sandbox") == env.netns), None)
    if index is None:
        raise CniError(CHECK_FAILURE, f"prevResult has no interface {env.ifname!r} with sandbox {env.netns}")
    if conf.master and not conf.master_from_ipam:
        lookup_master(run, conf, conf.master, target if conf.link_in_container else None)
    try:
        (link,), routes = run.run_json(commands.inspect_container(target, env.ifname))
    except CommandFailed as e:
        raise CniError(CHECK_FAILURE, f"interface {env.ifname!r} not found in {env.netns}: {e.stderr.strip()}")
    for problem in drift(conf, prev, index, link, routes):
        raise CniError(CHECK_FAILURE, problem)


def drift(conf: NetConf, prev: dict, index: int, link: dict, routes: list):
    """Each way the kernel's state differs from prevResult and the config."""
    name = link["ifname"]
    info = link.get("linkinfo", {})
    if info.get("info_kind") != "ipvlan":
        yield f"interface {name!r} is not an ipvlan link (it is {info.get('info_kind') or 'a plain device'})"
        return
    data = info.get("info_data", {})
    if data.get("mode") != conf.mode:
        yield f"ipvlan mode of {name!r} is {data.get('mode')}, expected {conf.mode}"
    flag = conf.flag or "bridge"
    if any(k in data for k in ("bridge", "private", "vepa")) and not data.get(flag):
        yield f"ipvlan flag of {name!r} is not {flag}"
    mac = prev["interfaces"][index].get("mac")
    if mac and mac.lower() != link.get("address", "").lower():
        yield f"MAC of {name!r} is {link.get('address')}, prevResult says {mac}"
    present = {ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}") for a in link.get("addr_info", [])}
    for ipc in prev["ips"]:
        if ipc.get("interface", index) == index and ipaddress.ip_interface(ipc["address"]) not in present:
            yield f"address {ipc['address']} is missing from {name!r}"
    for route in prev["routes"]:
        if not any(_same_route(route, r) for r in routes):
            yield f"route to {route['dst']}{' via ' + route['gw'] if route.get('gw') else ''} is missing"


def _same_route(want: dict, have: dict) -> bool:
    dst = ipaddress.ip_network(want["dst"], strict=False)
    if have.get("dst") == "default":
        have_gw = have.get("gateway")
        if dst.prefixlen != 0 or (have_gw and ipaddress.ip_address(have_gw).version != dst.version):
            return False
    else:
        try:
            if ipaddress.ip_network(have.get("dst", ""), strict=False) != dst:
                return False
        except ValueError:
            return False
    return not want.get("gw") or ipaddress.ip_address(want["gw"]) == ipaddress.ip_address(have.get("gateway", "0::0"))


# ---------------------------------------------------------------- STATUS, GC

def status(conf: NetConf, env: CniEnv, run) -> None:
    if conf.ipam_type:
        ipam.execute(run, conf, env, "STATUS")
    if conf.master and not conf.master_from_ipam and not conf.link_in_container:
        try:
            run.run_json(commands.show_master(None, conf.master))
        except CommandFailed as e:
            raise CniError(NOT_AVAILABLE, f"master {conf.master!r} does not exist: {e.stderr.strip()}")


def gc(conf: NetConf, env: CniEnv, run) -> None:
    """Links die with their netns, so the only stale resources are IPAM's."""
    if conf.ipam_type:
        ipam.execute(run, conf, env, "GC")
