"""`"vlan": N`: the ipvlan links' master is the 802.1Q sub-interface VLAN N
of `master`, made on demand, as Docker's ipvlan driver makes `eth0.20` for
`-o parent=eth0.20`, so that no node has to be prepared first.

The VLAN link:
  - is named MASTER.N when that fits in 15 characters (eth0.20), else
    `vl`, the CRC-32 of the master's name in hex, `.N` (vl8b5b0a3c.20):
    the name a node's owner would give it, where it can have it;
  - is made when missing, up, with the master's MTU (the kernel's default
    for a VLAN link), by lines of the same `ip` batch that reads the master
    and creates the ipvlan link, so an ADD runs no more processes for it;
  - is made once for every network that names it: under a lock for the link
    (/run/ipvlan-ip/locks/vlan-LINK.lock), which an ADD that finds the link holds shared,
    and takes exclusively only to make it;
  - when a link of that name exists, is used as it is if it is VLAN N on
    that master, and never removed then (the node's owner made it); any
    other interface of that name is refused, before anything is allocated.

What the plugin made, it removes, and only that: each attachment on a VLAN
link is recorded in /run/ipvlan-ip/vlan/NETWORK/CONTAINERID:IFNAME, and a
link the plugin made carries the alias MADE, set by the batch line after
the one that made it: a batch stops at a line that fails, so a link that
the node's owner made first (File exists) is never marked. The kernel keeps
the mark with the link, so no record can claim a link that someone else
made under the same name later. The last DEL removes the link, under its
lock held exclusively, once no record of any network names it and nothing
at all stands on it (port.py: a link of any network or plugin, in any
netns, or an address the node gave it): an ADD records itself under the
shared lock before it makes its ipvlan link, so the DEL either sees that
record or comes first, and the ADD then makes the link anew. GC removes what
attachments that are gone without a DEL left, as for hostAccess. The link
goes over rtnetlink from the plugin's own process, not `ip`: a DEL runs one
`ip` process, the last one too.

The first part builds lines (pure, like commands.py); the second runs the
steps through the runner, for operations.py to compose.
"""
from __future__ import annotations

import zlib

from ..commands import Command, LinkDelete, batch_line
from ..errors import MASTER_FAILURE, CniError
from ..node import port, state
from .capability import Call, Capability, CreateLines, SharedLink

STATE = "/run/ipvlan-ip/vlan"
MADE = "made by ipvlan-ip"
# Where versions before the alias recorded the links they made, with the ifindex: still honoured.
LEGACY = "/run/ipvlan-ip/vlan-made"


# ---------------------------------------------------------------- the lines

def link_name(master: str, vid: int) -> str:
    name = f"{master}.{vid}"
    return name if len(name) <= 15 else f"vl{zlib.crc32(master.encode()):08x}.{vid}"


def lock_path(link: str) -> str:
    return f"{state.LOCKS}/vlan-{link}.lock"


# Each attachment's VLAN link, under the link's lock.
LEDGER = state.Ledger(STATE, "vlan", lambda held: lock_path(held["link"]))
record_path = LEDGER.path


def legacy_path(link: str) -> str:
    return f"{LEGACY}/{link}"


def link_lines(master: str, vid: int, make: bool) -> tuple[str, ...]:
    """The create batch's lines before the ipvlan link's: read the master
    (it must exist: the batch stops there when it does not), make the VLAN
    link when it is missing and mark it made (it comes up after the batch,
    commands.quiet_host_link), else bring it up, read it."""
    name = link_name(master, vid)
    add = (batch_line("link", "add", "link", master, "name", name, "type", "vlan", "id", str(vid)),) if make else ()
    setting = ("alias", MADE) if make else ("up",)
    return (batch_line("link", "show", "dev", master), *add,
            batch_line("link", "set", "dev", name, *setting), batch_line("link", "show", "dev", name))


def mismatch(link: dict, master: str, vid: int) -> str | None:
    """How `link`, as `ip -j -d link show` printed it, is not VLAN `vid` on `master`, or None."""
    info = link.get("linkinfo", {})
    if info.get("info_kind") != "vlan":
        return f"is {'a ' + info['info_kind'] if info.get('info_kind') else 'a plain'} device, not a VLAN link"
    if info.get("info_data", {}).get("id") != vid or link.get("link") != master:
        return f"is VLAN {info.get('info_data', {}).get('id')} on {link.get('link')}, not VLAN {vid} on {master}"
    return None


# ---------------------------------------------------------------- the steps

def claim(run, master: str, vid: int, make: bool) -> tuple[str, ...] | None:
    """The lines that give the ipvlan links their VLAN link, to run under
    its lock: shared to use the link that exists, exclusive to `make` it.
    None when the lock held is the wrong one (as host_access.claim). A link
    of that name that is not VLAN `vid` on `master` is refused: it stays
    what it is, so waiting would not help."""
    name = link_name(master, vid)
    vlans = run.vlans()
    if name in vlans and vlans[name] != (vid, master):
        found_vid, parent = vlans[name]
        raise refusal(name, f"is VLAN {found_vid} on {parent}, not VLAN {vid} on {master}")
    present = name in vlans or run.host_index(name) > 0
    if present and name not in vlans:
        driver = run.interfaces(None).get(name)
        raise refusal(name, f"is a {driver.kind if driver and driver.kind else 'device'}, not a VLAN link")
    if present == make:
        return None
    return link_lines(master, vid, make)


def refusal(name: str, problem: str) -> CniError:
    return CniError(MASTER_FAILURE, f"vlan: the host's interface {name} {problem}; it was left alone, and nothing "
                    "was allocated. Rename or remove it (ip link del dev NAME), or use another vlan or master")


def record(run, path: str, master: str, vid: int) -> None:
    """The attachment whose record is at `path` is on VLAN `vid`'s link: before the batch that makes its
    ipvlan link, so that a call killed halfway leaves nothing that DEL or GC does not find."""
    run.save_record(path, {"master": master, "vlan": vid, "link": link_name(master, vid)})


def leave(run, path: str) -> None:
    """The attachment whose record is at `path` is off its VLAN link
    (nothing, and no lock, when it was on none); the link goes when the
    plugin made it and nothing uses it any more."""
    LEDGER.detach(run, path, then=lambda held: _remove_if_unused(run, held["link"]))


def _remove_if_unused(run, link: str) -> None:
    """Under the link's lock held exclusively: remove `link` if the plugin
    made it and nothing stands on it any more. Under its port lock too
    (port.py), held exclusively: a network that names the VLAN link as its
    master makes its first link there under that lock alone."""
    if link in LEDGER.in_use(run, "link"):
        return
    with run.exclusive(port.lock_path(link), create=True, patience=state.TURN):
        _remove_unless_standing(run, link)


def _remove_unless_standing(run, link: str) -> None:
    host = run.interfaces(None)
    found = host.get(link)
    legacy = run.load_record(legacy_path(link))
    if found is None or found.kind != "vlan" or not (found.alias == MADE or
                                                     (legacy and legacy.get("ifindex") == found.index)):
        run.save_record(legacy_path(link), None)
        return      # gone, or the node owner's
    standing = [f"{on.name} ({on.kind}) in {where}" for where, on in port.stacked(run, link)]
    if found.master:    # a bridge's or bond's port
        standing.append(f"a port of {next((n for n, i in host.items() if i.index == found.master), found.master)}")
    standing += ["an address the node gave it"] if found.index in run.addressed() else []
    if standing:
        run.echo(f"# the VLAN link {link} stays: {', '.join(standing)} stands on it")
        return
    run.delete_link(LinkDelete(f"remove the VLAN link {link}: the plugin made it, and nothing uses it", link,
                               found.index))
    run.save_record(legacy_path(link), None)


def collect(run, network: str, valid: set[tuple[str, str]]) -> list[CniError]:
    """GC: this network's attachments that are not valid any more come off
    their VLAN links; then each link the plugin made that nothing uses goes.
    Goes on past a step that fails; what failed is returned."""
    failed = LEDGER.collect(run, network, valid,
                            lambda container_id, ifname: leave(run, record_path(network, container_id, ifname)))
    made = {name for name, link in run.interfaces(None).items() if link.kind == "vlan" and link.alias == MADE}
    for link in (made | set(run.load_records(LEGACY))) - LEDGER.in_use(run, "link"):
        try:
            with run.exclusive(lock_path(link), create=True):
                _remove_if_unused(run, link)
        except CniError as e:
            failed.append(e.wrap(f"vlan: removing the VLAN link {link}"))
    return failed


def read_link(name: str) -> Command:
    return Command(f"read the VLAN link {name}: VLAN id, parent, up", ("ip", "-j", "-d", "link", "show", "dev", name))


def check(call: Call, container_link: dict) -> list[str]:
    """CHECK: the attachment is recorded on VLAN `vid`'s link, which is
    that VLAN on the master and up, and the container's ipvlan link (as
    `ip -j -d address show` read it in the container) is on it."""
    run, conf, env = call
    vid, held = conf.vlan, run.load_record(LEDGER.of(call))
    if held is None:
        return [f"vlan: nothing is recorded for {env.container_id}:{env.ifname} in "
                f"{state.network_dir(STATE, conf.name)}"]
    name = held["link"]
    if held["vlan"] != vid:
        return [f"vlan: {env.ifname} was attached to VLAN {held['vlan']} ({name}), and the config says {vid}"]
    try:
        link = run.run_json(read_link(name))[0][0]
    except CniError as e:
        return [f"vlan: the VLAN link {name} is missing: {e.details}"]
    problem = mismatch(link, held["master"], vid)
    if problem:
        return [f"vlan: the host's interface {name} {problem}"]
    problems = [] if "UP" in link.get("flags", []) else [f"vlan: the VLAN link {name} is down"]
    if container_link.get("link_index") != link.get("ifindex"):
        problems.append(f"vlan: {env.ifname} is not an ipvlan link on the VLAN link {name}")
    return problems


# ---------------------------------------------------------------- the capability

class Vlan(Capability):
    """`"vlan": N` as operations walks it (capability.py)."""

    key = "vlan"
    option = "vlan"
    option_type = int

    def refusal(self, data: dict) -> str:
        # The schema's integer takes 20.0; Go's json, and so the Go plugins, do not.
        if isinstance(data["vlan"], float):
            return f"vlan {data['vlan']!r} must be an integer written without a fraction (1 to 4094)"
        if data.get("master") == "ipam":
            return ("vlan cannot work with \"master\": \"ipam\": the VLAN link is made before IPAM runs, and the "
                    "IPAM result names the master only after")
        if data.get("linkInContainer"):
            return ("vlan cannot work with linkInContainer: the VLAN link is made and shared on the host, and "
                    "the master is then in the container's netns")
        if data.get("hostAccess"):
            return ("vlan cannot work with hostAccess: the host would need an address on a VLAN link the plugin "
                    "makes and removes; make the VLAN link yourself, give it the host's address, and name it "
                    "as \"master\" instead (docs/vlan.md)")
        return ""

    def wanted(self, conf) -> bool:
        return bool(conf.vlan)

    def link_master(self, conf, master: str) -> str:
        return link_name(master, conf.vlan) if conf.vlan else master

    def shared_link(self, call: Call, master: str) -> SharedLink:
        conf = call.conf
        name = link_name(master, conf.vlan)

        def lines(make: bool) -> CreateLines:
            return CreateLines(link_lines(master, conf.vlan, make), (),
                               f"read the master and make or bring up its VLAN link {name}", name if make else "")

        def claimed(make: bool) -> CreateLines | None:
            if claim(call.run, master, conf.vlan, make) is None:
                return None
            record(call.run, LEDGER.of(call), master, conf.vlan)
            return lines(make)
        return SharedLink(lock_path(name), f"vlan: the VLAN link {name}", claimed, None)

    def detach(self, call: Call) -> None:
        # Whatever the config says now, the record says what the attachment is on.
        leave(call.run, LEDGER.of(call))

    def check(self, call: Call, link: dict, ips: list[str], neighbours: list) -> list[str]:
        return check(call, link)

    def collect(self, run, network: str, valid: set[tuple[str, str]]) -> list[CniError]:
        return collect(run, network, valid)


CAPABILITY = Vlan()
