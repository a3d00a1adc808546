"""A CNI_NETNS that is no network namespace never hangs a call. Opening a FIFO
for reading waits for a writer; the plugin must answer at once instead: code 4
for ADD and CHECK before anything is allocated, while DEL still releases its
reservation (real host-local) and succeeds. A logFile that is a FIFO without
a reader is skipped, not waited on. Each call runs the installed launcher, as a
runtime does, under a time bound of the harness (a hang fails the test; no
time is asserted)."""

import json
import os
import socket
import stat
import subprocess

import pytest

from ipvlan_ip.tools.install import install

from ..conftest import SYSTEM_PATH

HOST_LOCAL = "/usr/lib/cni/host-local"
BOUND = 30      # seconds: far beyond a call's time, short of a CI hang


def make_path(kind: str, path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))    # what /dev/null is
    elif kind == "directory":
        path.mkdir()
    elif kind == "regular":
        path.write_text("")


@pytest.fixture
def plugin(tmp_path) -> str:
    return install(str(tmp_path / "bin"), "ipvlan-ip", force=True)


def conf_for(tmp_path, **extra) -> dict:
    return {"cniVersion": "1.0.0", "name": "pathnet", "type": "ipvlan-ip", "master": "nosuchdev0",
            "ipam": {"type": "host-local", "subnet": "10.98.0.0/24", "dataDir": str(tmp_path / "ipam")}, **extra}


def call(executable: str, command: str, conf: dict, netns: str, container_id: str = "c1", **extra: str):
    env = {"PATH": SYSTEM_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": "eth0", "CNI_PATH": os.path.dirname(HOST_LOCAL), **extra}
    done = subprocess.run([executable], input=json.dumps(conf).encode(), env=env, capture_output=True,
                          timeout=BOUND)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def reserved(tmp_path) -> list[str]:
    net = tmp_path / "ipam" / "pathnet"
    return sorted(p.name for p in net.iterdir() if p.name[0].isdigit()) if net.exists() else []


KINDS = ["fifo", "socket", "chardev", "directory", "regular"]


@pytest.mark.parametrize("kind", KINDS)
def test_add_and_check_answer_code_4_at_once(kind, plugin, tmp_path):
    path = tmp_path / "netns"
    make_path(kind, path)
    conf = conf_for(tmp_path)
    rc, out = call(plugin, "ADD", conf, str(path))
    assert rc == 1 and out["code"] == 4, out
    assert "not a network namespace" in out["details"] and str(path) in out["details"]
    assert reserved(tmp_path) == []                                   # IPAM was never asked

    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": str(path)}],
            "ips": [{"address": "10.98.0.2/24", "interface": 0}]}
    rc, out = call(plugin, "CHECK", {**conf_for(tmp_path), "prevResult": prev}, str(path))
    assert rc == 1 and out["code"] == 4 and "not a network namespace" in out["details"], out
    assert os.path.lexists(path)                                      # the path itself is left alone


@pytest.mark.parametrize("kind", KINDS)
def test_del_releases_its_reservation_and_succeeds(kind, plugin, tmp_path):
    path = tmp_path / "netns"
    make_path(kind, path)
    conf = conf_for(tmp_path)
    # The reservation an earlier ADD made, by host-local itself.
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
           "CNI_PATH": os.path.dirname(HOST_LOCAL), "PATH": SYSTEM_PATH}
    subprocess.run([HOST_LOCAL], input=json.dumps(conf).encode(), env=env, check=True, capture_output=True,
                   timeout=BOUND)
    assert reserved(tmp_path) == ["10.98.0.2"]

    rc, out = call(plugin, "DEL", conf, str(path))
    assert rc == 0 and out is None
    assert reserved(tmp_path) == []


def test_a_log_file_fifo_without_reader_is_skipped(plugin, tmp_path):
    log = tmp_path / "log"
    os.mkfifo(log)
    netns = tmp_path / "netns"
    netns.mkdir()
    conf = conf_for(tmp_path, logFile=str(log), debug=True)
    logs = {"IPVLAN_IP_LOG_DIR": str(tmp_path)}
    rc, out = call(plugin, "DEL", conf, "", **logs)                    # succeeds, with nothing logged
    assert rc == 0 and out is None
    rc, out = call(plugin, "ADD", conf, str(netns), **logs)            # fails as it would without a log
    assert rc == 1 and out["code"] == 4
    assert stat.S_ISFIFO(os.stat(log).st_mode)
