"""The container's ipvlan link: its master found and checked, the link
made on it (with what a capability's shared host link adds to the same
batch, under the locks that keep the master's mode and flag one), and a
link told apart from another network's or plugin's. operations.py composes
these into ADD, DEL and CHECK.

`made` is ADD's record of what it has made so far (Made), which its
rollback reads.
"""
from __future__ import annotations

from . import capabilities, commands
from .capabilities.capability import Call, CreateLines
from .commands import LinkSpec, Netns
from .config import NetConf
from .environment import CniEnv, batch_problem, interface_name_problem
from .errors import INVALID_CONFIG, LINK_FAILURE, MASTER_FAILURE, TRY_AGAIN_LATER, CniError
from .node import port, state
from .node.runner import BatchFailure, CommandFailed


class Made:
    """What this ADD has made so far: the link by its current name, whether
    IPAM was asked for addresses, and which of the `capabilities` it asks
    for may have recorded something (their detach takes it back)."""

    def __init__(self, wanted: list) -> None:
        self.link = ""
        self.reserved = False
        self.master_read: dict = {}     # the master as the create batch read it
        self.capabilities = wanted
        self.recorded: list = []

    def recording(self, capability) -> None:
        """`capability` is about to record what it adds: a rollback calls its detach."""
        if capability not in self.recorded:
            self.recorded.append(capability)


def spec_for(conf: NetConf, container_id: str, ifname: str, master: str) -> LinkSpec:
    """The link an ADD makes (and `plan` shows), marked with its network's name."""
    return LinkSpec(master=master, tmp_name=commands.temporary_name(container_id, ifname), ifname=ifname,
                    mode=conf.mode, flag=conf.flag, mtu=conf.mtu, alias=commands.mark(conf.name))


def master_name(conf: NetConf, run, netns: Netns | None) -> str:
    """The master, when the config does not say "ipam": named, else the single
    interface of a chained prevResult, else the default-route interface."""
    if conf.master:
        return conf.master
    if conf.prev_result is not None:
        interfaces = conf.prev_result["interfaces"]
        if len(interfaces) == 1 and interfaces[0].get("name"):
            return _checked_name(interfaces[0]["name"], "prevResult's interface")
        raise CniError(INVALID_CONFIG, "chained master failure: prevResult lacks a single named interface")
    for version in (4, 6):
        routes = run.run_json(commands.show_default_routes(netns, version))[0]
        if routes and routes[0].get("dev"):
            return routes[0]["dev"]
    raise CniError(MASTER_FAILURE, "no master given and no default route interface found")


def create(call: Call, master: str, target: Netns, made: Made) -> None:
    """Read the master and create the link on it (one `ip` process). A
    link on the host that a capability shares between the attachments of
    every network (the host's own link, a VLAN link) is made by the first
    of them, under a lock (_shared), and its lines join the same batch."""
    shared = [(c, c.shared_link(call, master)) for c in made.capabilities]
    shared = [(c, link) for c, link in shared if link is not None]
    if not shared:
        _create_link(call, master, target, made, CreateLines())
        return
    # config.py refuses the capabilities that would each share a link of their own.
    capability, link = shared[0]

    def attempt(make: bool) -> bool:
        lines = link.claim(make)
        if lines is None:
            return False
        made.recording(capability)
        try:
            _create_link(call, master, target, made, lines)
        finally:
            if lines.made:      # even a link that a failed batch leaves takes no router advertisement
                quiet = commands.quiet_host_link(lines.made)
                call.run.write_sysctls(quiet[:-1])
        if lines.made:
            call.run.link_up(quiet[-1])
        if link.created:
            link.created(make, made.master_read)
        return True
    _shared(call.run, link.lock, link.what, attempt)


def _shared(run, lock: str, what: str, attempt) -> None:
    """attempt(make) under `lock`: shared where the shared link is there,
    exclusive only to make it. It answers False when the lock held is the
    wrong one. An ADD that waited for the exclusive lock while another made
    the link goes back to shared rather than serialize the whole burst (GC
    removing the link in between is why this may go round more than once)."""
    for shared in (True, False) * 3:
        with run.exclusive(lock, create=True, shared=shared, patience=state.TURN):
            if attempt(not shared):
                return
        run.echo(f"# {what}: " + ("none yet, so the lock is taken again exclusively, to make the first" if shared
                                  else "made meanwhile, so the lock is taken again shared"))
    raise CniError(TRY_AGAIN_LATER, f"{what} kept being made and removed by other calls; try again")


def link_master(conf: NetConf, master: str) -> str:
    """The device the ipvlan link is made on: the master, or what a capability puts on it (vlan)."""
    for capability in capabilities.wanted(conf):
        master = capability.link_master(conf, master)
    return master


def _create_link(call: Call, master: str, target: Netns, made: Made, lines: CreateLines) -> None:
    """The create batch, once the master's ipvlan port is known to carry
    this network's mode and flag or none (port.py: the kernel keeps one of
    each per master, and a new link would switch every link on it); the
    link removed again when the read shows a master we must not use. The
    link's master is link_master's, read after `master`."""
    run, conf, env = call
    where = f" in {target.path}" if conf.link_in_container else ""
    problem = batch_problem(master)
    if problem:
        raise CniError(MASTER_FAILURE, f"master {master!r}{where} {problem}")
    spec = spec_for(conf, env.container_id, env.ifname, link_master(conf, master))
    ports_netns = target if conf.link_in_container else None

    def on_port(exclusive: bool) -> bool:
        if not port.settle(run, spec.master, ports_netns, conf.mode, conf.flag, exclusive):
            return False
        _create_batch(call, spec, master, target, made, where, lines)
        if exclusive:
            port.remember(run, spec.master, target.path)
        return True
    _shared(run, port.lock_path(spec.master), f"the ipvlan links of {spec.master!r}", on_port)


def _create_batch(call: Call, spec: LinkSpec, master: str, target: Netns, made: Made, where: str,
                  lines: CreateLines) -> None:
    run, conf, _ = call
    cmd = commands.create_on_master(spec, target, conf.link_in_container, lines)
    try:
        docs, failures = run.run_batch(cmd)
    except CommandFailed as e:
        raise e.wrap(f"failed to lookup master {master!r}{where} and create ipvlan on it") from e
    if failures and failures[0].line == cmd.batch[0]:
        raise CniError(MASTER_FAILURE, f"failed to lookup master {master!r}{where}: {failures[0].message}")
    if not failures:
        made.link = spec.tmp_name
    for read in docs:      # the master, then a shared link's reads: the last read is the link's master
        made.master_read = read[0]
        # A link these lines made comes up after the batch (CreateLines.made); its own master was read up.
        check_master(conf, made.master_read, where, down_ok=made.master_read.get("ifname") == lines.made)
    if failures:
        raise _explain_create_failure(failures[0], spec, lines)


def lookup_master(run, conf: NetConf, name: str, netns: Netns | None) -> dict:
    """CHECK's look at the master: the same checks as ADD's, in a process of its own."""
    where = f" in {netns.path}" if netns else ""
    try:
        link = run.run_json(commands.show_master(netns, name))[0][0]
    except CommandFailed as e:
        raise CniError(MASTER_FAILURE, f"failed to lookup master {name!r}{where}: {e.stderr.strip()}") from e
    check_master(conf, link, where)
    return link


def check_master(conf: NetConf, link: dict, where: str, down_ok: bool = False) -> None:
    """The master, as `ip -j -d link show` printed it, can carry our link."""
    name = link.get("ifname")
    if link.get("linkinfo", {}).get("info_kind") == "ipvlan":
        raise CniError(MASTER_FAILURE, f"master {name!r} is itself an ipvlan link; "
                       "enslave its own master instead")
    if "UP" not in link.get("flags", []) and not down_ok:
        raise CniError(MASTER_FAILURE, f"master {name!r}{where} is down; bring it up first "
                       f"(ip link set dev {name} up)")
    if conf.mtu and conf.mtu > link.get("mtu", 0):
        raise CniError(INVALID_CONFIG, f"mtu {conf.mtu} is larger than the MTU {link.get('mtu')} "
                       f"of master {name!r}: lower \"mtu\" to at most {link.get('mtu')}, or leave it out")


def master_from_ipam(found: dict) -> str:
    names = [i.get("name") for i in found.get("interfaces", [])]
    if len(names) != 1 or not names[0]:
        raise CniError(MASTER_FAILURE, "\"master\": \"ipam\" needs the IPAM result to name exactly one "
                       f"interface, and it named {len(names)}")
    return _checked_name(names[0], "the IPAM result's interface")


def _checked_name(name: str, what: str) -> str:
    """A master named by another plugin's result is checked as CNI_IFNAME is:
    it becomes part of lock and record paths, and a line of `ip -batch`."""
    problem = interface_name_problem(name) or batch_problem(name)
    if problem:
        raise CniError(INVALID_CONFIG, f"{what} {name!r} {problem}, so it cannot be the master")
    return name


def _explain_create_failure(failure: BatchFailure, spec: LinkSpec, lines: CreateLines) -> CniError:
    # A busy master is the master's fault (macvlan links on it): advice.py says what to do.
    code = MASTER_FAILURE if "Device or resource busy" in failure.message else LINK_FAILURE
    what = lines.says if failure.line in (*lines.reads, *lines.extra) else f"create ipvlan on {spec.master!r}"
    return CniError(code, f"failed to {what}: `{failure.line}`: {failure.message}")


def master_mac(conf: NetConf, env: CniEnv, run, present: dict) -> str | None:
    """The MAC our link would carry (an ipvlan link has its master's), where
    the master is known: named in the config, else the MAC our ADD reported
    in prevResult. "" when the named master is gone (and its links with it);
    None when DEL cannot know the master ("ipam", the default route, or a
    config ADD refuses, which may say anything of it)."""
    if conf.refused:
        return None
    if conf.master and not conf.master_from_ipam:
        if conf.link_in_container:
            return present[conf.master].mac if conf.master in present else ""
        return run.host_mac(link_master(conf, conf.master))
    if conf.prev_result is not None:
        for interface in conf.prev_result["interfaces"]:
            if interface.get("name") == env.ifname and interface.get("sandbox") == env.netns:
                return interface.get("mac") or None
    return None


def not_ours(link, master_mac: str | None, mark: str) -> str | None:
    """Why the interface `link` (an rtnetlink.Link) cannot be the link this
    network's ADD made, or None. Its alias says which network made it
    (commands.mark); a link without one, made by a version of this plugin
    before marks, is told by its master's MAC alone."""
    if link.kind != "ipvlan":
        return f"is {'a ' + link.kind if link.kind else 'an interface'} device, not an ipvlan link"
    if link.alias.startswith(commands.MARK):
        return None if link.alias == mark else f"is the link of another network (its alias is {link.alias})"
    if master_mac is not None and link.mac.lower() != master_mac.lower():
        return "is an ipvlan link of another master"
    return None
