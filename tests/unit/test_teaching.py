"""plan, install and the echo's shell lines (the docs' plan listings: test_docs.py)."""

import json
import os
import shlex
import subprocess

import pytest

from ipvlan_ip import commands
from ipvlan_ip.commands import Command, LinkSpec, Netns
from ipvlan_ip.front import cli
from ipvlan_ip.node.echo import shell_line
from ipvlan_ip.tools.install import MARK, install
from ipvlan_ip.tools.plan import plan

CONF = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0",
                   "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}).encode()
IPAM = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}]}


def commands_of(script: str) -> list[str]:
    return [line for line in script.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("name", ["containers.conf", "ipvlan-net.conflist"])
def test_the_install_page_shows_the_podman_files_the_tests_run(name):
    # tests/kernel/test_podman.py runs docs/podman/; docs/install.md must show the same files
    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(repo, "docs", "podman", name)) as doc, \
            open(os.path.join(repo, "docs", "install.md")) as page:
        assert doc.read() in page.read()


def test_plan_is_the_builders_steps_in_order():
    spec = LinkSpec(master="eth0", tmp_name=commands.temporary_name("example", "net1"), ifname="net1",
                    alias=commands.mark("n"))
    target = Netns("/run/netns/blue", "blue")
    addressing = commands.Addressing(tuple(IPAM["ips"]), tuple(IPAM["routes"]))
    expected = [commands.create_on_master(spec, target, False), *commands.name_link(spec, target, addressing),
                commands.configure_link(target, spec, addressing)]
    want = [line for s in expected for line in shell_line(s).splitlines()]
    assert commands_of(plan(CONF, "/run/netns/blue", "net1", "ADD", IPAM)) == want


def test_plan_without_ipam_result_marks_placeholders():
    script = plan(CONF, "/run/netns/blue", "eth0")
    assert "# PLACEHOLDER addresses" in script and "192.0.2.10/24" in script


def test_plan_cli_usage_errors_are_one_line_and_exit_2(capsys):
    assert cli.main(["plan", "-"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--netns" in err


@pytest.mark.parametrize("word", ["eth0", "a b", "it's", 'a"b', "$(reboot)", "-n", "#x", "tab\there"])
def test_echoed_lines_are_valid_shell_for_any_argument(word):
    cmd = Command("x", ("ip", "link", "show", "dev", word))
    assert shlex.split(shell_line(cmd)) == list(cmd.argv)
    done = subprocess.run(["bash", "-n", "-c", shell_line(cmd)], capture_output=True)
    assert done.returncode == 0


def test_batch_input_is_a_quoted_here_document():
    line = shell_line(Command("x", ("ip", "-batch", "-"), ("link set dev \"$x\" up",)))
    assert line == "ip -batch - <<'EOF'\nlink set dev \"$x\" up\nEOF"


def test_install_writes_a_launcher_that_runs_the_plugin(tmp_path):
    path = install(str(tmp_path), "ipvlan-ip", force=False)
    assert os.access(path, os.X_OK)
    assert install(str(tmp_path), "ipvlan-ip", force=False) == path      # idempotent
    done = subprocess.run([path], input=b'{"cniVersion":"1.0.0"}', capture_output=True,
                          env={"CNI_COMMAND": "VERSION", "PATH": os.environ["PATH"]})
    assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.0.0"
    done = subprocess.run([path, "version"], capture_output=True, text=True)
    assert done.stdout.startswith("ipvlan-ip ")


def test_install_refuses_a_file_it_did_not_write(tmp_path, capsys):
    foreign = tmp_path / "ipvlan-ip"
    foreign.write_text("#!/bin/sh\necho someone else's\n")
    assert cli.main(["install", "--cni-bin-dir", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert foreign.read_text().startswith("#!/bin/sh")
    assert cli.main(["install", "--cni-bin-dir", str(tmp_path), "--force"]) == 0
    assert MARK in foreign.read_text()
