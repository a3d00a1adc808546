"""What `ipvlan-ip show` reads of the node (inventory.py makes sense of it):
every network namespace, the ids one netns gives another (what a link's
link-netnsid refers to), and the files of the IPAM plugins and the runtimes.
"""
from __future__ import annotations

import contextlib
import os
from collections import namedtuple

from ..commands import NAMED_NETNS_DIRS
from .kernel import inside_netns, open_namespace_file

NETLINK_ROUTE, RTM_NEWNSID, RTM_GETNSID, NLM_F_REQUEST, NETNSA_NSID, NETNSA_FD = 0, 88, 90, 1, 1, 3


class SeenNetns(namedtuple("SeenNetns", "inode path name pids host")):
    """A network namespace `ipvlan-ip show` found: `path` enters it, `name`
    is its /run/netns name ("" if none), `pids` the (pid, command) of the
    processes in it (none listed for the host's), `host` whether it is our own."""
    __slots__ = ()


class Survey:
    """The Runner's reads for show (runner.py composes them)."""

    def namespaces(self, commands: bool = True) -> list[SeenNetns]:
        """Every network namespace this host shows: our own (the host's), the
        named ones (/run/netns) and those of running processes, each once
        (by inode). A process's netns is entered through /proc/PID/ns/net.
        The host's is given as init's, a path that means the same to the
        reader as to us, and without its pids: that is nearly every process.
        Without `commands` (the plugin's own reads), no process is named."""
        own = _netns_inode("/proc/self/ns/net")
        try:
            init_shares_it = _netns_inode("/proc/1/ns/net") == own
        except OSError:
            init_shares_it = False
        found = {own: SeenNetns(own, "/proc/1/ns/net" if init_shares_it else "/proc/self/ns/net", "", [], True)}

        def seen(inode: int, path: str) -> SeenNetns:
            if inode not in found:
                found[inode] = SeenNetns(inode, path, "", [], False)
            return found[inode]
        for directory in NAMED_NETNS_DIRS[:1]:
            for name in sorted(_listdir(directory)):
                path = f"{directory}/{name}"
                with contextlib.suppress(OSError):
                    entry = seen(os.stat(path).st_ino, path)
                    if not entry.name and not entry.host:
                        found[entry.inode] = entry._replace(path=path, name=name)
        for pid in sorted(int(p) for p in _listdir("/proc") if p.isdigit()):
            with contextlib.suppress(OSError):
                inode = _netns_inode(f"/proc/{pid}/ns/net")
                entry = seen(inode, f"/proc/{pid}/ns/net")
                if commands and not entry.host:
                    with open(f"/proc/{pid}/comm") as f:
                        comm = f.read().strip()
                    entry.pids.append((pid, comm))
        return list(found.values())

    def nsid(self, inside: str, of: str) -> int | None:
        """The id the netns at `inside` gives the netns at `of` (what a
        link's link-netnsid refers to), or None when it gives it none:
        RTM_GETNSID over rtnetlink, from a thread inside `inside`."""
        import socket
        import struct
        target = open_namespace_file(of)
        try:
            attr = struct.pack("HHI", 8, NETNSA_FD, target)
            body = struct.pack("B3x", socket.AF_UNSPEC) + attr
            request = struct.pack("IHHII", 16 + len(body), RTM_GETNSID, NLM_F_REQUEST, 1, 0) + body
            with inside_netns(inside), socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
                sock.send(request)
                answer = sock.recv(4096)
        finally:
            os.close(target)
        kind = struct.unpack_from("H", answer, 4)[0]
        pos = 16 + 4
        while kind == RTM_NEWNSID and pos + 4 <= len(answer):
            length, attr_type = struct.unpack_from("HH", answer, pos)
            if attr_type == NETNSA_NSID:
                value = struct.unpack_from("i", answer, pos + 4)[0]
                return None if value < 0 else value
            pos += (length + 3) & ~3
        return None

    def command_lines(self) -> list[list[str]]:
        """The argv of every running process (doctor looks for the dhcp daemon's flags)."""
        found = []
        for pid in _listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")[:-1]
                    if argv:
                        found.append([a.decode(errors="replace") for a in argv])
        return found

    def read_files(self, directory: str, depth: int) -> dict[str, str]:
        """The text of each regular file `depth` levels below `directory`, by
        its path relative to it (host-local's reservations, libcni's cache)."""
        found: dict[str, str] = {}

        def walk(path: str, relative: str, level: int) -> None:
            for name in sorted(_listdir(path)):
                full, rel = os.path.join(path, name), os.path.join(relative, name)
                if level < depth:
                    if os.path.isdir(full):
                        walk(full, rel, level + 1)
                elif os.path.isfile(full):
                    with contextlib.suppress(OSError, UnicodeDecodeError), open(full) as f:
                        found[rel] = f.read()
        walk(directory, "", 1)
        return found


def _netns_inode(path: str) -> int:
    """The inode in /proc/PID/ns/net's link text, net:[INODE]: no open needed."""
    return int(os.readlink(path)[5:-1])


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
