"""`ipvlan-ip plan`: the steps a CNI call would take, as a shell script, run
by nobody. It is the call itself: operations.add, delete or check, handed a
runner that records instead of executing (Recorder), so that the listing
cannot differ from what the plugin runs.

The Recorder writes each step it is given as the shell line the debug echo
prints (echo.announced), the locks and records as comments, and answers
each read with a stand-in that the listing names: the master is up, has
an address in the container's subnet and a MAC; nothing of the attachment
exists yet. It
keeps what the plan has made (the records, the links the batches add), so
that DEL and CHECK, planned after a silent ADD of the same attachment, read
what that ADD left, as they would on a node. No IPAM plugin runs: its
addresses are the IPAM result given on the command line, or placeholders
from the documentation ranges, said so.
"""
from __future__ import annotations

import contextlib
import json
import shlex

from .. import commands, config, operations
from ..commands import Command
from ..environment import CniEnv
from ..errors import CHECK_FAILURE, CniError
from ..node import port
from ..node.echo import announced
from ..node.rtnetlink import Address, Link

PLACEHOLDER = {"cniVersion": "1.0.0", "interfaces": [],
               "ips": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1"}],
               "routes": [{"dst": "0.0.0.0/0"}]}
# The stand-ins a plan reads: the master's MAC, its ifindex (a NIC's usual one).
MASTER_MAC = "<MASTER-MAC>"
MASTER_INDEX = 2
DEFAULT_DEV = "<DEFAULT-ROUTE-INTERFACE>"
IPAM_DEV = "<IPAM-MASTER>"


def plan(conf_text: bytes, netns_path: str, ifname: str, command: str = "ADD",
         ipam_result: dict | None = None, container_id: str = "example") -> str:
    conf = config.load(config.decode(conf_text), conf_text, command)
    env = CniEnv(command, container_id, netns_path, ifname, path=("$CNI_PATH",))
    header = ["#!/bin/sh",
              f"# ipvlan-ip plan: {command} of network {conf.name!r} for CNI_CONTAINERID={container_id} "
              f"CNI_NETNS={netns_path} CNI_IFNAME={ifname}",
              "# Nothing here has been run, the IPAM plugin neither; the reads are answered with stand-ins."]
    found = _addresses(conf, ipam_result, header)
    run = Recorder(conf, env, found)
    if command == "ADD":
        operations.add(conf, env, run)
        return _script(header, run.out)
    try:
        added = operations.add(config.load(config.decode(conf_text), conf_text, "ADD"), env._replace(command="ADD"),
                               run)
        run.out = ["# After the ADD of this attachment that `--command ADD` shows: what it recorded, and the links "
                   "it made, are read back."]
    except CniError as e:
        if command != "DEL":
            raise
        run.out = [f"# An ADD would refuse this config ({e.details}): no ADD of it made anything to read back."]
    if command == "DEL":
        operations.delete(conf, env, run)
    else:
        prev = conf.prev_result or {**added, "cniVersion": conf.cni_version}
        try:
            operations.check(conf._replace(prev_result=prev), env, run)
        except CniError as e:
            if e.code != CHECK_FAILURE:
                raise
        run.out.append("# each read is compared with prevResult, the config and the records (a plan's reads are "
                       "stand-ins: it gives no verdict)")
    return _script(header, run.out)


def _script(header: list[str], lines: list[str]) -> str:
    return "\n".join([*header, *lines]) + "\n"


def _addresses(conf, ipam_result: dict | None, out: list[str]) -> dict:
    """What the IPAM plugin answers in the plan."""
    from .. import results
    if ipam_result is not None:
        return results.parse(ipam_result, conf.cni_version, "the IPAM result")
    if not conf.ipam_type and conf.prev_result and conf.prev_result["ips"]:
        return conf.prev_result
    if conf.ipam_type:
        out.append(f"# PLACEHOLDER addresses ({json.dumps(PLACEHOLDER['ips'])}, routes "
                   f"{json.dumps(PLACEHOLDER['routes'])}): give --ipam-result FILE for the real ones.")
    interfaces = [{"name": IPAM_DEV}] if conf.master_from_ipam else []
    return {**PLACEHOLDER, "interfaces": interfaces}


def host_addresses(found: dict) -> list[Address]:
    """The host's stand-in address on the master: per family of the IPAM
    result, the last address of its subnet that the result does not name."""
    import ipaddress
    taken = {str(ipaddress.ip_interface(ip["address"]).ip) for ip in found["ips"]}
    taken |= {ip.get("gateway") for ip in found["ips"]}
    host, families = [], set()
    for ip in found["ips"]:
        net = ipaddress.ip_interface(ip["address"]).network
        if net.version in families or net.num_addresses < 4:
            continue
        families.add(net.version)
        last = net.broadcast_address - 1
        while str(last) in taken:
            last -= 1
        host.append(Address(MASTER_INDEX, str(last), net.prefixlen, 0))
    return host


class Recorder:
    """A runner (runner.py's interface) that runs nothing: see the module's
    docstring. `out` is the listing."""

    held = ()

    def __init__(self, conf, env: CniEnv, ipam_found: dict) -> None:
        self.conf, self.env, self.ipam_found = conf, env, ipam_found
        self.host = host_addresses(ipam_found)
        self.out: list[str] = []
        self.records: dict[str, dict] = {}
        # The links the plan has made: by the netns path they are in ("" the host's), then by name.
        self.made: dict[str, dict[str, Link]] = {"": {}}
        self.parents: dict[str, str] = {}

    def echo(self, text: str) -> None:
        self.out.append(text)

    def _step(self, step) -> None:
        self.out.append(announced(step))

    # ------------------------------------------------ processes

    def run(self, cmd: Command) -> str:
        self._step(cmd)
        return ""

    def run_json(self, cmd: Command) -> list:
        self._step(cmd)
        if "route" in cmd.argv and "default" in cmd.argv:       # the default-route interface
            return [[{"dst": "default", "dev": DEFAULT_DEV}]]
        if cmd.batch:
            return self._reads(cmd.batch)
        return [[self._link(cmd.argv[-1])]]

    def run_batch(self, cmd: Command) -> tuple[list, list]:
        self._step(cmd)
        self._model(cmd)
        return self._reads(cmd.batch), []

    def run_batch_ok(self, cmd: Command) -> list:
        return self.run_batch(cmd)[0]

    def find_plugin(self, plugin_type: str, paths: tuple[str, ...]) -> str:
        return f"$CNI_PATH/{plugin_type}"

    def run_plugin(self, path: str, env: dict, stdin: bytes) -> tuple[int, str]:
        command = env["CNI_COMMAND"]
        self.out.append(f"# the IPAM plugin: CNI_COMMAND={command} {path} < the config (the same environment)")
        return 0, json.dumps(self.ipam_found) if command == "ADD" else ""

    def _reads(self, lines: tuple[str, ...]) -> list:
        """A stand-in document for each line of a batch that prints one."""
        docs = []
        for line in lines:
            words = shlex.split(line)
            if words[:2] in (["link", "show"], ["address", "show"]):
                docs.append([self._link(words[-1])])
            elif words[:2] in (["route", "show"], ["neigh", "show"]):
                docs.append([])
        return docs

    def _link(self, name: str) -> dict:
        """A device as `ip -j -d link show` prints it: up, an MTU the config's fits in, the master's MAC;
        the host's stand-in address on it."""
        made = self.made[""].get(name)
        info = {"linkinfo": {"info_kind": made.kind}} if made else {}
        return {"ifname": name, "ifindex": made.index if made else MASTER_INDEX, "flags": ["UP", "LOWER_UP"],
                "mtu": max(1500, self.conf.mtu or 0), "address": MASTER_MAC, **info,
                "addr_info": [{"family": "inet" if ":" not in a.address else "inet6", "local": a.address,
                               "prefixlen": a.prefixlen, "scope": "global"} for a in self.host]}

    def _model(self, cmd: Command) -> None:
        """The host links a batch adds (a VLAN link, hostAccess's), and their aliases: DEL reads them back."""
        for line in cmd.batch:
            words = shlex.split(line)
            if words[:3] == ["link", "add", "link"] and "netns" not in words:
                name, kind = words[words.index("name") + 1], words[words.index("type") + 1]
                vlan = int(words[words.index("id") + 1]) if kind == "vlan" else 0
                self.made[""][name] = Link(100 + len(self.made[""]), name, kind, MASTER_MAC, "", MASTER_INDEX, None,
                                           "", "", vlan)
                self.parents[name] = words[3]
            elif words[:4] == ["link", "set", "dev", words[3]] and "alias" in words and words[3] in self.made[""]:
                link = self.made[""][words[3]]
                self.made[""][words[3]] = link._replace(alias=words[words.index("alias") + 1])

    # ------------------------------------------------ in-process steps and reads (kernel.py)

    def netns(self, path: str):
        return commands.netns_at(path)

    def interfaces(self, netns) -> dict[str, Link]:
        where = "" if netns is None else netns.path
        found = self.made.get(where, {})
        listed = " ".join(sorted(found)) or "none of the attachment's"
        self.out.append(f"# list the interfaces in {where} from a thread inside it (no command): {listed}" if where
                        else f"# list the host's interfaces (rtnetlink, no command): {listed}")
        return dict(found)

    def links(self, where: str) -> list[Link]:
        return list(self.made.get("" if where == port.HOST else where, {}).values())

    def rename_link(self, step) -> None:
        self._step(step)
        self.made.setdefault(step.netns.path, {})[step.new] = Link(
            1, step.new, "ipvlan", MASTER_MAC, commands.mark(self.conf.name), MASTER_INDEX, 0, self.conf.mode,
            self.conf.flag or "bridge", 0)

    def link_up(self, step) -> None:
        self._step(step)

    def write_sysctls(self, writes: list) -> None:
        for write in writes:
            self._step(write)

    def delete_link(self, step) -> None:
        self._step(step)
        self.made[""].pop(step.name, None)

    def host_sysctl(self, key: str) -> str:
        return "1"

    def host_index(self, name: str) -> int:
        return self.made[""][name].index if name in self.made[""] else 0

    def host_mac(self, name: str) -> str:
        return MASTER_MAC

    def vlans(self) -> dict[str, tuple[int, str]]:
        return {n: (link.vlan, self.parents[n]) for n, link in self.made[""].items() if link.kind == "vlan"}

    def addressed(self) -> set[int]:
        return set()

    def host_addresses(self) -> list[Address]:
        listed = ", ".join(f"{a.address}/{a.prefixlen}" for a in self.host)
        self.out.append(f"# the host's addresses (rtnetlink, no command): {listed} on the master, a stand-in")
        return list(self.host)

    def on_link(self) -> list[tuple[int, str]]:
        import ipaddress
        prefixes = sorted({str(ipaddress.ip_interface(ip["address"]).network) for ip in self.ipam_found["ips"]})
        self.out.append(f"# the host's on-link routes (rtnetlink, no command): {', '.join(prefixes)} through the "
                        "master, a stand-in")
        return [(MASTER_INDEX, prefix) for prefix in prefixes]

    def listening(self, path: str) -> bool:
        self.out.append(f"# the dhcp daemon must listen on {path} (connected to, no command)")
        return True

    def namespaces(self, commands: bool = True) -> list:
        return []

    def nsid(self, inside: str, of: str) -> None:
        return None

    # ------------------------------------------------ locks and records (state.py)

    @contextlib.contextmanager
    def exclusive(self, path: str, create: bool = False, shared: bool = False, patience: float = 1.0):
        self.out.append(f"# hold the lock {path} ({'shared' if shared else 'exclusively'})")
        yield

    def save_record(self, path: str, record: dict | None) -> None:
        if record is None:
            if self.records.pop(path, None) is not None:
                self.out.append(f"# remove the record {path}")
        else:
            self.out.append(f"# record {path}: {json.dumps(record)}")
            self.records[path] = record

    def load_record(self, path: str) -> dict | None:
        return self.records.get(path)

    def load_records(self, directory: str) -> dict[str, dict]:
        return {path[len(directory) + 1:]: record for path, record in self.records.items()
                if path.startswith(directory + "/")}

    def writable(self, directory: str) -> bool:
        return True
