"""Nothing a network config names reaches outside the plugin's own files
(issue 39): a logFile only directly in the node's log directory, opened
without following a symlink; records and dirs that other local users
cannot write whatever the runtime's umask; a container ID too long for its
record's file name refused at ADD (code 4) while its DEL completes; a
master named by prevResult checked as CNI_IFNAME is. Each runs the
installed launcher or plugin.main natively: all are decided before any
ipvlan link is made."""

import io
import json
import os
import stat

import pytest

from ipvlan_ip.front.plugin import main as plugin_main
from ipvlan_ip.node import state

from .test_input import ENV, GOOD, answer
from .test_netns_paths import call, conf_for, plugin  # noqa: F401  (plugin is a fixture)


def test_a_log_file_outside_the_log_directory_is_refused_and_del_writes_nothing_there(plugin, tmp_path):  # noqa: F811
    logs, outside = tmp_path / "logs", tmp_path / "sudoers.d-line"
    conf = conf_for(tmp_path, logFile=str(outside))
    for escape in (str(outside), f"{logs}/../sudoers.d-line", f"{logs}/sub/x.log"):
        conf["logFile"] = escape
        code, out = call(plugin, "ADD", conf, "/proc/self/ns/net", IPVLAN_IP_LOG_DIR=str(logs))
        assert code == 1 and out["code"] == 7 and "IPVLAN_IP_LOG_DIR" in out["msg"] + out["details"], out
        assert call(plugin, "DEL", conf, "", IPVLAN_IP_LOG_DIR=str(logs)) == (0, None)
    assert not outside.exists() and not (logs / "sub").exists()


def test_a_log_file_is_written_in_the_log_directory_and_never_through_a_symlink(plugin, tmp_path):  # noqa: F811
    logs, target = tmp_path / "logs", tmp_path / "target"
    conf = conf_for(tmp_path, logFile=str(logs / "net.log"))
    assert call(plugin, "DEL", conf, "", IPVLAN_IP_LOG_DIR=str(logs)) == (0, None)
    assert "# request" in (logs / "net.log").read_text()
    assert stat.S_IMODE(os.stat(logs / "net.log").st_mode) == 0o600
    target.write_text("keep\n")
    (logs / "link.log").symlink_to(target)
    conf["logFile"] = str(logs / "link.log")
    assert call(plugin, "DEL", conf, "", IPVLAN_IP_LOG_DIR=str(logs)) == (0, None)
    assert target.read_text() == "keep\n"


def test_records_and_their_dirs_are_not_writable_by_others_whatever_the_umask(tmp_path):
    run = state.State()
    before = os.umask(0)        # the worst a caller may have set: the state code sets the modes itself
    try:
        run.save_record(str(tmp_path / "r" / "net" / "c1:eth0"), {"a": 1})
    finally:
        os.umask(before)
    for path in (tmp_path / "r", tmp_path / "r" / "net", tmp_path / "r" / "net" / "c1:eth0"):
        assert not os.stat(path).st_mode & 0o022, path
    (tmp_path / "r" / "net" / "c2:eth0").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(state.RecordUnreadable, match="Too many levels of symbolic links"):
        run.load_record(str(tmp_path / "r" / "net" / "c2:eth0"))


def test_plugin_main_sets_a_umask_that_keeps_others_from_writing():
    before = os.umask(0)
    try:
        answer({**ENV, "CNI_COMMAND": "FOO"}, GOOD)
        assert os.umask(before) == 0o022
    finally:
        os.umask(before)


@pytest.mark.parametrize("extra", [{"hostAccess": True}, {"vlan": 20}])
def test_a_container_id_too_long_for_a_record_is_refused_at_add_and_its_del_completes(extra):
    longest = 255 - len(".:eth0.4194304")
    conf = {**GOOD, **extra}
    code, out = answer({**ENV, "CNI_CONTAINERID": "c" * (longest + 1)}, conf)
    assert code == 1 and out["code"] == 4 and f"at most {longest}" in out["details"], out
    printed = io.StringIO()
    env = {**ENV, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c" * (longest + 1), "CNI_NETNS": ""}
    assert plugin_main(env, json.dumps(conf).encode(), printed) == 0 and printed.getvalue() == ""
    fits = answer({**ENV, "CNI_CONTAINERID": "c" * longest}, conf)[1]      # refused later: /run/netns/x is none
    assert "CNI_CONTAINERID" not in fits["details"], fits


@pytest.mark.parametrize("name", ["../../etc", "a b", "eth#0", "x" * 16])
def test_a_master_named_by_prevresult_is_checked_as_an_interface_name(name):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": name}], "ips": [{"address": "10.1.0.5/24"}]}
    conf = {**{k: v for k, v in GOOD.items() if k not in ("master", "ipam")}, "prevResult": prev}
    code, out = answer({**ENV, "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "nosuch0"}, conf)
    assert code == 1 and out["code"] == 7 and "cannot be the master" in out["details"], out


@pytest.mark.parametrize("name", ["../../../etc", "a/b", ".hidden", "-x"])
def test_a_network_name_the_schema_refuses_never_becomes_a_path_outside_the_records(name):
    # Such a name comes only with a DEL, which completes, and reads and removes records by it.
    path = state.record_path("/run/ipvlan-ip/vlan", name, "c1", "eth0")
    assert os.path.dirname(os.path.normpath(path)) != "/etc" and os.path.normpath(path).startswith(
        "/run/ipvlan-ip/vlan/-") and path.count("/") == 5, path
