"""The runner: the one object through which the plugin executes anything or
changes the system, handed to every operation (tests hand in fakes).

This module runs processes: the builder's Commands (`ip`, parsing what
`ip -j` prints) and delegated (IPAM) plugins. It spawns through
`subprocess`, not `sh`: a runtime starts the plugin for every container, and
sh's import (asyncio, importlib.metadata) and its per-command fork of the
whole interpreter cost several times what the work does. The rest of
Runner comes from modules named for their job: kernel.py (in-process calls
inside a netns), state.py (records and locks under /run/ipvlan-ip) and
survey.py (what `show` reads); echo.py says each step.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections import namedtuple

from ..commands import Command
from ..environment import find_plugin
from ..errors import IPAM_FAILURE, LINK_FAILURE, TRY_AGAIN_LATER, CniError
from .echo import Echo, shell_line
from .kernel import Kernel
from .state import State
from .survey import Survey


class CommandFailed(CniError):
    def __init__(self, cmd: Command, exit_code: int, stderr: str):
        super().__init__(LINK_FAILURE, f"`{shell_line(cmd)}` exited {exit_code}: {stderr.strip()}")
        self.command, self.exit_code, self.stderr = cmd, exit_code, stderr


class BatchFailure(namedtuple("BatchFailure", "line message")):
    """A batch line that failed, and what ip said about it."""
    __slots__ = ()


class Runner(Kernel, State, Survey):
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

    def find_plugin(self, plugin_type: str, paths: tuple[str, ...]) -> str:
        """The executable of a delegated plugin, in CNI_PATH."""
        return find_plugin(plugin_type, paths)

    def run_plugin(self, path: str, env: dict, stdin: bytes) -> tuple[int, str]:
        """Run a delegated plugin with the CNI environment; its stderr goes to ours."""
        self.echo(f"# delegate: CNI_COMMAND={env.get('CNI_COMMAND')} {path}")
        code, out, _ = self._spawn((path,), path, stdin, IPAM_FAILURE, env=env, stderr=None)
        return code, out

    def _execute(self, cmd: Command) -> tuple[int, str, str]:
        """An `ip` holds the locks held now until it ends: killed halfway (a
        runtime's timeout kills the plugin, not its children), the plugin
        would leave it running, and a DEL that took the lock meanwhile would
        clean up before it adds what it was adding, unrecorded."""
        self._announce(cmd)
        stdin = "".join(line + "\n" for line in cmd.batch).encode() if cmd.batch else b""
        return self._spawn(cmd.argv, f"`{shell_line(cmd)}`", stdin, LINK_FAILURE, pass_fds=self.held)

    def _spawn(self, argv, what: str, stdin: bytes, failure_code: int, env=None,
               stderr=subprocess.PIPE, pass_fds: tuple[int, ...] = ()) -> tuple[int, str, str]:
        """Run argv to its end, or kill its process group after self.timeout
        seconds (an IPAM plugin may have children of its own)."""
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, start_new_session=True, pass_fds=pass_fds)
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
