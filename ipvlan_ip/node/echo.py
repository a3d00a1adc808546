"""The debug echo: every step the plugin takes, as a line for a root shell.

With debug on (or a logFile), each `ip` command, sysctl write, rename,
link brought up and VLAN link removed is echoed before it runs as a shell line that can be pasted
into a root shell, then its exit status and duration; the steps taken in-process (all but `ip` and
the IPAM plugin) say so, since no process runs for them. It goes to stderr and
the log file, never stdout, which belongs to the CNI result. `plan` prints the
same lines (announced) for the steps it would take.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

from ..commands import Command, LinkDelete, LinkUp, Rename, SysctlWrite, ip

# Where a config's logFile may be: a NetworkAttachmentDefinition is often
# writable by a namespace's users, and the plugin runs as root, so the
# directory is the node owner's choice (IPVLAN_IP_LOG_DIR in the runtime's
# environment), never the config's.
LOG_DIR = "/var/log/ipvlan-ip"


def log_dir(environ) -> str:
    return environ.get("IPVLAN_IP_LOG_DIR") or LOG_DIR


def log_problem(log_file: str, directory: str) -> str | None:
    """Why `log_file` may not be written, or None: it must be a file
    directly in `directory` (no .., no subdirectory)."""
    parent, name = os.path.split(os.path.normpath(log_file))
    if parent != os.path.normpath(directory) or name in ("", ".", ".."):
        return (f"logFile {log_file!r} is not a file directly in {directory}, the directory this node allows logs "
                "in (its owner sets another with IPVLAN_IP_LOG_DIR in the runtime's environment)")
    return None


class Echo:
    """Where debug lines go: stderr when debugging, and a log file when
    configured (runtimes usually drop a plugin's stderr): a file directly in
    the log directory, opened without following a symlink, made private."""

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
            directory, name = os.path.split(self.log_file)
            with contextlib.suppress(OSError):
                os.makedirs(directory, 0o700, exist_ok=True)
                parent = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600, dir_fd=parent)
                finally:
                    os.close(parent)
                try:
                    os.write(fd, lines.encode())
                finally:
                    os.close(fd)


# A step the plugin takes in-process (a write under /proc/sys, an ioctl) starts no process: its line
# is what a person would type for the same change, and says so.
IN_PROCESS = " (in-process; as a shell command:)"


def announced(step: Command | SysctlWrite | Rename | LinkUp | LinkDelete) -> str:
    """What the echo and `plan` print for a step: why, then the shell line."""
    return f"# {step.why}{'' if isinstance(step, Command) else IN_PROCESS}\n{shell_line(step)}"


def shell_line(step: Command | SysctlWrite | Rename | LinkUp | LinkDelete) -> str:
    """The step as a line for a root shell; batch input becomes a here-document."""
    import shlex  # only for the echo and error messages
    if isinstance(step, Rename):
        return shlex.join(ip(step.netns, "link", "set", "dev", step.old, "name", step.new))
    if isinstance(step, LinkDelete):
        return shlex.join(("ip", "link", "del", "dev", step.name))
    if isinstance(step, LinkUp):
        return shlex.join(ip(step.netns, "link", "set", "dev", step.name, "up"))
    if isinstance(step, SysctlWrite):
        enter = (() if step.netns is None else ("ip", "netns", "exec", step.netns.name) if step.netns.name
                 else ("nsenter", f"--net={step.netns.path}"))
        return shlex.join((*enter, "sysctl", "-qw", f"{step.key}={step.value}"))
    line = shlex.join(step.argv)
    if step.batch:
        line += " <<'EOF'\n" + "\n".join(step.batch) + "\nEOF"
    return line


class Echoed:
    """What runs steps: says each before it runs (`_announce`) and how it
    went (`_outcome`), to `self.echo`."""
    echo: Echo

    def _announce(self, step) -> None:
        if self.echo.active:
            self.echo(announced(step))

    def _outcome(self, code: int, start: float) -> None:
        if self.echo.active:
            self.echo(f"# exit {code} in {(time.monotonic() - start) * 1000:.1f} ms")
