"""The CNI operations, composed from config, builder, runner and IPAM.

Each function reads like the steps it takes; the `ip` details are in
commands.py and every execution goes through the runner `run`. What an
opt-in capability adds, each command takes from the capabilities the
config asks for, through the hooks of capability.py.
"""
from __future__ import annotations

from . import capabilities, commands, dhcp, ipam, link
from .capabilities.capability import Call
from .commands import Addressing, LinkSpec, Netns, Rename, SysctlWrite
from .config import NetConf
from .environment import CniEnv
from .errors import CHECK_FAILURE, INTERFACE_EXISTS, INVALID_CONFIG, LINK_FAILURE, NOT_AVAILABLE, CniError
from .node import state
from .node.runner import CommandFailed

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

    call, made = Call(run, conf, env), link.Made(capabilities.wanted(conf))
    spec = link.spec_for(conf, env.container_id, env.ifname, "")
    try:
        if not conf.master_from_ipam:
            # As upstream, the link comes before the addresses: an unusable master costs no allocation.
            link.create(call, link.master_name(conf, run, master_ns), target, made)
        found = _lease(call, spec, target, made, socket) if socket else _addresses(conf, env, run, made)
        if conf.master_from_ipam:
            link.create(call, link.master_from_ipam(found), target, made)
        addressing = Addressing(tuple(found["ips"]), tuple(found["routes"]))
        ips = [ipc["address"] for ipc in addressing.ips]
        for capability in made.capabilities:
            capability.admit(call, ips, made.master_read)
        added: list[dict] = []
        extra: list[str] = []
        for capability in made.capabilities:
            routes, lines = capability.container_lines(call, ips, made.master_read)
            added += routes
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
        "routes": [*addressing.routes, *added],
        **({"dns": conf.dns} if conf.dns else {}),
    }


def _undo(call: Call, target: Netns, made: link.Made) -> None:
    """Take back what a failed ADD made, in DEL's order (never a shared
    link another attachment uses: the capabilities' detach sees to that)."""
    run, conf, env = call
    unlink = [lambda: run.run(commands.delete_link(target, made.link))] if made.link else []
    recorded = [lambda c=capability: c.detach(call) for capability in made.recorded]
    release = [lambda: ipam.execute(run, conf, env, "DEL")] if made.reserved else []
    for step in _teardown(conf, release, unlink, recorded):
        try:
            step()
        except Exception as cleanup_error:      # an unreadable record too: the next step still runs
            run.echo(f"# rollback step failed: {getattr(cleanup_error, 'details', cleanup_error)}")


def _addresses(conf: NetConf, env: CniEnv, run, made: link.Made) -> dict:
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


def _lease(call: Call, spec: LinkSpec, target: Netns, made: link.Made, socket: str) -> dict:
    """dhcp: the link named and up first (the daemon sends through it), then
    the lease, asked for under the master's lock (dhcp.py says why)."""
    run, conf, env = call
    _name(run, commands.ready_for_dhcp(spec, target, _sysctls(call, made, target, spec)), made)
    with run.exclusive(dhcp.lock_path(made.master_read["ifname"]), create=True):
        try:
            return _addresses(conf, env, run, made)
        except CniError as e:
            raise dhcp.explain(e, socket) from e


def _configure(call: Call, spec: LinkSpec, target: Netns, addressing: Addressing, made: link.Made,
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


def _sysctls(call: Call, made: link.Made, target: Netns, spec: LinkSpec) -> tuple[SysctlWrite, ...]:
    return tuple(write for capability in made.capabilities
                 for write in capability.link_sysctls(call, target, spec.tmp_name))


def _name(run, steps: list, made: link.Made) -> None:
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


# ---------------------------------------------------------------- DEL

# What `ip` says when the link or the netns is already gone: DEL must succeed then.
GONE = ("Cannot find device", "Cannot open network namespace", "reassociate to namespace",
        "setting the network namespace")


def delete(conf: NetConf, env: CniEnv, run) -> None:
    """In _teardown's order. A DEL for input that ADD refuses completes too:
    such an ADD made nothing, but the config may have been edited since an
    ADD that did."""
    if env.refused:
        run.echo(f"# {env.refused}: no ADD with it made anything, so there is nothing to delete")
        return
    if conf.refused:
        run.echo(f"# an ADD would refuse this config now ({conf.refused}); releasing what it may hold")
    call = Call(run, conf, env)
    release = [_release] if conf.ipam_type else []
    # Every capability's, whatever the config says now: its records say what the attachment has.
    detach = [capability.detach for capability in capabilities.ALL]
    for step in _teardown(conf, release, [_remove_link], detach):
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


def _teardown(conf: NetConf, release: list, unlink: list, detach: list) -> list:
    """The order of DEL and of a failed ADD's rollback: the link first, so
    that an address is never free while a link still carries it, then what
    the capabilities recorded, then the reservation. A DHCP lease is the
    exception: the daemon releases it by sending through the link, so the
    link goes after it."""
    return [*release, *unlink, *detach] if conf.dhcp else [*unlink, *detach, *release]


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
    master_mac = link.master_mac(conf, env, run, present) if candidates else None
    names = []
    for name in candidates:
        problem = link.not_ours(present[name], master_mac, commands.mark(conf.name))
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
        link.lookup_master(run, conf, conf.master, target if conf.link_in_container else None)
    try:
        (read,), v4, v6, neighbours = run.run_json(commands.inspect_container(target, env.ifname))
    except CommandFailed as e:
        raise CniError(CHECK_FAILURE, f"interface {env.ifname!r} not found in {env.netns}: {e.stderr.strip()}") from e
    from . import drift  # CHECK's alone: the other commands start without it
    problems = list(drift.problems(conf, prev, index, read, {4: v4, 6: v6}))
    ips = [ipc["address"] for ipc in prev["ips"] if ipc.get("interface", index) == index]
    call = Call(run, conf, env)
    problems += [problem for capability in capabilities.wanted(conf) for problem in capability.check(call, read, ips,
                                                                                                     neighbours)]
    if problems:    # every one: the runtime's log then says all that differs
        raise CniError(CHECK_FAILURE, "; ".join(problems))


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
