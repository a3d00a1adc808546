"""In-process calls into the kernel, each from a thread inside a network
namespace (what Go's netns.Do does): ADD's rename and bringing up of the
link and its sysctls, the interfaces of a netns as rtnetlink lists them
(rtnetlink.py), the removal of a VLAN link the plugin made, and the checks that
CNI_NETNS is a network namespace at all. No
process is spawned for any of them: each is one or two system calls, where
an `ip` would cost a process start.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time

from ..commands import LinkDelete, LinkUp, Netns, Rename, SysctlWrite, netns_at
from ..errors import INTERFACE_EXISTS, INVALID_ENVIRONMENT, LINK_FAILURE, TRY_AGAIN_LATER, CniError
from .echo import Echoed
from .rtnetlink import NETLINK_ROUTE, NLM_F_REQUEST, Address, DumpFailed, Link, addressed, addresses, links, on_link

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703      # ioctl on an nsfs file: which kind of namespace it is (Linux 4.11)


class Kernel(Echoed):
    """The Runner's in-process kernel calls (runner.py composes them)."""

    def rename_link(self, step: Rename) -> None:
        """Rename a link from a thread inside its netns (SIOCSIFNAME): one
        system call, and a failure stops ADD before anything else runs."""
        import socket
        import struct
        self._announce(step)
        start = time.monotonic()
        request = struct.pack("16s16s", step.old.encode(), step.new.encode()).ljust(IFREQ, b"\0")
        try:
            with inside_netns(step.netns.path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                fcntl.ioctl(sock, SIOCSIFNAME, request)
        except OSError as e:
            self._outcome(1, start)
            if e.errno == errno.EEXIST:
                raise CniError(INTERFACE_EXISTS, f"failed to rename {step.old} to {step.new} in {step.netns.path}: "
                               f"another interface took the name {step.new!r} meanwhile; it was left alone") from e
            raise CniError(LINK_FAILURE, f"failed to rename {step.old} to {step.new} in {step.netns.path}: "
                           f"{e.strerror}") from e
        self._outcome(0, start)

    def link_up(self, step: LinkUp) -> None:
        """Bring a link up from a thread inside its netns (SIOCSIFFLAGS)."""
        import socket
        import struct
        self._announce(step)
        start = time.monotonic()
        name = step.name.encode()
        try:
            with _entered(step.netns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                flags = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, name.ljust(IFREQ, b"\0")), 16)[0]
                fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", name, flags | IFF_UP).ljust(IFREQ, b"\0"))
        except OSError as e:
            self._outcome(1, start)
            raise CniError(LINK_FAILURE, f"failed to bring {step.name} up in {_where(step.netns)}: {e.strerror}") from e
        self._outcome(0, start)

    def netns(self, path: str) -> Netns:
        """CNI_NETNS as a Netns, once the file is known to be a network
        namespace: anything else (a FIFO, a socket, a device, a directory, a
        plain file) is refused with code 4 before `ip` or nsenter open it,
        since opening a FIFO would wait for a writer that never comes."""
        try:
            fd = open_namespace_file(path)
        except FileNotFoundError as e:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} does not exist") from e
        except OSError as e:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} {e.strerror}") from e
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:     # ENOTTY: a plain file, not one of nsfs
            kind = 0
        finally:
            os.close(fd)
        if kind != CLONE_NEWNET:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {path} is not a network namespace")
        return netns_at(path)

    def write_sysctls(self, writes: list[SysctlWrite]) -> None:
        """Set each, in order, from one entry into their netns (each setns
        costs more than a write; the netns is the first's, and every write
        names the same)."""
        start = time.monotonic()
        try:
            with _entered(writes[0].netns):
                for write in writes:
                    self._announce(write)
                    self._write_sysctl(write)
                    self._outcome(0, start)
                    start = time.monotonic()
        except CniError:
            self._outcome(1, start)
            raise
        except OSError as e:
            self._outcome(1, start)
            raise CniError(LINK_FAILURE, f"failed to enter {_where(writes[0].netns)}: {e.strerror}") from e

    def _write_sysctl(self, write: SysctlWrite) -> None:
        try:
            with open(write.path, "w") as f:
                f.write(write.value)
        except OSError as e:
            if write.missing_ok and e.errno == errno.ENOENT:
                self.echo(f"# {write.key} does not exist in this kernel: nothing to set")
                return
            raise CniError(LINK_FAILURE, f"failed to set {write.key} in {_where(write.netns)}: {e.strerror}") from e

    def host_sysctl(self, key: str) -> str | None:
        """A sysctl of the host's (the plugin's own netns), `key` with slashes; None where there is none."""
        try:
            with open(f"/proc/sys/{key}") as f:
                return f.read().strip()
        except OSError:
            return None

    def interfaces(self, netns: Netns | None) -> dict[str, Link]:
        """The interfaces in `netns` (None: the host's) by name, as
        rtnetlink dumps them (the kind, MAC and alias DEL tells its own link
        by), read from a thread inside it: no process, the same way in as
        the sysctl writes. A list, never a look-up by name: looking up a
        name that does not exist (if_nametoindex, or `ip link del dev NAME`)
        makes the kernel run `modprobe netdev-NAME`, which cost about 0.3 s
        a name in the test VM."""
        where = "/proc/self/ns/net" if netns is None else netns.path
        try:
            found = {link.name: link for link in self.links(where)}
        except OSError as e:
            if e.errno == errno.EINVAL:      # setns refuses a file that is no network namespace
                raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {where} is not a network namespace") from e
            raise CniError(LINK_FAILURE, f"failed to list the interfaces in {where}: {e}") from e
        listed = " ".join(f"{n} ({i.kind})" if i.kind else n for n, i in sorted(found.items()))
        self.echo(f"# interfaces in {where}: {listed}")
        return found

    def links(self, where: str) -> list[Link]:
        """Every interface of the netns at `where`, from rtnetlink (OSError when it cannot be entered)."""
        import socket
        with inside_netns(where), socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
            return _whole(links, sock, f"the interfaces in {where}")

    def addressed(self) -> set[int]:
        """The ifindex of each of the host's interfaces that the node gave an address of global scope."""
        return self._host_dump(addressed, "the host's addresses")

    def host_addresses(self) -> list[Address]:
        """Every address the host holds, on any of its interfaces."""
        return self._host_dump(addresses, "the host's addresses")

    def on_link(self) -> list[tuple[int, str]]:
        """(ifindex, prefix) of each of the host's main-table routes with no gateway."""
        return self._host_dump(on_link, "the host's routes")

    def _host_dump(self, dump, what: str):
        import socket
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
            return _whole(dump, sock, what)

    def delete_link(self, step: LinkDelete) -> None:
        """Remove a link of the host's over rtnetlink (RTM_DELLINK), by the
        ifindex its caller read under the lock that decided it: one already
        gone is fine."""
        import socket
        import struct
        self._announce(step)
        start = time.monotonic()
        body = struct.pack("BxHiII", 0, 0, step.index, 0, 0)
        request = struct.pack("IHHII", 16 + len(body), RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
                sock.send(request)
                error = -struct.unpack_from("i", sock.recv(4096), 16)[0]
        except OSError as e:
            error = e.errno or errno.EIO
        self._outcome(1 if error and error != errno.ENODEV else 0, start)
        if error and error != errno.ENODEV:
            raise CniError(LINK_FAILURE, f"failed to remove the link {step.name}: {os.strerror(error)}")

    def vlans(self) -> dict[str, tuple[int, str]]:
        """The host's VLAN links: name -> (id, parent), as the 8021q driver
        lists them (no file when it is not loaded, so no VLAN link)."""
        try:
            with open("/proc/net/vlan/config") as f:
                rows = [line.split("|") for line in f.read().splitlines()[2:]]
        except OSError:
            return {}
        return {r[0].strip(): (int(r[1]), r[2].strip()) for r in rows if len(r) == 3}

    def host_index(self, name: str) -> int:
        """The ifindex of interface `name` in our own netns, 0 when there is none (sysfs, as host_mac)."""
        try:
            with open(f"/sys/class/net/{name}/ifindex") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def host_mac(self, name: str) -> str:
        """The MAC address of interface `name` in our own netns, "" when there
        is none (sysfs: a look-up by name that loads no module)."""
        try:
            with open(f"/sys/class/net/{name}/address") as f:
                return f.read().strip()
        except OSError:
            return ""

    def listening(self, path: str) -> bool:
        """Whether a server accepts connections on the unix socket `path`
        (a socket file left by a daemon that died accepts none)."""
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(path)
            except OSError:
                return False
        return True


def _whole(dump, sock, what: str):
    """A dump's answer, or a call that fails: the lists decide what stands on
    a link, and one read short would say that nothing does."""
    try:
        return dump(sock)
    except DumpFailed as e:
        raise CniError(TRY_AGAIN_LATER, f"could not read {what} whole ({e}); nothing was decided on a "
                       "partial list: try again") from e


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def open_namespace_file(path: str) -> int:
    """A read-only descriptor of `path`, which must be a regular file, as a
    namespace file is. Anything else is refused (EINVAL) before it is opened:
    opening a FIFO blocks until a writer comes, and a device may do anything.
    O_NONBLOCK covers the race of the file being replaced meanwhile."""
    mode = os.stat(path).st_mode
    for test, kind in _KINDS:
        if test(mode):
            raise OSError(errno.EINVAL, f"is {kind}, not a network namespace")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "is not a regular file, so not a network namespace")
    return fd


SIOCSIFNAME = 0x8923
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
RTM_DELLINK, NLM_F_ACK = 17, 0x4
IFREQ = 40      # sizeof(struct ifreq) on 64-bit Linux


def _entered(netns: Netns | None):
    """Inside `netns`; None is the plugin's own (the host's), where nothing is entered."""
    return contextlib.nullcontext() if netns is None else inside_netns(netns.path)


def _where(netns: Netns | None) -> str:
    return "the host's netns" if netns is None else netns.path


@contextlib.contextmanager
def inside_netns(path: str):
    """Switch this thread into the netns at `path` and back (what Go's
    netns.Do does): /proc/sys/net shows the netns of the thread that opens it,
    and a socket belongs to the netns of the thread that makes it."""
    setns = _setns()
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = open_namespace_file(path)
        try:
            setns(target, CLONE_NEWNET)
        except OSError as e:
            raise OSError(e.errno, f"cannot enter {path}: {e.strerror}") from e
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                setns(own, CLONE_NEWNET)
            except OSError:
                os._exit(70)    # going on in the wrong netns would misconfigure the host
    finally:
        os.close(own)


def _setns():
    """os.setns (Python 3.12 and later), else libc's through ctypes."""
    if hasattr(os, "setns"):
        return os.setns
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def setns(fd: int, nstype: int) -> None:
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    return setns
