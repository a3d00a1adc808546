"""`ipvlan-ip plan`: the commands a CNI call would run, as a shell script,
built by the same builder functions the plugin executes, and run by nobody.

No IPAM plugin is run: addresses come from an IPAM result given on the
command line, or are placeholders from the documentation ranges, said so.
"""
from __future__ import annotations

import json

from . import commands, config, dhcp, host_access, operations, results, vlan
from .commands import Addressing, LinkSpec, VlanDelete
from .echo import announced

PLACEHOLDER = {"interfaces": [],
               "ips": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1"}],
               "routes": [{"dst": "0.0.0.0/0"}]}


def plan(conf_text: bytes, netns_path: str, ifname: str, command: str = "ADD",
         ipam_result: dict | None = None, container_id: str = "example") -> str:
    conf = config.load(config.decode(conf_text), conf_text, command)
    target = commands.netns_at(netns_path)
    out = ["#!/bin/sh",
           f"# ipvlan-ip plan: {command} of network {conf.name!r} for CNI_CONTAINERID={container_id} "
           f"CNI_NETNS={netns_path} CNI_IFNAME={ifname}",
           "# Nothing here has been run. The IPAM plugin is not run either: its steps are comments."]

    def step(s) -> None:
        out.append(announced(s))

    def ipam(cni_command: str, purpose: str) -> None:
        if conf.ipam_type:
            out.append(f"# {purpose}: CNI_COMMAND={cni_command} $CNI_PATH/{conf.ipam_type} < config (same environment)")

    master_ns = target if conf.link_in_container else None
    if command == "DEL":
        # The addresses last (dhcp's first: its daemon releases through the link), as operations.delete.
        if conf.dhcp:
            ipam("DEL", "release the lease")
        out.append(f"# list the interfaces in {netns_path} from inside it (no command), then delete {ifname}, "
                   f"and {commands.temporary_name(container_id, ifname)} too if an ADD died before renaming it")
        step(commands.remove_attachment(target, [ifname]))
        if conf.host_access:
            out.append(f"# hostAccess: remove the host's routes that "
                       f"{host_access.record_path(conf.name, container_id, ifname)} records, and that file")
        if conf.vlan:
            record = vlan.record_path(conf.name, container_id, ifname)
            out.append(f"# vlan: remove {record}; then, under the VLAN link's lock, when the plugin made the "
                       f"link and no record names it any more, remove it (no command: an ioctl), as:")
            step(VlanDelete("remove the VLAN link", _vlan_link(conf)))
        if not conf.dhcp:
            ipam("DEL", "release the addresses")
    elif command == "CHECK":
        ipam("CHECK", "ask IPAM whether the reservation still holds")
        if conf.master and not conf.master_from_ipam:
            step(commands.show_master(master_ns, conf.master))
        step(commands.inspect_container(target, ifname))
        if conf.vlan:
            out.append(f"# vlan: the link {vlan.record_path(conf.name, container_id, ifname)} records, read")
            step(vlan.read_link(_vlan_link(conf)))
    else:
        out.append(f"# check from inside {netns_path} that {ifname} does not exist yet (no command: "
                   "the plugin asks the kernel from a thread in the netns)")
        found = _addresses(conf, ipam_result, out)
        spec = operations.link_spec(conf, container_id, ifname, "")
        if conf.master_from_ipam:
            ipam("ADD", "allocate addresses")
            names = [i.get("name") for i in found.get("interfaces", [])]
            master = names[0] if len(names) == 1 and names[0] else "<INTERFACE-NAMED-BY-IPAM>"
            _create(conf, spec._replace(master=master), target, step, out)
        else:
            master = _master(conf, master_ns, step)
            _create(conf, spec._replace(master=master), target, step, out)
            if conf.dhcp:
                for ready in commands.ready_for_dhcp(spec, target):
                    step(ready)
                ipam("ADD", f"ask the dhcp daemon for a lease, under the lock {dhcp.lock_path(master)}")
            else:
                ipam("ADD", "allocate addresses")
        addressing = Addressing(tuple(found["ips"]), tuple(found["routes"]))
        toward_host: tuple[str, ...] = ()
        if conf.host_access:
            ips = [i["address"] for i in addressing.ips]
            host_ips = [HOST_ADDRESS]
            mac = "<MASTER-MAC>" if conf.mode == "l2" else ""
            toward_host = host_access.toward_host(ifname, ips, host_ips, mac)[1]
        if conf.dhcp:      # already named and up
            step(commands.configure_link(target, spec, addressing, toward_host, is_up=True))
        else:
            for s in commands.after_addressing(spec, target, addressing, toward_host):
                step(s)
        if conf.host_access:    # once the container holds its addresses (operations.add says why)
            step(host_access.routes_on_host(host_access.link_name(master), ips, host_ips, mac))
    return "\n".join(out) + "\n"


# What plan shows as the host's address on the master (the create batch reads the real ones).
HOST_ADDRESS = "198.51.100.2/24"


def _create(conf, spec: LinkSpec, target, step, out: list[str]) -> None:
    if conf.vlan:
        link = vlan.link_name(spec.master, conf.vlan)
        out.append(f"# vlan: under the lock {vlan.lock_path(link)}, record this attachment on {link} and, "
                   f"unless {link} exists (read from /proc/net/vlan/config, no command), make it; a link of that "
                   f"name that is not VLAN {conf.vlan} on {spec.master} is refused")
        step(commands.create_on_master(spec._replace(master=link), target, False,
                                       vlan=vlan.link_lines(spec.master, conf.vlan, make=True)))
        return
    host_link: tuple[str, ...] = ()
    if conf.host_access:
        link = host_access.link_name(spec.master)
        out.append(f"# hostAccess: under the lock {host_access.lock_path(link)}, make the host's link {link} "
                   "unless it exists (listed from a thread, no command); the master's addresses are read "
                   f"(shown below as {HOST_ADDRESS})")
        host_link = host_access.link_lines(spec.master, conf.mode, conf.flag, exists=False)
    step(commands.create_on_master(spec, target, conf.link_in_container, host_link))


def _vlan_link(conf) -> str:
    return vlan.link_name(conf.master, conf.vlan) if conf.master else "<VLAN-LINK-THE-RECORD-NAMES>"


def _master(conf, master_ns, step) -> str:
    if conf.master:
        return conf.master
    if conf.prev_result is not None and len(conf.prev_result["interfaces"]) == 1:
        return conf.prev_result["interfaces"][0]["name"]
    step(commands.show_default_routes(master_ns, 4))
    return "<DEFAULT-ROUTE-INTERFACE>"


def _addresses(conf, ipam_result: dict | None, out: list[str]) -> dict:
    if conf.ipam_type and ipam_result is not None:
        return results.parse(ipam_result, conf.cni_version, "the IPAM result")
    if not conf.ipam_type and conf.prev_result and conf.prev_result["ips"]:
        return conf.prev_result
    out.append(f"# PLACEHOLDER addresses ({json.dumps(PLACEHOLDER['ips'])}, routes "
               f"{json.dumps(PLACEHOLDER['routes'])}): give --ipam-result FILE for the real ones.")
    return PLACEHOLDER
