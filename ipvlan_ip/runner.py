"""The runner: the one module that executes anything or changes the system.

It runs the builder's Commands through `sh`, parses `ip -j` output, writes
sysctls inside a netns, and runs delegated (IPAM) plugins. With debug on,
every command is echoed to stderr as a shell line that can be pasted into a
root shell, then its exit status and duration; stdout is never touched, as it
belongs to the CNI result.
"""

import contextlib
import ctypes
import fcntl
import json
import os
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass

from .commands import Command, SysctlWrite
from .errors import CniError, LINK_FAILURE, TRY_AGAIN_LATER, IPAM_FAILURE

CLONE_NEWNET = 0x40000000


class CommandFailed(CniError):
    def __init__(self, cmd: Command, exit_code: int, stderr: str):
        super().__init__(LINK_FAILURE, f"`{shell_line(cmd)}` exited {exit_code}: {stderr.strip()}")
        self.command, self.exit_code, self.stderr = cmd, exit_code, stderr


@dataclass(frozen=True)
class BatchFailure:
    line: str       # the batch line that failed
    message: str    # what ip said about it


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
            with contextlib.suppress(OSError), open(self.log_file, "a") as log:
                for line in text.splitlines():
                    log.write(f"{stamp} {self.container_id or '-'} {line}\n")


def shell_line(step: Command | SysctlWrite) -> str:
    """The step as a line for a root shell; batch input becomes a here-document."""
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

    @contextlib.contextmanager
    def exclusive(self, netns_path: str):
        """Hold an exclusive flock on the container's netns file. The spec
        forbids parallel operations on one container, but a runtime that
        retries DEL while its ADD still runs does it; the second then waits
        for the first instead of interleaving with it (ADD's link created
        after DEL's deletion, say). Nothing to hold when the netns is gone."""
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            yield
            return
        try:
            if not _try_flock(fd):
                self.echo(f"# waiting for another operation on the container in {netns_path}")
                deadline = time.monotonic() + self.timeout
                while not _try_flock(fd):
                    if time.monotonic() > deadline:
                        raise CniError(TRY_AGAIN_LATER, f"another operation on the container in {netns_path} "
                                                        f"is still running after {self.timeout:g} s")
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def write_sysctl(self, write: SysctlWrite) -> None:
        self._announce(write)
        start = time.monotonic()
        try:
            with inside_netns(write.netns.path), open(write.path, "w") as f:
                f.write(write.value)
        except OSError as e:
            self._outcome(1, start)
            raise CniError(LINK_FAILURE, f"failed to set {write.key} in {write.netns.path}: {e.strerror}")
        self._outcome(0, start)

    def run_plugin(self, path: str, env: dict, stdin: bytes) -> tuple[int, str]:
        """Run a delegated plugin with the CNI environment; its stderr goes to ours."""
        self.echo(f"# delegate: CNI_COMMAND={env.get('CNI_COMMAND')} {path}")
        code, out, _ = self._spawn((path,), path, stdin, IPAM_FAILURE, _env=env, _err=sys.stderr.buffer)
        return code, out

    def _execute(self, cmd: Command) -> tuple[int, str, str]:
        self._announce(cmd)
        stdin = "".join(line + "\n" for line in cmd.batch) if cmd.batch else None
        return self._spawn(cmd.argv, f"`{shell_line(cmd)}`", stdin, LINK_FAILURE)

    def _spawn(self, argv, what: str, stdin, failure_code: int, **options) -> tuple[int, str, str]:
        """Run argv to its end, or kill it after self.timeout seconds.

        The timer is ours rather than sh's _timeout or wait(timeout=), which
        poll every 100 ms and so add that to every command."""
        import sh
        start = time.monotonic()
        try:
            proc = sh.Command(argv[0])(*argv[1:], _in=stdin, _ok_code=range(256), _tty_out=False,
                                       _bg=True, _bg_exc=False, _return_cmd=True, **options)
        except sh.CommandNotFound:
            raise CniError(failure_code, f"{argv[0]} is not installed")
        except OSError as e:
            raise CniError(failure_code, f"failed to run {what}: {e}")
        expired = threading.Event()

        def kill():
            expired.set()
            with contextlib.suppress(OSError):
                proc.kill()
        timer = threading.Timer(self.timeout, kill)
        timer.start()
        try:
            proc.wait()
        except sh.SignalException as e:
            self._outcome(e.exit_code, start)
            if expired.is_set():
                raise CniError(TRY_AGAIN_LATER, f"{what} did not finish within {self.timeout:g} s and was killed")
            raise CniError(failure_code, f"{what} was killed by signal {-e.exit_code}")
        finally:
            timer.cancel()
        self._outcome(proc.exit_code, start)
        return proc.exit_code, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")

    def _announce(self, step) -> None:
        if self.echo.active:
            self.echo(f"# {step.why}\n{shell_line(step)}")

    def _outcome(self, code: int, start: float) -> None:
        if self.echo.active:
            self.echo(f"# exit {code} in {(time.monotonic() - start) * 1000:.1f} ms")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def parse_json_stream(text: str) -> list:
    decoder, docs, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


_FAILED = re.compile(r"^Command failed -:(\d+)$")


def batch_failures(stderr: str, lines: tuple[str, ...]) -> list[BatchFailure]:
    """iproute2 prints its complaint, then `Command failed -:N`, per failing line."""
    failures, said = [], []
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
    netns.Do does): /proc/sys/net shows the netns of the thread that opens it."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot enter {path}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                # Going on in the wrong netns would misconfigure the host.
                os._exit(70)
    finally:
        os.close(own)
