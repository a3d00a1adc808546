"""The CNI operations, composed from config, builder, runner and IPAM.

Each function reads like the steps it takes; the `ip` details are in
commands.py and every execution goes through the runner `run`. What an
opt-in capability adds, each command takes from the capabilities the
config asks for, through the hooks of capability.py.
"""
from __future__ import annotations

from . import capabilities, commands, dhcp, ipam, port, state
from .capability import Call, CreateLines
from .commands import Addressing, LinkSpec, Netns, Rename, SysctlWrite
from .config import NetConf
from .environment import CniEnv, batch_problem, interface_name_problem
from .errors import (
    CHECK_FAILURE,
    INTERFACE_EXISTS,
    INVALID_CONFIG,
    LINK_FAILURE,
    MASTER_FAILURE,
    NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    CniError,
)
from .runner import BatchFailure, CommandFailed

# ---------------------------------------------------------------- ADD

def add(conf: NetConf, env: CniEnv, run) -> dict:
    target = run.netns(env.netns)
    # Before anything is allocated: a repeated ADD (a runtime retrying, say)
    # must be refused without touching the attachment that holds the name,
    # since undoing our own half-done work would release *its* address.
    if env.ifname in run.interfaces(target):
        raise CniError(INTERFACE_EXISTS, f"interface {env.ifname!r} already exists in {env.netns}: an earlier "
                       "ADD of this container is still attached, or another plugin made it; nothing was changed")
    master_ns = target if conf.link_in_container else None
    socket = dhcp.socket_path(conf.ipam) if conf.dhcp else ""
    if socket and not run.listening(socket):
        raise dhcp.daemon_missing(socket)

    call, made = Call(run, conf, env), Made(capabilities.wanted(conf))
    spec = link_spec(conf, env.container_id, env.ifname, "")
    try:
        if not conf.master_from_ipam:
            # As upstream, the link comes before the addresses: an unusable master costs no allocation.
            _create(call, master_name(conf, run, master_ns), target, made)
        found = _lease(call, spec, target, made, socket) if socket else _addresses(conf, env, run, made)
        if conf.master_from_ipam:
            _create(call, _master_from_ipam(found), target, made)
        addressing = Addressing(tuple(found["ips"]), tuple(found["routes"]))
        ips = [ipc["address"] for ipc in addressing.ips]
        for capability in made.capabilities:
            capability.admit(call, ips, made.master_read)
        on_link: list[str] = []
        extra: list[str] = []
        for capability in made.capabilities:
            routes, lines = capability.container_lines(call, ips, made.master_read)
            on_link += routes
            extra += lines
        mac = _configure(call, spec, target, addressing, made, tuple(extra))
        for capability in made.capabilities:
            made.recording(capability)
            capability.attach(call, made.master_read, ips)
    except BaseException:
        _undo(call, target, made)
        raise

    return {
        "interfaces": [{"name": env.ifname, "mac": mac, "sandbox": env.netns}],
        "ips": [{**ipc, "interface": 0} for ipc in addressing.ips],
        "routes": [*addressing.routes, *({"dst": dst} for dst in on_link)],
        **({"dns": conf.dns} if conf.dns else {}),
    }


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


def _undo(call: Call, target: Netns, made: Made) -> None:
    """Take back what a failed ADD made: the link first, so that an address
    is never free while a link still carries it, then what the capabilities
    recorded (never a shared link another attachment uses), then the
    reservation. A DHCP lease is the exception: the daemon releases it by
    sending through the link, so the link goes after it."""
    run, conf, env = call
    link = [lambda: run.run(commands.delete_link(target, made.link))] if made.link else []
    recorded = [lambda c=capability: c.detach(call) for capability in made.recorded]
    release = [lambda: ipam.execute(run, conf, env, "DEL")] if made.reserved else []
    steps: list = [*release, *link, *recorded] if conf.dhcp else [*link, *recorded, *release]
    for step in steps:
        try:
            step()
        except Exception as cleanup_error:      # an unreadable record too: the next step still runs
            run.echo(f"# rollback step failed: {getattr(cleanup_error, 'details', cleanup_error)}")


def link_spec(conf: NetConf, container_id: str, ifname: str, master: str) -> LinkSpec:
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


def _create(call: Call, master: str, target: Netns, made: Made) -> None:
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
    spec = link_spec(conf, env.container_id, env.ifname, link_master(conf, master))
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


def _addresses(conf: NetConf, env: CniEnv, run, made: Made) -> dict:
    """The IPs and routes to configure: from IPAM, or from a chained prevResult."""
    if conf.ipam_type:
        # Registered first: the spec asks for DEL after a failed IPAM ADD too,
        # which may have reserved an address before failing (or being killed).
        made.reserved = True
        found = ipam.add(run, conf, env)
        if not found["ips"]:
            raise CniError(INVALID_CONFIG, f"IPAM plugin {conf.ipam_type!r} returned no IP configuration")
        return found
    if conf.prev_result and conf.prev_result["ips"]:
        return conf.prev_result
    raise CniError(INVALID_CONFIG, "no ipam section, and no prevResult with IPs to configure")


def _lease(call: Call, spec: LinkSpec, target: Netns, made: Made, socket: str) -> dict:
    """dhcp: the link named and up first (the daemon sends through it), then
    the lease, asked for under the master's lock (dhcp.py says why)."""
    run, conf, env = call
    _name(run, commands.ready_for_dhcp(spec, target, _sysctls(call, made, target, spec)), made)
    with run.exclusive(dhcp.lock_path(made.master_read["ifname"]), create=True):
        try:
            return _addresses(conf, env, run, made)
        except CniError as e:
            raise dhcp.explain(e, socket) from e


def _master_from_ipam(found: dict) -> str:
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


def _configure(call: Call, spec: LinkSpec, target: Netns, addressing: Addressing, made: Made,
               extra: tuple[str, ...]) -> str:
    """Announce and rename the link (a leased one, dhcp's, is named and up
    since before IPAM), address, bring up and route it, with the
    capabilities' `extra` lines; its MAC as the kernel reads it back."""
    run, leased = call.run, call.conf.dhcp
    if not leased:
        _name(run, commands.name_link(spec, target, addressing, _sysctls(call, made, target, spec)), made)
    configure = commands.configure_link(target, spec, addressing, extra, is_up=leased)
    try:
        docs, failures = run.run_batch(configure)
    except CommandFailed as e:
        raise e.wrap(f"failed to configure {spec.ifname} in {target.path}") from e
    serious = [f for f in failures if not (f.line.startswith("route add") and "File exists" in f.message)]
    if serious:
        first = serious[0]
        error = CniError(LINK_FAILURE, f"failed to `{first.line}` in {target.path}: {first.message}")
        raise dhcp.explain_taken(error) if leased else error
    return docs[-1][0]["address"]


def _sysctls(call: Call, made: Made, target: Netns, spec: LinkSpec) -> tuple[SysctlWrite, ...]:
    return tuple(write for capability in made.capabilities
                 for write in capability.link_sysctls(call, target, spec.tmp_name))


def _name(run, steps: list, made: Made) -> None:
    """The in-process steps that name the link (and bring it up for dhcp):
    the sysctls, which come first, in one entry into the netns."""
    writes = [step for step in steps if isinstance(step, SysctlWrite)]
    if writes:
        run.write_sysctls(writes)
    for step in steps[len(writes):]:
        if isinstance(step, Rename):
            run.rename_link(step)
            made.link = step.new   # renamed: a rollback deletes it by this name
        else:
            run.link_up(step)


def _explain_create_failure(failure: BatchFailure, spec: LinkSpec, lines: CreateLines) -> CniError:
    # A busy master is the master's fault (macvlan links on it): advice.py says what to do.
    code = MASTER_FAILURE if "Device or resource busy" in failure.message else LINK_FAILURE
    what = lines.says if failure.line in (*lines.reads, *lines.extra) else f"create ipvlan on {spec.master!r}"
    return CniError(code, f"failed to {what}: `{failure.line}`: {failure.message}")


# ---------------------------------------------------------------- DEL

# What `ip` says when the link or the netns is already gone: DEL must succeed then.
GONE = ("Cannot find device", "Cannot open network namespace", "reassociate to namespace",
        "setting the network namespace")


def delete(conf: NetConf, env: CniEnv, run) -> None:
    """As _undo: the link and the host's routes before the addresses are
    released, so that no new container gets an address while the old link
    or route still has it (dhcp again the exception). A DEL for input that
    ADD refuses completes too: such an ADD made nothing, but the config may
    have been edited since an ADD that did."""
    if env.refused:
        run.echo(f"# {env.refused}: no ADD with it made anything, so there is nothing to delete")
        return
    if conf.refused:
        run.echo(f"# an ADD would refuse this config now ({conf.refused}); releasing what it may hold")
    call = Call(run, conf, env)
    release = [_release] if conf.ipam_type else []
    # Every capability's, whatever the config says now: its records say what the attachment has.
    detach = [capability.detach for capability in capabilities.ALL]
    steps = [*release, _remove_link, *detach] if conf.dhcp else [_remove_link, *detach, *release]
    for step in steps:
        try:
            step(call)
        except (state.LockUnavailable, state.RecordUnreadable) as e:
            # Waiting or retrying would not mend it, and a DEL that fails keeps the pod for nothing: what the
            # step guards or lists stays for GC (or the node's owner), and the address is released.
            run.echo(f"# DEL went on past a step it could not take: {e.details}")
        except CniError as e:
            if not (conf.refused and step is _release):
                raise
            run.echo(f"# IPAM DEL failed for a config ADD refuses, which so made no reservation: {e.details}")


def _release(call: Call) -> None:
    run, conf, env = call
    try:
        try:
            ipam.execute(run, conf, env, "DEL")
        except state.LockUnavailable as e:
            # The turn only orders a network's calls (IPAM plugins guard their own files): the address goes.
            run.echo(f"# {e.details}: IPAM DEL runs without its turn")
            ipam.execute(run, conf, env, "DEL", turn=False)
    except CniError as e:
        if not (conf.dhcp and dhcp.not_listening(e)):
            raise
        # The daemon holds its leases in memory alone: with none listening, no lease of this container's is
        # held, and a daemon started later knows none either. Failing DEL would keep the pod for nothing.
        run.echo(f"# no dhcp daemon listens on {dhcp.socket_path(conf.ipam)}, so none holds a lease to release: "
                 "DEL goes on")


def _remove_link(call: Call) -> None:
    run, conf, env = call
    if not env.netns:
        return
    try:
        target = run.netns(env.netns)
        present = run.interfaces(target)
    except CniError as e:     # gone, or not a netns: nothing of ours can be in it
        run.echo(f"# {e.details}; nothing to delete there")
        return
    # The link, and its temporary name in case an ADD died before renaming it:
    # only those that are there (see Runner.interfaces), and ours. The DEL
    # that follows a refused ADD must not remove another plugin's interface.
    candidates = [n for n in (env.ifname, commands.temporary_name(env.container_id, env.ifname)) if n in present]
    master_mac = _master_mac(conf, env, run, present) if candidates else None
    names = []
    for name in candidates:
        problem = not_ours(present[name], master_mac, commands.mark(conf.name))
        if problem:
            run.echo(f"# {name} in {env.netns} {problem}: not ours, left alone")
        else:
            names.append(name)
    if not names:
        run.echo(f"# no ipvlan link of ours named {env.ifname} in {env.netns}: nothing to delete")
        return
    cmd = commands.remove_attachment(target, names)
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


def _master_mac(conf: NetConf, env: CniEnv, run, present: dict) -> str | None:
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


# ---------------------------------------------------------------- CHECK

def check(conf: NetConf, env: CniEnv, run) -> None:
    prev = conf.prev_result
    if prev is None:
        raise CniError(INVALID_CONFIG, "CHECK needs the prevResult of the ADD, and there is none")
    target = run.netns(env.netns)
    if conf.ipam_type:
        ipam.execute(run, conf, env, "CHECK")
    index = next((n for n, i in enumerate(prev["interfaces"])
                  if i.get("name") == env.ifname and i.get("sandbox") == env.netns), None)
    if index is None:
        raise CniError(CHECK_FAILURE, f"prevResult has no interface {env.ifname!r} with sandbox {env.netns}")
    if conf.master and not conf.master_from_ipam:
        lookup_master(run, conf, conf.master, target if conf.link_in_container else None)
    try:
        (link,), v4, v6, neighbours = run.run_json(commands.inspect_container(target, env.ifname))
    except CommandFailed as e:
        raise CniError(CHECK_FAILURE, f"interface {env.ifname!r} not found in {env.netns}: {e.stderr.strip()}") from e
    from . import drift  # CHECK's alone: the other commands start without it
    for problem in drift.problems(conf, prev, index, link, {4: v4, 6: v6}):
        raise CniError(CHECK_FAILURE, problem)
    ips = [ipc["address"] for ipc in prev["ips"] if ipc.get("interface", index) == index]
    for capability in capabilities.wanted(conf):
        for problem in capability.check(Call(run, conf, env), link, ips, neighbours):
            raise CniError(CHECK_FAILURE, problem)


# ---------------------------------------------------------------- STATUS, GC

def status(conf: NetConf, env: CniEnv, run) -> None:
    if conf.ipam_type:
        ipam.execute(run, conf, env, "STATUS")
    if conf.master and not conf.master_from_ipam and not conf.link_in_container:
        try:
            [master] = run.run_json(commands.show_master(None, conf.master))[0]
        except CommandFailed as e:
            raise CniError(NOT_AVAILABLE, f"master {conf.master!r} does not exist: {e.stderr.strip()}") from e
        if "UP" not in master.get("flags", []):    # ADD would refuse it: no pod can start on this network
            raise CniError(NOT_AVAILABLE, f"master {conf.master!r} is down; bring it up first "
                           f"(ip link set dev {conf.master} up)")


def gc(conf: NetConf, env: CniEnv, run) -> None:
    """Links die with their netns, so the stale resources are IPAM's and
    what capabilities added on the host for attachments that are gone (the
    hostAccess routes, VLAN links only those used): those first (as in DEL,
    no address is freed while a route still has it), collected whatever the
    config says now, since their records say what was made. Every step is
    tried; the failures are reported together at the end."""
    import json
    attachments = json.loads(conf.stdin).get("cni.dev/valid-attachments", [])
    # Read wrongly, it would say that nothing is valid, and GC would take what live containers use.
    if not (isinstance(attachments, list) and all(isinstance(a, dict) and isinstance(a.get("containerID", ""), str)
                                                  and isinstance(a.get("ifname", ""), str) for a in attachments)):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments must be a list of objects "
                       "({\"containerID\": …, \"ifname\": …}); nothing was collected")
    valid = {(a.get("containerID", ""), a.get("ifname", "")) for a in attachments}
    failed = [error for capability in capabilities.ALL for error in capability.collect(run, conf.name, valid)]
    if conf.ipam_type:
        try:
            ipam.execute(run, conf, env, "GC")
        except CniError as e:
            failed.append(e)
    if failed:
        raise CniError(failed[0].code, "GC did all it could, but: " + "; ".join(e.details for e in failed),
                       failed[0].msg)
