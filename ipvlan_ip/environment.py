"""The CNI_* environment variables: read, validated, typed (spec section 2)."""
from __future__ import annotations

import os
import re
from collections import namedtuple

from .errors import INVALID_CONFIG, INVALID_ENVIRONMENT, CniError

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# Which variables each command cannot do without. DEL may come without a
# netns: the runtime may have lost it, and DEL must still release the IP.
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "VERSION": (),
    "STATUS": (),
    "GC": (),
}

_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
IFNAMSIZ = 16  # the kernel's limit, counting the terminating NUL
NAME_MAX = 255  # the longest file name: a record is named CONTAINERID:IFNAME (state.py)
# The longest name state.py gives a record's file: its temporary one, .CONTAINERID:IFNAME.PID (pid_max is 2**22).
_RECORD_FILE = ".{}:{}.4194304"


class CniEnv(namedtuple("CniEnv", "command container_id netns ifname args path raw refused",
                        defaults=("", "", "", {}, (), {}, ""))):
    """The request: `args` is CNI_ARGS as a dict, `path` CNI_PATH split,
    `raw` every CNI_* variable as given (passed on to the IPAM plugin);
    `refused` why ADD would refuse this container ID or interface name, for
    a DEL, which must still complete (no ADD with them made anything). A
    namedtuple, as in commands.py, to keep dataclasses' import off every call;
    the shared empty defaults are never changed."""
    __slots__ = ()


def interface_name_problem(name: str) -> str | None:
    """Why the kernel would refuse `name` as an interface name, or None."""
    if not name:
        return "is empty"
    if len(name.encode()) >= IFNAMSIZ:
        return f"is longer than {IFNAMSIZ - 1} bytes"
    if name in (".", ".."):
        return "cannot be . or .."
    if any(c in "/:" or c.isspace() for c in name):
        return "contains / or : or whitespace"
    if "%" in name:
        return "holds '%', which the kernel reads as a name template (net%d becomes net0)"
    return None


def batch_problem(name: str) -> str | None:
    """The kernel takes these, but the name must also pass through iproute2's
    batch input, which cuts a line at '#', joins a line ending in '\\' to the
    next, and has no escape for a word holding both kinds of quote."""
    if "#" in name:
        return "holds '#', which iproute2's batch input reads as a comment"
    if "'" in name and '"' in name:
        return "holds both ' and \", which iproute2's batch input cannot quote"
    if name.endswith("\\"):
        return "ends in '\\', which iproute2's batch input reads as a line continuation"
    return None


def parse_cni_args(text: str) -> dict[str, str]:
    """`K=V;K=V` into a dict. Unknown keys are kept: Multus always sends
    `IgnoreUnknown=true;K8S_POD_NAME=…` and a plugin must not choke on them."""
    pairs = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep and key:
            pairs[key.strip()] = value.strip()
    return pairs


def read_environment(environ=None) -> CniEnv:
    environ = os.environ if environ is None else environ
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT,
                       f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    missing = [v for v in _REQUIRED[command] if not environ.get(v)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT,
                       f"{command} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                       "missing or empty")
    env = CniEnv(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=parse_cni_args(environ.get("CNI_ARGS", "")),
        path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
        raw={k: v for k, v in environ.items() if k.startswith("CNI_")},
    )
    problem = _REQUIRED[command] and attachment_problem(env)
    if problem and command == "DEL":
        return env._replace(refused=problem)
    if problem:
        raise CniError(INVALID_ENVIRONMENT, problem)
    return env


def attachment_problem(env: CniEnv) -> str:
    if not _CONTAINER_ID.fullmatch(env.container_id):
        return (f"CNI_CONTAINERID {env.container_id!r} must start with a letter or digit "
                "and hold only letters, digits, '_', '.' and '-'")
    problem = interface_name_problem(env.ifname) or batch_problem(env.ifname)
    if problem:
        return f"CNI_IFNAME {env.ifname!r} {problem}"
    if len(_RECORD_FILE.format(env.container_id, env.ifname)) > NAME_MAX:
        longest = NAME_MAX - len(_RECORD_FILE.format("", env.ifname))
        return (f"CNI_CONTAINERID is {len(env.container_id)} characters long, and with CNI_IFNAME "
                f"{env.ifname!r} at most {longest} fit the name of the record the plugin keeps of the attachment")
    if env.netns and not env.netns.startswith("/"):
        return f"CNI_NETNS {env.netns!r} is not an absolute path"
    return ""


def find_plugin(plugin_type: str, paths: tuple[str, ...]) -> str:
    if not paths:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_PATH is empty, so plugin {plugin_type!r} cannot be found")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_CONFIG, f"could not find plugin {plugin_type!r} in CNI_PATH {':'.join(paths)}: "
                   "install it into one of those dirs (Debian's containernetworking-plugins puts the reference "
                   "plugins in /usr/lib/cni), or fix \"type\"")
