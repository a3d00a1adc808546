"""`ipvlan-ip install --standalone`: one file that Debian's own /usr/bin/python3
runs, from a PATH without our venv and without sh or jsonschema installed
(tests/kernel/test_standalone.py runs the kernel tests through it)."""

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ipvlan_ip import errors
from ipvlan_ip.front import cli
from ipvlan_ip.tools import standalone
from ipvlan_ip.tools.install import MARK, install

from ..conftest import SYSTEM_PATH

CONF = {"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0",
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}


def run(path, *args, stdin: bytes = b"", **env) -> subprocess.CompletedProcess:
    return subprocess.run([path, *args], input=stdin, capture_output=True, cwd="/",
                          env={"PATH": SYSTEM_PATH, **env})


@pytest.fixture
def file(tmp_path) -> str:
    return install(str(tmp_path), "ipvlan-ip", force=False, standalone=True)


def test_the_system_python_has_none_of_our_dependencies():
    # What the tests below stand on: /usr/bin/python3 as a node has it.
    done = subprocess.run(["/usr/bin/python3", "-c", "import jsonschema"], capture_output=True)
    assert done.returncode == 1 and b"No module named 'jsonschema'" in done.stderr


def test_one_zip_application_with_the_package_byte_compiled(file):
    with open(file, "rb") as f:
        assert f.readline() == b"#!/usr/bin/env python3\n" and MARK.encode() in f.readline()
    names = zipfile.ZipFile(file).namelist()
    assert "__main__.py" in names and "ipvlan_ip/compiled_schemas.pyc" in names
    assert "ipvlan_ip/schemas/netconf.schema.json" in names and not any("__pycache__" in n for n in names)


def test_it_is_built_the_same_every_time_and_installed_like_the_launcher(file, tmp_path, capsys):
    first = Path(file).read_bytes()
    assert install(str(tmp_path), "ipvlan-ip", force=False, standalone=True) == file     # idempotent
    assert Path(file).read_bytes() == first
    foreign = tmp_path / "other"
    foreign.write_text("#!/bin/sh\n")
    assert cli.main(["install", "--standalone", "--cni-bin-dir", str(tmp_path), "--name", "other"]) == 1
    assert "--force" in capsys.readouterr().err and foreign.read_text() == "#!/bin/sh\n"


def test_every_cni_command_and_the_cli_run_on_the_system_python(file, tmp_path):
    version = run(file, stdin=b'{"cniVersion": "0.4.0"}', CNI_COMMAND="VERSION")
    assert version.returncode == 0 and json.loads(version.stdout)["cniVersion"] == "0.4.0"
    conf = json.dumps({**CONF, "ipam": {**CONF["ipam"], "dataDir": str(tmp_path / "ipam")}}).encode()
    log = tmp_path / "log"
    cni = {"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "", "CNI_PATH": "/usr/lib/cni",
           "IPVLAN_IP_DEBUG": "1", "IPVLAN_IP_LOG_DIR": str(tmp_path)}
    deleted = run(file, stdin=conf.replace(b'"ipam"', f'"logFile": "{log}", "ipam"'.encode()),
                  CNI_COMMAND="DEL", **cni)
    assert deleted.returncode == 0 and deleted.stdout == b""
    assert b"delegate: CNI_COMMAND=DEL /usr/lib/cni/host-local" in deleted.stderr     # the debug echo
    assert "# response" not in log.read_text() and "delegate: CNI_COMMAND=DEL" in log.read_text()
    for command in ("CHECK", "STATUS", "GC", "ADD"):     # refused before anything runs: these need more
        refused = run(file, stdin=json.dumps({**CONF, "cniVersion": "0.3.1"}).encode(), CNI_COMMAND=command, **cni)
        assert refused.returncode == 1 and json.loads(refused.stdout)["code"] in (1, 4), refused.stdout
    plan = run(file, "plan", "-", "--netns", "/run/netns/x", "--ifname", "eth0", stdin=conf)
    assert plan.returncode == 0 and b"type ipvlan mode l2" in plan.stdout


def test_conflist_runs_from_it_with_itself_as_the_plugin(file, tmp_path):
    # A runtime's DEL of a conflist whose netns is gone: our DEL, host-local's DEL, through the file.
    conflist = tmp_path / "net.conflist"
    conflist.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "ipvlan-ip", "master": "eth0", "debug": True,
         "ipam": {"type": "host-local", "subnet": "10.1.0.0/24", "dataDir": str(tmp_path / "ipam")}}]}))
    done = run(file, "conflist", "DEL", str(conflist), "--container-id", "c1", "--cache-dir", str(tmp_path),
               "--cni-path", f"{os.path.dirname(file)}:/usr/lib/cni")
    assert done.returncode == 0, done.stderr
    assert b'# request: {"CNI_COMMAND": "DEL"' in done.stderr           # the file, run as the plugin, echoed
    assert b"delegate: CNI_COMMAND=DEL /usr/lib/cni/host-local" in done.stderr


def test_without_jsonschema_a_rejected_config_still_names_path_and_reason(file):
    bad = json.dumps({**CONF, "mode": "l4"}).encode()
    validated = run(file, "validate", "-", stdin=bad)
    assert validated.returncode == 1 and validated.stdout == b"-: $.mode: must be one of ['', 'l2', 'l3', 'l3s']\n"
    refused = run(file, stdin=bad, CNI_COMMAND="ADD", CNI_CONTAINERID="c1", CNI_IFNAME="eth0",
                  CNI_NETNS="/proc/self/ns/net", CNI_PATH="/usr/lib/cni")
    error = json.loads(refused.stdout)
    assert error["code"] == 7 and "$.mode: must be one of" in error["details"]


def test_the_entry_point_parses_on_old_pythons():
    # An old Python must get as far as the version check, so as to answer with JSON.
    ast.parse(standalone.MAIN, feature_version=(3, 6))


def test_an_older_python_gets_a_cni_error_and_no_traceback(tmp_path):
    # No Python older than 3.9 is installed here: run the entry point as one would see it.
    code = "import sys\nsys.version_info = (3, 8, 18)\n" + standalone.MAIN
    done = subprocess.run([sys.executable, "-c", code], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
                          env={"CNI_COMMAND": "ADD", "PATH": SYSTEM_PATH})
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert json.loads(done.stdout) == {
        "cniVersion": "1.0.0", "code": errors.PYTHON_TOO_OLD, "msg": "Python too old for ipvlan-ip",
        "details": f"ipvlan-ip needs Python 3.9 or later, and {sys.executable} runs it (Python 3.8)"}
    assert standalone.PYTHON_TOO_OLD == errors.PYTHON_TOO_OLD


def test_a_given_interpreter_runs_it_isolated(tmp_path):
    path = install(str(tmp_path), "ipvlan-ip", force=False, standalone=True, python="/usr/bin/python3")
    with open(path, "rb") as f:
        assert f.readline() == b"#!/usr/bin/python3 -IS\n"
    done = run(path, stdin=b'{"cniVersion": "1.0.0"}', CNI_COMMAND="VERSION", PYTHONPATH=str(tmp_path))
    assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.0.0"
    assert os.access(path, os.X_OK)
