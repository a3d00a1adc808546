"""The plugin path's import budget: a runtime starts the plugin for every
container, so no CNI_COMMAND may import a validator library, sh, or what
they drag in. Each case runs the launcher that `ipvlan-ip install` writes, as
a runtime would (python -IS), with a hook that records sys.modules at exit.
tests/kernel/test_plugin.py does the same for a successful ADD, CHECK and DEL."""

import json
import os
import subprocess

import pytest

from ipvlan_ip.tools.install import install

FORBIDDEN = ("jsonschema", "referencing", "sh", "asyncio", "logging", "importlib.metadata", "ssl",
             "dataclasses", "inspect", "typing")

HOOK = """import atexit, sys
atexit.register(lambda: open({out!r}, "w").write("\\n".join(sorted(sys.modules))))
"""


def modules_loaded(bin_dir, out_file, env: dict, stdin: bytes) -> set[str]:
    """The modules loaded by one plugin call through the installed launcher."""
    with open(install(str(bin_dir), "ipvlan-ip", force=True)) as f:
        launcher = f.read()
    interpreter, flags = launcher.splitlines()[0].removeprefix("#!").split()
    code = HOOK.format(out=str(out_file)) + launcher
    subprocess.run([interpreter, flags, "-c", code], input=stdin, env=env, capture_output=True, timeout=60)
    return set(out_file.read_text().split())


def over_budget(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN)


CONF = {"cniVersion": "1.1.0", "name": "budget", "type": "ipvlan-ip", "master": "nosuchdev0",
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": "/nonexistent/ipam"}}


@pytest.mark.parametrize("command", ["VERSION", "ADD", "DEL", "CHECK", "STATUS", "GC"])
def test_no_cni_command_imports_what_the_budget_forbids(command, tmp_path):
    # Real host-local; the ADD fails at its master, before anything is made.
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": "budget",
           "CNI_NETNS": "/proc/self/ns/net" if command in ("ADD", "CHECK") else "",
           "CNI_IFNAME": "absent-if0", "CNI_PATH": "/usr/lib/cni"}
    conf = {**CONF, "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "absent-if0"}],
                                   "ips": [{"address": "10.99.0.5/24", "interface": 0}]}}
    modules = modules_loaded(tmp_path, tmp_path / "modules", env, json.dumps(conf).encode())
    assert "ipvlan_ip.front.plugin" in modules                 # the hook saw the call
    assert over_budget(modules) == []


def test_the_budget_catches_an_import(tmp_path):
    # The check itself can fail: a broken config is explained by jsonschema.
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "budget", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
    modules = modules_loaded(tmp_path, tmp_path / "modules", env, json.dumps({**CONF, "mode": "l4"}).encode())
    assert "jsonschema" in over_budget(modules)


def test_the_launcher_ignores_the_environment_and_the_working_directory(tmp_path):
    # -I: a PYTHONPATH or a module in the current directory cannot stand in for ours.
    (tmp_path / "ipvlan_ip.py").write_text("raise SystemExit('imported from the working directory')\n")
    path = install(str(tmp_path / "bin"), "ipvlan-ip", force=True)
    done = subprocess.run([path], input=b'{"cniVersion": "1.0.0"}', cwd=tmp_path, capture_output=True,
                          env={"CNI_COMMAND": "VERSION", "PYTHONPATH": str(tmp_path), "PATH": os.environ["PATH"]})
    assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.0.0"
