"""The CNI entry point: environment and stdin in, one JSON document out.

Success prints the result (ADD) or nothing (DEL, CHECK, STATUS, GC) and
exits 0. Any failure prints a CNI error object on stdout, one line on stderr,
and exits 1; a bug becomes error 199 rather than a traceback.
"""
from __future__ import annotations

import os
import sys

from ..errors import INTERNAL, INVALID_CONFIG, INVALID_ENVIRONMENT, CniError
from ..versions import LATEST, version_answer


def main(environ=None, stdin: bytes | None = None, stdout=None, make_runner=None) -> int:
    """`make_runner(echo, timeout)` stands in for the real runner in tests that
    must not touch the system."""
    environ = os.environ if environ is None else environ
    os.umask(0o022)     # the records and dirs it makes: nobody else may write them, whatever the runtime's umask
    stdout = stdout or sys.stdout
    stdin = sys.stdin.buffer.read() if stdin is None else stdin
    if environ.get("CNI_COMMAND") == "VERSION":
        # Asked by runtimes before every command: answered before any other import.
        stdout.write(version_answer(stdin))
        stdout.flush()
        return 0
    import json
    data = _peek(stdin)
    answer_version = _answer_version(data)
    echo = None
    try:
        from ..environment import read_environment
        env = read_environment(environ)
        echo = _echo(env, data, environ)
        echo(f"# request: {json.dumps({k: v for k, v in environ.items() if k.startswith('CNI_')})}")
        echo(f"# stdin: {stdin.decode(errors='replace').strip()}")
        result = _dispatch(env, data, stdin, echo, environ, make_runner)
        if result is not None:
            echo(f"# response: {json.dumps(result)}")
            _print(result, stdout)
        return 0
    except CniError as e:
        error = e
    except Exception as e:  # never a traceback: the runtime wants JSON
        error = CniError(INTERNAL, f"{type(e).__name__}: {e}")
    from ..advice import explained  # the error path's alone
    advised = explained(error)
    said = f"{error.details}; {advised.msg}" if advised is not error else error.details
    error = advised
    print(f"ipvlan-ip: {said}", file=sys.stderr)
    if echo:
        echo(f"# error: {json.dumps(error.as_result(answer_version))}")
    _print(error.as_result(answer_version), stdout)
    return 1


def _dispatch(env, data, stdin: bytes, echo, environ, make_runner) -> dict | None:
    from .. import config, operations, results
    from ..node.runner import Runner
    conf = config.load(config.decode(stdin) if data is None else data, stdin, env.command)
    timeout = _timeout(environ.get("IPVLAN_IP_TIMEOUT"), conf.timeout)
    run = (make_runner or Runner)(echo, timeout)
    with run.exclusive(env.netns):      # one operation at a time per container
        if env.command == "ADD":
            return results.render(operations.add(conf, env, run), conf.cni_version)
        {"DEL": operations.delete, "CHECK": operations.check,
         "STATUS": operations.status, "GC": operations.gc}[env.command](conf, env, run)
    return None


def _timeout(text: str | None, configured: float) -> float:
    if not text:
        return configured
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 3600:
        raise CniError(INVALID_ENVIRONMENT, f"IPVLAN_IP_TIMEOUT {text!r} is not a number of seconds from 1 to 3600")
    return seconds


def _peek(stdin: bytes):
    import json
    try:
        return json.loads(stdin)
    except ValueError:
        return None


def _answer_version(data) -> str:
    """The cniVersion of our answer: the config's, else 0.1.0 for a config
    without one (as the spec reads it), else the latest for garbage."""
    if not isinstance(data, dict):
        return LATEST
    version = data.get("cniVersion")
    if version is None:
        return "0.1.0"
    return version if isinstance(version, str) and version else LATEST


def _echo(env, data, environ):
    """The echo the config and environment ask for. A logFile outside the
    node's log directory is refused (DEL, which must complete, logs nowhere)."""
    from ..node.echo import Echo, log_dir, log_problem
    conf = data if isinstance(data, dict) else {}
    debug = (environ.get("IPVLAN_IP_DEBUG") == "1" or env.args.get("IPVLAN_IP_DEBUG") == "1"
             or conf.get("debug") is True)
    log_file = conf.get("logFile")
    if not (isinstance(log_file, str) and log_file.startswith("/")):
        return Echo(debug, "", env.container_id)
    problem = log_problem(log_file, log_dir(environ))
    if problem and env.command != "DEL":
        raise CniError(INVALID_CONFIG, problem)
    return Echo(debug, "" if problem else os.path.normpath(log_file), env.container_id)


def _print(obj: dict, stdout) -> int:
    import json
    stdout.write(json.dumps(obj) + "\n")
    stdout.flush()
    return 0
