"""ADD failing at each of its steps in turn, with a recording fake runner:
whatever failed, every step already taken is undone (the link first, the
reservation last) and the error names the failing step. (tests/kernel covers the same against the
kernel for a taken name, a vanished master, a hung IPAM and a crash.)"""

import io
import json

import pytest

from ipvlan_ip import commands
from ipvlan_ip.errors import LINK_FAILURE, CniError
from ipvlan_ip.front import plugin
from ipvlan_ip.node.runner import BatchFailure

from .test_generated_input import FakeRunner

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}
CONF = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "master": "eth0",
                   "ipam": {"type": "host-local"}}).encode()
# In ADD's order: the master is read and the link created in one `ip`
# process, before IPAM is asked for addresses (as upstream does).
STEPS = ["master", "create", "ipam-add", "sysctl", "rename", "configure"]


def failing_at(step: str, how: str = "error"):
    class Failing(FakeRunner):
        def _maybe_fail(self, name):
            if name == step and not getattr(self, "failed", False):
                self.failed = True
                raise CniError(LINK_FAILURE, f"injected failure at {name}")

        def run_batch(self, cmd):
            if cmd.batch[-1].startswith("link add"):
                self.calls.append(cmd.argv)
                if step == "master":
                    return [], [BatchFailure(cmd.batch[0], "injected failure at master")]
                if step == "create":
                    master = [{"ifname": "eth0", "flags": ["UP"], "mtu": 1500}]
                    return [master], [BatchFailure(cmd.batch[1], "injected failure at create")]
            elif step == "configure":
                self.calls.append(cmd.argv)
                denied = BatchFailure(cmd.batch[0], "RTNETLINK answers: Permission denied")
                return [[{"address": "aa:bb:cc:dd:ee:ff"}]], [denied]
            return super().run_batch(cmd)

        def write_sysctls(self, writes):
            self._maybe_fail("sysctl")
            return super().write_sysctls(writes)

        def rename_link(self, step):
            self._maybe_fail("rename")
            return super().rename_link(step)

        def run_plugin(self, path, env, stdin):
            if env["CNI_COMMAND"] == "ADD" and step == "ipam-add":
                self.calls.append(f"{path} ADD")
                return (0, "this is not JSON") if how == "garbage" else (1, '{"code": 11, "msg": "busy"}')
            self.calls.append(f"{path} {env['CNI_COMMAND']}")
            return super().run_plugin(path, env, stdin) if env["CNI_COMMAND"] == "ADD" else (0, "")
    Failing.instances = []

    def make(echo, timeout):
        runner = Failing(echo, timeout)
        Failing.instances.append(runner)
        return runner
    return make, Failing.instances


@pytest.mark.parametrize("step", STEPS)
def test_every_step_taken_is_undone(step):
    make, instances = failing_at(step)
    out = io.StringIO()
    assert plugin.main(ENV, CONF, out, make_runner=make) == 1
    error = json.loads(out.getvalue())
    calls = [c if isinstance(c, str) else " ".join(c) for c in instances[0].calls]
    ipam_del = "/usr/lib/cni/host-local DEL"
    if step in ("master", "create"):
        assert not any("host-local" in c for c in calls)          # failed before anything was allocated
    else:
        assert calls[-1] == ipam_del                               # the reservation goes last
    if step in ("ipam-add", "sysctl", "rename", "configure"):     # the link goes first, by its current name
        name = "eth0" if step == "configure" else commands.temporary_name("c1", "eth0")
        assert calls[-2].endswith(f"link del dev {name}")
    else:
        assert not any("link del" in c for c in calls)
    if step == "configure":
        assert "address add" in error["details"] and "Permission denied" in error["details"]
    elif step == "ipam-add":
        assert error["code"] == 11                                   # IPAM's own code
    else:
        assert f"injected failure at {step}" in error["details"]


def test_ipam_printing_garbage_is_an_ipam_error_and_released():
    make, instances = failing_at("ipam-add", how="garbage")
    out = io.StringIO()
    assert plugin.main(ENV, CONF, out, make_runner=make) == 1
    error = json.loads(out.getvalue())
    assert error["code"] == 101 and "no JSON result" in error["details"]
    assert instances[0].calls[-1] == "/usr/lib/cni/host-local DEL"


def test_del_goes_on_past_a_lock_it_cannot_open_and_a_record_it_cannot_read_and_releases_the_address(capsys):
    """Neither mends itself by waiting, and a DEL that fails keeps the pod for nothing (issue 48)."""
    from contextlib import nullcontext

    from ipvlan_ip.node.state import LockUnavailable, RecordUnreadable

    class Broken(FakeRunner):
        def load_record(self, path):
            if "/host-access/" in path:
                return {"master": "eth0", "link": "ipvh00000000", "routes": ["10.0.0.2/32"], "neighbours": []}
            if "/vlan/" in path:
                raise RecordUnreadable(path, ValueError("Expecting value"))
            return None

        def exclusive(self, path, create=False, shared=False, patience=1.0):
            if "ipvh" in path:
                raise LockUnavailable(path, OSError(28, "No space left on device"))
            return nullcontext()

        def run_plugin(self, path, env, stdin):
            self.calls.append(f"{path} {env['CNI_COMMAND']}")
            return 0, ""
    runners: list = []
    out = io.StringIO()
    code = plugin.main({**ENV, "CNI_COMMAND": "DEL", "IPVLAN_IP_DEBUG": "1"}, CONF, out,
                       make_runner=lambda echo, timeout: runners.append(Broken(echo, timeout)) or runners[-1])
    assert (code, out.getvalue()) == (0, "")
    assert runners[0].calls[-1] == "/usr/lib/cni/host-local DEL"
    said = capsys.readouterr().err
    assert "DEL went on past a step it could not take: could not open the lock file" in said
    assert "DEL went on past a step it could not take: the record" in said and "cannot be read" in said


def test_a_rollback_goes_on_past_any_error_of_a_step_and_releases_the_address():
    make, instances = failing_at("configure")
    conf = json.dumps({**json.loads(CONF), "hostAccess": True}).encode()
    runners = []

    def broken(echo, timeout):
        runner = make(echo, timeout)
        read = runner.run_batch

        def run_batch(cmd):     # the master as the host, with an address on it, reads it
            docs, failures = read(cmd)
            for doc in docs[:1] if cmd.batch[-1].startswith("link add") else ():
                doc[0].update(address="aa:bb:cc:dd:ee:ff",
                              addr_info=[{"local": "10.9.0.1", "prefixlen": 24, "scope": "global"}])
            return docs, failures

        def load_record(path):      # not a CniError: it once ended the rollback before the release
            if "/host-access/" in path:
                raise OSError(5, "Input/output error")
        runner.run_batch, runner.load_record, runner.host_addresses = run_batch, load_record, list
        runners.append(runner)
        return runner
    out = io.StringIO()
    assert plugin.main(ENV, conf, out, make_runner=broken) == 1
    assert "Permission denied" in json.loads(out.getvalue())["details"]
    assert runners[0].calls[-1] == "/usr/lib/cni/host-local DEL"
