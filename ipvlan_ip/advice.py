"""What to do about an error the kernel or iproute2 gave: a new user's first
ADD often fails for a reason the plugin can name, and what iproute2 says
("Unknown device type") does not tell them. Pure: text in, text out.

The plugin's error keeps its code and its `details` (the raw message, with
the command that met it); `msg`, the short message, becomes what to do.
"""
from __future__ import annotations

from .errors import LINK_FAILURE, MASTER_FAILURE, CniError

_MTU = "the MTU asked for is above what the master allows: lower `mtu` to at most the master's, or leave it out"
_ROOT = "the plugin must run as root, with CAP_NET_ADMIN and CAP_SYS_ADMIN, as container runtimes run it"

# (what the kernel or iproute2 says, or all of several texts, what to do), the more specific first.
ADVICE = (
    (("type vlan", "Unknown device type"),
     "this kernel cannot make VLAN links (\"vlan\" in the config): load its 802.1Q driver (modprobe 8021q), "
     "or boot a kernel built with CONFIG_VLAN_8021Q"),
    ("Unknown device type",
     "this kernel cannot make ipvlan links: load its ipvlan driver (modprobe ipvlan), or boot a kernel built "
     "with CONFIG_IPVLAN (a cloud image's kernel may lack it: on Debian install linux-image-amd64, on Ubuntu "
     "linux-modules-extra-$(uname -r))"),
    ("Device or resource busy",
     "the master already carries macvlan links, and a master serves macvlan or ipvlan, not both: use another "
     "master, or remove its macvlan links (ip -d link show type macvlan)"),
    ("Address already assigned to an ipvlan device",
     "another container on this master holds that address: give each network on one master an IPAM range of "
     "its own, or release the stale reservation"),
    ("mtu greater than device maximum", _MTU),
    ("Numerical result out of range", _MTU),
    ("File exists",
     "an interface or route of that name exists already, most likely left by an ADD of this container that "
     "did not finish: the runtime's DEL removes it, then ADD again"),
    ("No such device",
     "the master or the container's interface disappeared while the call ran: check that the master is there "
     "(ip link show dev MASTER) and try again"),
    ("Operation not permitted", _ROOT),
    ("Permission denied", _ROOT),
)


def advise(message: str) -> str | None:
    """What to do about `message`, or None when it is none of the known ones."""
    return next((advice for said, advice in ADVICE
                 if all(part in message for part in ((said,) if isinstance(said, str) else said))), None)


def explained(error: CniError) -> CniError:
    """`error` with what to do as its msg, where it is a failure of the link
    or the master (code 100 or 103) whose details hold a known message. Other
    codes say what to do already (11: try again later), or are an IPAM
    plugin's own, about its own state."""
    advice = advise(error.details) if error.code in (LINK_FAILURE, MASTER_FAILURE) else None
    return CniError(error.code, error.details, advice) if advice else error
