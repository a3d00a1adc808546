"""`ipvlan-ip plan`: the commands a CNI call would run, as a shell script,
built by the same builder functions the plugin executes, and run by nobody.

No IPAM plugin is run: addresses come from an IPAM result given on the
command line, or are placeholders from the documentation ranges, said so.
"""
from __future__ import annotations

import json

from . import capabilities, commands, config, dhcp, operations, results
from .capability import Call
from .commands import Addressing, LinkSpec
from .echo import announced
from .environment import CniEnv

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
    call = Call(None, conf, CniEnv(command, container_id, netns_path, ifname))
    wanted = capabilities.wanted(conf)

    def explained(master_read: dict | None = None, ips: list | None = None) -> None:
        """What the capabilities the config asks for add, after the link's own steps."""
        for capability in wanted:
            for shown in capability.explain(command, call, master_read or {}, ips or []):
                if isinstance(shown, str):
                    out.append(shown)
                else:
                    step(shown)

    if command == "DEL":
        # The addresses last (dhcp's first: its daemon releases through the link), as operations.delete.
        if conf.dhcp:
            ipam("DEL", "release the lease")
        out.append(f"# list the interfaces in {netns_path} from inside it (no command), then delete {ifname}, "
                   f"and {commands.temporary_name(container_id, ifname)} too if an ADD died before renaming it")
        step(commands.remove_attachment(target, [ifname]))
        explained()
        if not conf.dhcp:
            ipam("DEL", "release the addresses")
    elif command == "CHECK":
        ipam("CHECK", "ask IPAM whether the reservation still holds")
        if conf.master and not conf.master_from_ipam:
            step(commands.show_master(master_ns, conf.master))
        step(commands.inspect_container(target, ifname))
        explained()
    else:
        out.append(f"# check from inside {netns_path} that {ifname} does not exist yet (no command: "
                   "the plugin asks the kernel from a thread in the netns)")
        found = _addresses(conf, ipam_result, out)
        spec = operations.link_spec(conf, container_id, ifname, "")
        sysctls = tuple(write for c in wanted for write in c.link_sysctls(call, target, spec.tmp_name))
        if conf.master_from_ipam:
            ipam("ADD", "allocate addresses")
            names = [i.get("name") for i in found.get("interfaces", [])]
            master = names[0] if len(names) == 1 and names[0] else "<INTERFACE-NAMED-BY-IPAM>"
            _create(call, wanted, master, spec, target, step, out)
        else:
            master = _master(conf, master_ns, step)
            _create(call, wanted, master, spec, target, step, out)
            if conf.dhcp:
                for ready in commands.ready_for_dhcp(spec, target, sysctls):
                    step(ready)
                ipam("ADD", f"ask the dhcp daemon for a lease, under the lock {dhcp.lock_path(master)}")
            else:
                ipam("ADD", "allocate addresses")
        addressing = Addressing(tuple(found["ips"]), tuple(found["routes"]))
        ips = [i["address"] for i in addressing.ips]
        master_read = {**MASTER_READ, "ifname": master}
        extra = tuple(line for c in wanted for line in c.container_lines(call, ips, master_read)[1])
        if conf.dhcp:      # already named and up
            step(commands.configure_link(target, spec, addressing, extra, is_up=True))
        else:
            for s in commands.after_addressing(spec, target, addressing, extra, sysctls):
                step(s)
        explained(master_read, ips)     # once the container holds its addresses
    return "\n".join(out) + "\n"


# The master as plan shows the create batch's read of it: the host's address
# on it and its MAC are stand-ins (ADD reads the real ones).
MASTER_READ = {"address": "<MASTER-MAC>", "addr_info": [{"local": "198.51.100.2", "prefixlen": 24, "scope": "global"}]}


def _create(call: Call, wanted: list, master: str, spec: LinkSpec, target, step, out: list[str]) -> None:
    conf = call.conf
    spec = spec._replace(master=operations.link_master(conf, master))
    shared = [link for link in (c.shared_link(call, master) for c in wanted) if link is not None]
    lines = None
    for link in shared:
        out.append(f"# {link.note}")
        lines = link.lines(True)
    step(commands.create_on_master(spec, target, conf.link_in_container, lines))
    for quiet in commands.quiet_host_link(lines.made) if lines and lines.made else ():
        step(quiet)


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
