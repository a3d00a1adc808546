"""The shape of an opt-in capability (hostAccess, vlan, …): what it adds to
each CNI command, and nothing else. operations.py walks the capabilities
that capabilities.py lists, in that order, through these hooks; a
capability defines the hooks it needs, and the others add nothing.

What each hook adds to:
  - ADD, before the link: `shared_link`, a link on the host that the
    attachments of every network share (made by the first, under a lock);
  - ADD, when the link is named: `link_sysctls`, in-process writes on it;
  - ADD, once IPAM has given the addresses: `admit`, which refuses those
    the capability must not route on the host;
  - ADD's configure batch: `container_lines`, lines in the container and
    the routes they add to the result;
  - ADD, once the container holds its addresses: `attach`, on the host;
  - DEL and a failed ADD's rollback: `detach`, which takes back what the
    capability's record says this attachment has, whatever the config
    says now (it may have been edited since the ADD);
  - CHECK: `check`, each way the attachment differs from what ADD made;
  - GC: `collect`, what attachments that are gone left behind.

A capability that adds state on the host records it under /run/ipvlan-ip
on a state.Ledger of its own, before it adds it, so that a call killed at
any point leaves nothing that DEL or GC cannot find. dhcp is not a capability: it is a kind
of IPAM, and lives in operations' address step (dhcp.py).
"""
from __future__ import annotations

from collections import namedtuple

from ..errors import INVALID_CONFIG, CniError


class Call(namedtuple("Call", "run conf env")):
    """The call being served: the runner, the config, the CNI environment.
    Namedtuples here, as in commands.py: typing and dataclasses stay off
    every call's imports."""
    __slots__ = ()


class CreateLines(namedtuple("CreateLines", "reads extra says made", defaults=((), (), "", ""))):
    """What a shared link adds to the create batch (commands.create_on_master):
    `reads` replace the master's read (each read's last document is what the
    ipvlan link's master is checked as), `extra` follow them, `says` is what
    they do, for the batch's description and its failure. `made`: the link
    these lines make, down; it comes up after the batch (commands.quiet_host_link)."""
    __slots__ = ()


class SharedLink(namedtuple("SharedLink", "lock what claim created")):
    """A link on the host shared by the attachments of every network: used
    under `lock` held shared, made under it held exclusively. `claim(make)`
    gives the create batch's lines, or None when the lock held is the wrong
    one (operations._shared); it may record the attachment first. `created`
    (or None) runs after the batch, with whether this call made the link
    and the master as the batch read it."""
    __slots__ = ()


class Capability:
    """A capability: what asks for it, then its hooks, each adding nothing
    until a capability defines it. config.py, netavark.py and the docs'
    tables read the declarations (tests/unit/test_docs.py ties them)."""

    # The config key that asks for it (dotted where nested), as docs/config.md names it.
    key = ""
    # podman's `-o` option for it (netavark.py), and the type its string value is read as.
    option = ""
    option_type: type = bool

    def asked(self, data: dict) -> bool:
        """Whether the config, as decoded, asks for it."""
        value: object = data
        for name in self.key.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        return value not in (None, False)

    def refusal(self, data: dict) -> str:
        """Why ADD cannot work with it in a config the schema takes (as decoded), or ""."""
        return ""

    def wanted(self, conf) -> bool:
        return False

    def link_master(self, conf, master: str) -> str:
        """The device the ipvlan link is made on, given the config's master."""
        return master

    def shared_link(self, call: Call, master: str) -> SharedLink | None:
        return None

    def link_sysctls(self, call: Call, target, tmp_name: str) -> list:
        """commands.SysctlWrite steps on the link before it is named and up."""
        return []

    def admit(self, call: Call, ips: list[str], master_read: dict) -> None:
        """Refuse, before the container holds them, addresses whose routes this capability must not add on
        the host (a config, even a tenant's, must not take the node's own traffic)."""

    def container_lines(self, call: Call, ips: list[str],
                        master_read: dict) -> tuple[tuple[dict, ...], tuple[str, ...]]:
        """The routes the result gains (as a result lists them), and the configure batch's lines."""
        return (), ()

    def attach(self, call: Call, master_read: dict, ips: list[str]) -> None:
        """Records first what it is about to add: a rollback calls detach."""

    def detach(self, call: Call) -> None:
        pass

    def check(self, call: Call, link: dict, ips: list[str], neighbours: list) -> list[str]:
        return []

    def collect(self, run, network: str, valid: set[tuple[str, str]]) -> list:
        """GC: CniErrors of the steps that failed; every step is tried."""
        return []


def refuse_held(run, key: str, ips: list[str]) -> None:
    """Refuse an address the host itself holds (on any interface): a route
    on the host to a container would take the node's own traffic to it."""
    import ipaddress
    held = {ipaddress.ip_address(a.address) for a in run.host_addresses() if a.address}
    taken = [a for a in ips if ipaddress.ip_interface(a).ip in held]
    if taken:
        raise CniError(INVALID_CONFIG, f"{key}: {', '.join(taken)} is an address of the host itself; a route to a "
                       "container for it would take the node's own traffic to it, so nothing was added. Give the "
                       "network an IPAM range that holds no address of the node's")
