"""The plugin's state on the node, under /run/ipvlan-ip: the records of
what hostAccess added on the host (host_access.py), and the flocks that keep
calls from interleaving: one on the container's netns file for every
operation, and lock files of our own (a master's, for its host link and its
dhcp leases).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import zlib
from collections import namedtuple

from ..errors import IO_FAILURE, TRY_AGAIN_LATER, CniError
from .echo import Echo
from .kernel import open_namespace_file

# The lock files of our own (the netns files are the others): a master's, for
# its host link (host_access.py) and its dhcp leases (dhcp.py), a VLAN link's (vlan.py).
LOCKS = "/run/ipvlan-ip/locks"
# How long a call waits its turn behind other calls' bounded work (a burst of ADDs on one
# network, master or VLAN link), in timeouts: 4 x 30 s is the kubelet's own 2 minutes for a
# whole sandbox (docs/failures.md). A holder that hangs is killed by its own timeout first.
TURN = 4


class LockUnavailable(CniError):
    """A lock file of ours that could not be opened (/run full, out of file
    descriptors): the call fails rather than go on unguarded. DEL, which
    must complete, skips the step that needed it and says so."""

    def __init__(self, path: str, error: OSError):
        super().__init__(TRY_AGAIN_LATER, f"could not open the lock file {path}: {error.strerror}; nothing was "
                         "done unguarded: try again (is /run full?)")


class RecordUnreadable(CniError):
    """A record of ours that cannot be read (written atomically, so only a
    hand or a failing disk makes one): what it lists cannot be taken back.
    DEL goes on past it and says so."""

    def __init__(self, path: str, error: Exception):
        super().__init__(IO_FAILURE, f"the record {path} cannot be read ({error}); what it lists on the host "
                         "was not taken back: see it, remove what it names by hand, then the file")


class State:
    """The Runner's records and locks (runner.py composes them)."""
    echo: Echo
    timeout: float
    # The descriptors of the locks held now: each `ip` the runner starts holds them too (runner.py says why).
    held: tuple[int, ...] = ()

    @contextlib.contextmanager
    def exclusive(self, path: str, create: bool = False, shared: bool = False, patience: float = 1.0):
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
        so a stream of overlapping shared holders would starve the waiter.
        A waiter gives up after `patience` times the call's timeout."""
        deadline = time.monotonic() + self.timeout * patience
        gate = -1
        if create:
            path = bounded(path)
            try:
                make_dirs(os.path.dirname(path))
                gate = _lock_file(f"{path}.gate")
                fd = _lock_file(path)
            except OSError as e:
                if gate >= 0:
                    os.close(gate)
                raise LockUnavailable(path, e) from e
        else:
            try:
                fd = open_namespace_file(path)
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
            self.held = (*self.held, fd)
            yield
        finally:
            self.held = tuple(held for held in self.held if held != fd)
            os.close(fd)
            if gate >= 0:
                os.close(gate)

    def _wait(self, fd: int, shared: bool, path: str, deadline: float) -> None:
        if _try_flock(fd, shared):
            return
        self.echo(f"# waiting for another operation holding {path}")
        start = time.monotonic()
        if not _flock_until(fd, shared, deadline):
            raise CniError(TRY_AGAIN_LATER, f"another operation holding {path} "
                                            f"is still running after {time.monotonic() - start:.0f} s")

    def save_record(self, path: str, record: dict | None) -> None:
        """Write `record` as JSON to `path` (atomically: a reader sees the old
        or the new one), or remove the file for None."""
        if record is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        make_dirs(os.path.dirname(path))
        # Hidden: a record's name starts with its container ID's letter or digit.
        directory, name = os.path.split(path)
        tmp = f"{directory}/.{name}.{os.getpid()}"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644),
                       "w") as f:
            json.dump(record, f)
        os.replace(tmp, path)

    def load_record(self, path: str) -> dict | None:
        try:
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)) as f:
                record = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RecordUnreadable(path, e) from e
        if not isinstance(record, dict):
            raise RecordUnreadable(path, ValueError("not a JSON object"))
        return record

    def writable(self, directory: str) -> bool:
        """Whether this process may make files in `directory` (doctor)."""
        return os.access(directory, os.W_OK | os.X_OK)

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


_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")     # the schema's pattern for "name"


def network_key(network: str) -> str:
    """The network's name as a file name of the plugin's (a record dir, a lock)."""
    # A config without a name (0.x allows it) gets one no network name can be: names start alnum.
    if not network:
        return "-unnamed"
    # A name the schema refuses comes only with a DEL (which completes) and never had a record: it must not
    # become a path outside the plugin's dirs (../../etc).
    return network if _NETWORK.fullmatch(network) else f"-{zlib.crc32(network.encode()):08x}"


def network_dir(root: str, network: str) -> str:
    """Where a kind of record kept per attachment (hostAccess's, vlan's) has a network's."""
    return f"{root}/{network_key(network)}"


def record_path(root: str, network: str, container_id: str, ifname: str) -> str:
    # ':' is in neither a container ID nor an interface name.
    return f"{network_dir(root, network)}/{container_id}:{ifname}"


class Ledger(namedtuple("Ledger", "root what lock")):
    """One kind of host state kept per attachment: hostAccess's routes, a
    VLAN link's users, proxyNeighbors' entries. Each attachment's record
    lives under `root` (NETWORK/CONTAINERID:IFNAME) and names what it holds;
    `lock(record)` is the lock that guards the host state it names, and
    `what` the capability's key. A capability writes its record before it
    acts, and trims it to what it made after a failure; the rules of
    reading one back, taking an item over from another, removing one and
    collecting the gone are written here once."""
    __slots__ = ()

    def path(self, network: str, container_id: str, ifname: str) -> str:
        return record_path(self.root, network, container_id, ifname)

    def of(self, call) -> str:
        """The record of the attachment a call serves."""
        return self.path(call.conf.name, call.env.container_id, call.env.ifname)

    def in_use(self, run, field: str) -> set:
        """What the records of every network name in `field` (a shared link, say)."""
        return {held[field] for held in run.load_records(self.root).values()}

    def take_over(self, run, own: str, claimed, forget) -> list:
        """Under the lock the caller holds: the items that another
        attachment's record still claims (`claimed(record)`) are this
        attachment's now (the kernel gave it the address), and that record
        forgets them (`forget(record, items)`), so that its DEL or GC takes
        nothing from under this one. The items taken over."""
        taken: list = []
        for name, held in run.load_records(self.root).items():
            path = f"{self.root}/{name}"
            items = [] if path == own else claimed(held)
            if items:
                run.echo(f"# {self.what}: {', '.join(items)} is left from {name}, which no longer holds it")
                run.save_record(path, forget(held, items))
                taken += items
        return taken

    def detach(self, run, path: str, undo=None, then=None) -> None:
        """Take back what the record at `path` lists (nothing, and no lock,
        when there is none), under its lock: the record is read again under
        it (another call may have taken an item over meanwhile), undo(record)
        takes back what it lists, the record goes, and then(record) runs
        (a shared link collected once no record names it)."""
        held = run.load_record(path)
        if held is None:
            return
        with run.exclusive(self.lock(held), create=True):
            held = run.load_record(path)
            if held is None:
                return
            if undo:
                undo(held)
            run.save_record(path, None)
            if then:
                then(held)

    def collect(self, run, network: str, valid: set[tuple[str, str]], undo) -> list[CniError]:
        """GC's first step: undo(container_id, ifname) for each record of
        this network's that is not among the `valid` attachments. Goes on
        past one that fails; the failures are returned."""
        failed = []
        for name in run.load_records(network_dir(self.root, network)):
            container_id, _, ifname = name.partition(":")
            if (container_id, ifname) not in valid:
                run.echo(f"# {name} is not a valid attachment of {network}: {self.what} takes back what it recorded")
                try:
                    undo(container_id, ifname)
                except CniError as e:
                    failed.append(e.wrap(f"{self.what}: taking back what {name} recorded"))
        return failed


def make_dirs(path: str) -> None:
    """`path` and its missing parents, 0755 whatever the umask (os.makedirs applies its mode to the last
    alone, and through the umask): a dir of ours that others could write would let them plant records."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):      # another call made it meanwhile
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)


# NAME_MAX, less the turnstile's ".gate".
_LONGEST = 255 - len(".gate")


def bounded(path: str) -> str:
    """A lock file's path with a name the file system takes: a network's name may be 253 characters, and
    `ipam-NAME.lock.gate` would then be too long. Shortened the same way by every call."""
    directory, name = os.path.split(path)
    if len(name.encode()) <= _LONGEST:
        return path
    return f"{directory}/{name[:200]}-{zlib.crc32(name.encode()):08x}.lock"


def _lock_file(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


class _Late(Exception):
    pass


def _late(signum, frame):
    raise _Late


def _flock_until(fd: int, shared: bool, deadline: float) -> bool:
    """Wait in flock itself until `deadline` (a timer's signal ends the
    wait): a waiter that polled would wake many times a second, and a burst
    of ADDs is many waiters at once. Polls where no signal can be had (not
    the main thread)."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        while not _try_flock(fd, shared):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    before = signal.signal(signal.SIGALRM, _late)
    try:
        signal.setitimer(signal.ITIMER_REAL, remaining)
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        return True
    except _Late:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _try_flock(fd: int, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
