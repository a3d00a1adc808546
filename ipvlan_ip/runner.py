"""The runner: the one module that executes anything or changes the system.

It runs the builder's Commands, parses `ip -j` output, writes sysctls and
looks up interfaces inside a netns, and runs delegated (IPAM) plugins. It
spawns through `subprocess`, not `sh`: a runtime starts the plugin for every
container, and sh's import (asyncio, importlib.metadata) and its per-command
fork of the whole interpreter cost several times what the work does. With debug on,
every command is echoed to stderr as a shell line that can be pasted into a
root shell, then its exit status and duration; stdout is never touched, as it
belongs to the CNI result.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple

from .commands import NAMED_NETNS_DIRS, Command, LinkUp, Netns, Rename, SysctlWrite, ip, netns_at
from .errors import INTERFACE_EXISTS, INVALID_ENVIRONMENT, IPAM_FAILURE, LINK_FAILURE, TRY_AGAIN_LATER, CniError

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703      # ioctl on an nsfs file: which kind of namespace it is (Linux 4.11)


class CommandFailed(CniError):
    def __init__(self, cmd: Command, exit_code: int, stderr: str):
        super().__init__(LINK_FAILURE, f"`{shell_line(cmd)}` exited {exit_code}: {stderr.strip()}")
        self.command, self.exit_code, self.stderr = cmd, exit_code, stderr


class BatchFailure(namedtuple("BatchFailure", "line message")):
    """A batch line that failed, and what ip said about it."""
    __slots__ = ()


class Interface(namedtuple("Interface", "driver mac")):
    """An interface as DEL tells its own link from another plugin's: the
    driver, as `ethtool -i` names it ("ipvlan", "veth", "" when it has none),
    and the MAC address (an ipvlan link carries its master's)."""
    __slots__ = ()


class SeenNetns(namedtuple("SeenNetns", "inode path name pids host")):
    """A network namespace `ipvlan-ip show` found: `path` enters it, `name`
    is its /run/netns name ("" if none), `pids` the (pid, command) of the
    processes in it (none listed for the host's), `host` whether it is our own."""
    __slots__ = ()


class Echo:
    """Where debug lines go: stderr when debugging, and a log file when
    configured (runtimes usually drop a plugin's stderr)."""

    def __init__(self, debug: bool = False, log_file: str = "", container_id: str = ""):
        self.debug, self.log_file, self.container_id = debug, log_file, container_id

    @property
    def active(self) -> bool:
        return self.debug or bool(self.log_file)

    def __call__(self, text: str) -> None:
        if self.debug:
            print(text, file=sys.stderr, flush=True)
        if self.log_file:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            lines = "".join(f"{stamp} {self.container_id or '-'} {line}\n" for line in text.splitlines())
            # Non-blocking: a FIFO without a reader (or a full one) must not hang
            # the call; it goes on without the log, as for an unwritable file.
            with contextlib.suppress(OSError):
                fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC,
                             0o644)
                try:
                    os.write(fd, lines.encode())
                finally:
                    os.close(fd)


def shell_line(step: Command | SysctlWrite | Rename | LinkUp) -> str:
    """The step as a line for a root shell; batch input becomes a here-document."""
    import shlex  # only for the echo and error messages
    if isinstance(step, Rename):
        return shlex.join(ip(step.netns, "link", "set", "dev", step.old, "name", step.new))
    if isinstance(step, LinkUp):
        return shlex.join(ip(step.netns, "link", "set", "dev", step.name, "up"))
    if isinstance(step, SysctlWrite):
        enter = (("ip", "netns", "exec", step.netns.name) if step.netns.name
                 else ("nsenter", f"--net={step.netns.path}"))
        return shlex.join((*enter, "sysctl", "-qw", f"{step.key}={step.value}"))
    line = shlex.join(step.argv)
    if step.batch:
        line += " <<'EOF'\n" + "\n".join(step.batch) + "\nEOF"
    return line


class Runner:
    def __init__(self, echo: Echo | None = None, timeout: float = 30.0):
        self.echo = echo or Echo()
        self.timeout = timeout

    def run(self, cmd: Command) -> str:
        """stdout of the command; CommandFailed unless it succeeded or its
        stderr says the wanted state is already there (cmd.ok_if)."""
        code, out, err = self._execute(cmd)
        if code == 0 or any(text in err for text in cmd.ok_if):
            return out
        raise CommandFailed(cmd, code, err)

    def run_json(self, cmd: Command) -> list:
        """The JSON documents printed by an `ip -j` command (a batch prints one per show)."""
        return parse_json_stream(self.run(cmd))

    def run_batch(self, cmd: Command) -> tuple[list, list[BatchFailure]]:
        """An `ip -force -batch` command: the JSON it printed and the lines
        that failed. Failures of the command as a whole raise CommandFailed."""
        code, out, err = self._execute(cmd)
        failures = batch_failures(err, cmd.batch)
        if code != 0 and not failures:
            raise CommandFailed(cmd, code, err)
        return parse_json_stream(out), failures

    def run_batch_ok(self, cmd: Command) -> list:
        """A -force batch whose every line must succeed, or fail with one of
        cmd.ok_if (the state already there): the JSON it printed."""
        docs, failures = self.run_batch(cmd)
        for failure in failures:
            if not any(text in failure.message for text in cmd.ok_if):
                raise CniError(LINK_FAILURE, f"failed to `{failure.line}`: {failure.message}")
        return docs

    @contextlib.contextmanager
    def exclusive(self, path: str, create: bool = False, shared: bool = False):
        """Hold an exclusive flock on `path`: the container's netns file, or
        with `create` a lock file of our own (hostAccess locks a master so;
        `shared` lets the ADDs that only use the host's link run together).
        The spec forbids parallel operations on one container, but a runtime
        that retries DEL while its ADD still runs does it; the second then
        waits for the first instead of interleaving with it (ADD's link
        created after DEL's deletion, say). Nothing to hold when the netns
        is gone.

        A lock of our own has a turnstile beside it, PATH.gate: an exclusive
        waiter holds it while it waits, and a shared taker passes through it
        first. flock alone grants a shared lock while an exclusive one waits,
        so a stream of overlapping shared holders would starve the waiter."""
        deadline = time.monotonic() + self.timeout
        try:
            if create:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = _lock_file(path)
                gate = _lock_file(f"{path}.gate")
            else:
                fd, gate = open_namespace_file(path), -1
        except OSError:     # gone, or no netns: the operation itself says so
            yield
            return
        try:
            if gate >= 0:
                self._wait(gate, False, path, deadline)
                if shared:
                    os.close(gate)      # passed through
                    gate = -1
            self._wait(fd, shared, path, deadline)
            if gate >= 0:
                os.close(gate)
                gate = -1
            yield
        finally:
            os.close(fd)
            if gate >= 0:
                os.close(gate)

    def _wait(self, fd: int, shared: bool, path: str, deadline: float) -> None:
        if _try_flock(fd, shared):
            return
        self.echo(f"# waiting for another operation holding {path}")
        while not _try_flock(fd, shared):
            if time.monotonic() > deadline:
                raise CniError(TRY_AGAIN_LATER, f"another operation holding {path} "
                                                f"is still running after {self.timeout:g} s")
            time.sleep(0.05)

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
            with inside_netns(step.netns.path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                flags = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, name.ljust(IFREQ, b"\0")), 16)[0]
                fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", name, flags | IFF_UP).ljust(IFREQ, b"\0"))
        except OSError as e:
            self._outcome(1, start)
            raise CniError(LINK_FAILURE, f"failed to bring {step.name} up in {step.netns.path}: {e.strerror}") from e
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

    def write_sysctl(self, write: SysctlWrite) -> None:
        self._announce(write)
        start = time.monotonic()
        try:
            with inside_netns(write.netns.path), open(write.path, "w") as f:
                f.write(write.value)
        except OSError as e:
            self._outcome(1, start)
            raise CniError(LINK_FAILURE, f"failed to set {write.key} in {write.netns.path}: {e.strerror}") from e
        self._outcome(0, start)

    def interfaces(self, netns: Netns | None) -> dict[str, Interface]:
        """The interfaces in `netns` (None: the host's) by name, each with its
        driver and MAC, read from a thread inside it (no process: the same way
        in as the sysctl writes). A list, never a look-up by name: looking up
        a name that does not exist (if_nametoindex, or `ip link del dev NAME`)
        makes the kernel run `modprobe netdev-NAME`, which cost about 0.3 s a
        name in the test VM."""
        import socket
        where = "/proc/self/ns/net" if netns is None else netns.path
        try:
            with inside_netns(where), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                found = {n: _describe(sock, n) for _, n in socket.if_nameindex()}
        except OSError as e:
            if e.errno == errno.EINVAL:      # setns refuses a file that is no network namespace
                raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {where} is not a network namespace") from e
            raise CniError(LINK_FAILURE, f"failed to list the interfaces in {where}: {e}") from e
        listed = " ".join(f"{n} ({i.driver})" if i.driver else n for n, i in sorted(found.items()))
        self.echo(f"# interfaces in {where}: {listed}")
        return found

    def save_record(self, path: str, record: dict | None) -> None:
        """Write `record` as JSON to `path` (atomically: a reader sees the old
        or the new one), or remove the file for None."""
        if record is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Hidden: a record's name starts with its container ID's letter or digit.
        directory, name = os.path.split(path)
        tmp = f"{directory}/.{name}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)

    def load_record(self, path: str) -> dict | None:
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def load_records(self, directory: str) -> dict[str, dict]:
        """Every record below `directory`, by its path relative to it."""
        found = {}
        for parent, _, names in os.walk(directory):
            for name in names:
                if not name.startswith("."):    # a record being written (save_record)
                    path = os.path.join(parent, name)
                    record = self.load_record(path)
                    if record is not None:
                        found[os.path.relpath(path, directory)] = record
        return found

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

    def namespaces(self) -> list[SeenNetns]:
        """Every network namespace this host shows: our own (the host's), the
        named ones (/run/netns) and those of running processes, each once
        (by inode). A process's netns is entered through /proc/PID/ns/net.
        The host's is given as init's, a path that means the same to the
        reader as to us, and without its pids: that is nearly every process."""
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
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
                entry = seen(inode, f"/proc/{pid}/ns/net")
                if not entry.host:
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

    def host_mac(self, name: str) -> str:
        """The MAC address of interface `name` in our own netns, "" when there
        is none (sysfs: a look-up by name that loads no module)."""
        try:
            with open(f"/sys/class/net/{name}/address") as f:
                return f.read().strip()
        except OSError:
            return ""

    def run_plugin(self, path: str, env: dict, stdin: bytes) -> tuple[int, str]:
        """Run a delegated plugin with the CNI environment; its stderr goes to ours."""
        self.echo(f"# delegate: CNI_COMMAND={env.get('CNI_COMMAND')} {path}")
        code, out, _ = self._spawn((path,), path, stdin, IPAM_FAILURE, env=env, stderr=None)
        return code, out

    def _execute(self, cmd: Command) -> tuple[int, str, str]:
        self._announce(cmd)
        stdin = "".join(line + "\n" for line in cmd.batch).encode() if cmd.batch else b""
        return self._spawn(cmd.argv, f"`{shell_line(cmd)}`", stdin, LINK_FAILURE)

    def _spawn(self, argv, what: str, stdin: bytes, failure_code: int, env=None,
               stderr=subprocess.PIPE) -> tuple[int, str, str]:
        """Run argv to its end, or kill its process group after self.timeout
        seconds (an IPAM plugin may have children of its own)."""
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, start_new_session=True)
        except FileNotFoundError as e:
            raise CniError(failure_code, f"{argv[0]} is not installed") from e
        except OSError as e:
            raise CniError(failure_code, f"failed to run {what}: {e}") from e
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired as e:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()   # not communicate(): a child that left the group may hold the pipes open
            self._outcome(proc.returncode, start)
            raise CniError(TRY_AGAIN_LATER, f"{what} did not finish within {self.timeout:g} s and was killed") from e
        self._outcome(proc.returncode, start)
        if proc.returncode < 0:
            raise CniError(failure_code, f"{what} was killed by signal {-proc.returncode}")
        return proc.returncode, out.decode(errors="replace"), (err or b"").decode(errors="replace")

    def _announce(self, step) -> None:
        if self.echo.active:
            self.echo(f"# {step.why}\n{shell_line(step)}")

    def _outcome(self, code: int, start: float) -> None:
        if self.echo.active:
            self.echo(f"# exit {code} in {(time.monotonic() - start) * 1000:.1f} ms")


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


SIOCSIFNAME, SIOCETHTOOL, SIOCGIFHWADDR, ETHTOOL_GDRVINFO = 0x8923, 0x8946, 0x8927, 3
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
NETLINK_ROUTE, RTM_NEWNSID, RTM_GETNSID, NLM_F_REQUEST, NETNSA_NSID, NETNSA_FD = 0, 88, 90, 1, 1, 3
IFREQ = 40      # sizeof(struct ifreq) on 64-bit Linux


def _describe(sock, name: str) -> Interface:
    """`name`'s driver (ETHTOOL_GDRVINFO, as `ethtool -i`) and MAC
    (SIOCGIFHWADDR), asked through `sock` of the netns it lives in."""
    import array
    import struct
    # struct ethtool_drvinfo: the command word, then driver[32] and 160 bytes more.
    info = array.array("B", struct.pack("I", ETHTOOL_GDRVINFO) + bytes(192))
    try:
        fcntl.ioctl(sock, SIOCETHTOOL, struct.pack("16sP", name.encode(), info.buffer_info()[0]).ljust(IFREQ, b"\0"))
        driver = info.tobytes()[4:36].split(b"\0")[0].decode(errors="replace")
    except OSError:     # lo and a few others have no ethtool driver info
        driver = ""
    try:
        hw = fcntl.ioctl(sock, SIOCGIFHWADDR, name.encode().ljust(IFREQ, b"\0"))
        mac = hw[18:24].hex(":")   # after ifr_name[16] and sa_family
    except OSError:
        mac = ""
    return Interface(driver, mac)


def _netns_inode(path: str) -> int:
    """The inode in /proc/PID/ns/net's link text, net:[INODE]: no open needed."""
    return int(os.readlink(path)[5:-1])


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _lock_file(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_flock(fd: int, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def parse_json_stream(text: str) -> list:
    decoder, docs, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    if "\\'" in text:
        text = _json_apostrophes(text)
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


_ESCAPE = re.compile(r"\\(.)", re.S)


def _json_apostrophes(text: str) -> str:
    """iproute2 5.9 (Debian 11's; 6.1 no longer) writes an apostrophe in a name
    as \\', which JSON does not allow: read it as the apostrophe. Escapes are
    taken pairwise, so an escaped backslash before an apostrophe stays one."""
    return _ESCAPE.sub(lambda m: "'" if m.group(1) == "'" else m.group(0), text)


_FAILED = re.compile(r"^Command failed -:(\d+)$")


def batch_failures(stderr: str, lines: tuple[str, ...]) -> list[BatchFailure]:
    """iproute2 prints its complaint, then `Command failed -:N`, per failing line."""
    failures: list[BatchFailure] = []
    said: list[str] = []
    for text in stderr.splitlines():
        m = _FAILED.match(text.strip())
        if m:
            n = int(m.group(1))
            failures.append(BatchFailure(lines[n - 1] if 0 < n <= len(lines) else "?", " ".join(said)))
            said = []
        elif text.strip():
            said.append(text.strip())
    return failures


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
