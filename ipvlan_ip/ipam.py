"""Delegation to the IPAM plugin (spec section 4): found in CNI_PATH and run
by the runner with our environment and our whole stdin; its answer read."""
from __future__ import annotations

import json
import os
from contextlib import nullcontext

from . import results
from .config import NetConf
from .environment import CniEnv
from .errors import IPAM_FAILURE, CniError
from .node import state


def turn_path(network: str) -> str:
    return f"{state.LOCKS}/ipam-{state.network_key(network)}.lock"


# The commands that change what IPAM holds take turns; CHECK and STATUS only read, and must not wait
# behind a burst of ADDs (a STATUS answering 11 reads as NetworkReady=false to containerd).
TURNS = ("ADD", "DEL", "GC")


def execute(run, conf: NetConf, env: CniEnv, command: str, stdin: bytes | None = None, turn: bool = True) -> str:
    """Run the IPAM plugin for `command`; its stdout, or its own error raised as ours.

    One call of a network at a time, in turn: IPAM plugins serialise a
    network's calls themselves (host-local on its data dir's lock,
    whereabouts against the API server), and the call's timeout, which
    kills a wedged plugin, must count the plugin's own run, not a wait
    behind the others of a burst. The wait has a budget of its own."""
    path = run.find_plugin(conf.ipam_type, env.path)
    child_env = {**os.environ, **env.raw, "CNI_COMMAND": command}
    in_turn = turn and command in TURNS
    with run.exclusive(turn_path(conf.name), create=True, patience=state.TURN) if in_turn else nullcontext():
        code, out = run.run_plugin(path, child_env, conf.stdin if stdin is None else stdin)
    if code == 0:
        return out
    raise plugin_error(out, code, f"IPAM plugin {conf.ipam_type!r}", command)


def add(run, conf: NetConf, env: CniEnv) -> dict:
    out = execute(run, conf, env, "ADD")
    try:
        answer = json.loads(out)
    except ValueError as e:
        raise CniError(IPAM_FAILURE, f"IPAM plugin {conf.ipam_type!r} printed no JSON result: {out[:200]!r}") from e
    if not isinstance(answer, dict):
        raise CniError(IPAM_FAILURE, f"IPAM plugin {conf.ipam_type!r} printed {type(answer).__name__}, "
                       "not a result object")
    try:
        return results.parse(answer, conf.cni_version, f"the result of IPAM plugin {conf.ipam_type!r}")
    except CniError as e:
        raise CniError(IPAM_FAILURE, e.details) from e


def plugin_error(out: str, code: int, plugin: str, command: str) -> CniError:
    """A delegated plugin's own CNI error when it printed one, so that its code reaches the runtime."""
    try:
        err = json.loads(out)
        if isinstance(err, dict) and isinstance(err.get("code"), int) and err["code"] > 0:
            details = err.get("details") or err.get("msg") or ""
            return CniError(err["code"], f"{plugin} {command}: {details}",
                            str(err.get("msg") or "IPAM plugin failed"))
    except ValueError:
        pass
    return CniError(IPAM_FAILURE, f"{plugin} {command} exited {code}: {out.strip()[:500]}")
