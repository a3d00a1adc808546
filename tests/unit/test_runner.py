"""The runner on subprocess, with real processes (nothing here needs ipvlan):
an overrunning child is killed with its whole process group and the call
fails with code 11; a batch's failing lines are told apart; the debug echo
goes to stderr only."""

import os
import time

import pytest

from ipvlan_ip.commands import Command
from ipvlan_ip.errors import CniError
from ipvlan_ip.node.echo import Echo
from ipvlan_ip.node.runner import Runner


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()       # killed, waiting for whoever adopted it to reap it
    except FileNotFoundError:
        return True


def test_an_overrunning_plugin_is_killed_with_its_children(tmp_path):
    plugin = tmp_path / "slow-ipam"
    plugin.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {tmp_path}/child\nwait\n")
    plugin.chmod(0o755)
    with pytest.raises(CniError) as caught:
        Runner(timeout=1).run_plugin(str(plugin), {"CNI_COMMAND": "ADD", "PATH": os.environ["PATH"]}, b"{}")
    assert caught.value.code == 11 and "did not finish within 1 s and was killed" in caught.value.details
    child = int((tmp_path / "child").read_text())
    for _ in range(50):
        if gone(child):
            break
        time.sleep(0.1)
    assert gone(child), "the plugin's own child survived"


def test_batch_failures_name_their_lines_and_the_json_still_comes_back():
    cmd = Command("x", ("ip", "-j", "-force", "-batch", "-"),
                  ("link show dev lo", "link show dev no-such-if0", "link show dev lo"))
    docs, failures = Runner().run_batch(cmd)
    assert [d[0]["ifname"] for d in docs] == ["lo", "lo"]
    assert [f.line for f in failures] == ["link show dev no-such-if0"]
    assert "does not exist" in failures[0].message


def test_the_echo_goes_to_stderr_never_stdout(capfd):
    Runner(Echo(debug=True)).run(Command("show the loopback", ("ip", "link", "show", "dev", "lo")))
    out, err = capfd.readouterr()
    assert out == ""
    assert err.startswith("# show the loopback\nip link show dev lo\n# exit 0 in ")


def test_a_missing_program_is_an_error_not_a_traceback():
    with pytest.raises(CniError) as caught:
        Runner().run(Command("x", ("no-such-program-ipvlan",)))
    assert caught.value.code == 100 and "is not installed" in caught.value.details

