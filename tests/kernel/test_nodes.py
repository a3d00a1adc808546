"""The plugin on the nodes people have, each proven with its own Python and
iproute2 on the test kernel: bookworm is this VM (Debian 12: Python 3.11,
iproute2 6.1); bullseye (Debian 11: Python 3.9, iproute2 5.9) and trixie
(Debian 13: Python 3.13, iproute2 6.15) are Debian roots entered with chroot
(node_roots.py). On each, the standalone file is built by that node's own
Python through the CLI, and the kernel tests below run through it (on
bookworm, whose Python and iproute2 the whole suite uses, a few of them): the
lifecycle in old and new spec versions and in every mode, dual-stack, CHECK, STATUS
and GC, error and fault cases, rollback, a repeated ADD, DEL without a netns,
odd names, other plugins' interfaces, a conflist, the debug echo against
`plan`, and a VLAN link's lifecycle. A failure's test id names the node it would hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import SYSTEM_PATH
from .node_roots import NODE_BIN, NodeRoot
from .test_standalone import install_standalone

REPO = Path(__file__).resolve().parents[2]
# What touches Python's or iproute2's differences: `ip -j` output read back (link, routes, CHECK's
# drift), batch quoting, stderr texts that errors quote, the ioctls, nsenter, the result versions.
CHOSEN = [
    *(f"tests/kernel/test_plugin.py::test_lifecycle_in_every_version[{v}]" for v in ("0.2.0", "0.4.0", "1.1.0")),
    "tests/kernel/test_plugin.py::test_modes_and_mtu",                        # l2, l3, l3s
    "tests/kernel/test_plugin.py::test_dual_stack_with_routes",
    "tests/kernel/test_plugin.py::test_check_detects_drift",                  # address, route, mode
    "tests/kernel/test_beyond.py::test_status_and_gc_reach_the_ipam_plugin",
    "tests/kernel/test_plugin.py::test_error_codes",
    "tests/kernel/test_plugin.py::test_del_is_idempotent_and_survives_missing_netns",   # DEL without a netns too
    "tests/kernel/test_plugin.py::test_names_that_look_like_options_or_keywords_stay_names",
    "tests/kernel/test_plugin.py::test_link_in_container",
    "tests/kernel/test_plugin.py::test_netns_given_as_proc_path",
    "tests/kernel/test_plugin.py::test_del_after_a_crash_between_create_and_rename_removes_everything",
    "tests/kernel/test_faults.py::test_add_with_each_ip_call_failing_in_turn_leaves_nothing",   # rollback
    "tests/kernel/test_faults.py::test_ipam_printing_garbage_is_released",
    "tests/kernel/test_repeated_add.py::test_a_repeated_add_is_refused_and_the_first_attachment_stays[host-local]",
    "tests/kernel/test_repeated_add.py::test_a_second_network_failing_halfway_leaves_the_first_alone",
    "tests/kernel/test_foreign_interfaces.py::test_del_after_a_refused_add_leaves_another_plugins_interface",
    "tests/kernel/test_foreign_interfaces.py::test_a_name_taken_halfway_through_add_stops_it_and_the_rollback_leaves"
    "_the_taker",
    # rtnetlink read in-process: the master's mode and flag across netns, the mark DEL tells its link by
    "tests/kernel/test_sharing.py::test_a_network_whose_mode_or_flag_differs_from_the_masters_is_refused_and_"
    "changes_nothing[mode]",
    "tests/kernel/test_sharing.py::test_del_after_a_refused_add_leaves_the_other_networks_link",
    "tests/kernel/test_conflist.py",
    "tests/kernel/test_debug.py",
    # vlan: the VLAN link made, used, refused when something else has its name, removed with its last user
    "tests/kernel/test_vlan.py::test_a_container_on_vlan_20_reaches_vlan_20_of_the_lan_and_nothing_of_vlan_30"
    "[l2-10.160]",
    "tests/kernel/test_vlan.py::test_the_vlan_link_goes_with_its_last_attachment_of_any_network_and_never_before",
    "tests/kernel/test_vlan.py::test_an_interface_named_like_the_vlan_link_that_is_not_that_vlan_is_refused_with_"
    "nothing_allocated[veth]",
]
# Bookworm is the VM's own Python and iproute2, which the whole suite runs on through the launcher,
# and which runs the standalone file for podman and containerd: here the file's own path once more.
BOOKWORM = [
    *(f"tests/kernel/test_plugin.py::test_lifecycle_in_every_version[{v}]" for v in ("0.2.0", "1.1.0")),
    "tests/kernel/test_plugin.py::test_error_codes",
    "tests/kernel/test_repeated_add.py::test_a_repeated_add_is_refused_and_the_first_attachment_stays[host-local]",
    "tests/kernel/test_foreign_interfaces.py::test_del_after_a_refused_add_leaves_another_plugins_interface[veth]",
]
COUNTS = {"bookworm": 5, "bullseye": 35, "trixie": 35}

EXPECTED = {"bullseye": ("Python 3.9.", "iproute2-5.9"), "trixie": ("Python 3.13.", "iproute2-6.")}


# Seconds each takes in the test VM, about (tests/conftest.py shares the long tests out by it).
@pytest.fixture(params=[pytest.param("bookworm", marks=pytest.mark.long(50)),
                        pytest.param("bullseye", marks=pytest.mark.long(250)),
                        pytest.param("trixie", marks=pytest.mark.long(245))])
def node(request, tmp_path):
    """(name, plugin as a test calls it, how to run a command on that node)."""
    if request.param == "bookworm":
        yield request.param, str(install_standalone(tmp_path / "bin")), None
        return
    root = NodeRoot(request.param).enter()
    try:
        yield request.param, root.install_standalone(), root
    finally:
        root.leave()


def test_the_kernel_tests_pass_on_the_node(node):
    name, plugin, root = node
    chosen = BOOKWORM if name == "bookworm" else CHOSEN
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *chosen], cwd=REPO,
                          env={**os.environ, "PATH": SYSTEM_PATH, "IPVLAN_IP_TEST_PLUGIN": plugin},
                          capture_output=True, text=True, timeout=1500)
    versions = root.versions() if root else "the VM's own"
    if root:
        assert versions.startswith(EXPECTED[name][0]) and EXPECTED[name][1] in versions, versions
        # validate, without jsonschema there: the compiled validators explain, with the JSON path.
        assert root.run("python3", "-c", "import jsonschema").returncode != 0
        conf = {"cniVersion": "1.0.0", "name": "n", "type": "ipvlan-ip", "mode": "l4"}
        refused = root.run(f"{NODE_BIN}/ipvlan-ip", "validate", "-", input=json.dumps(conf))
        assert refused.returncode == 1 and "$.mode: must be one of" in refused.stdout, refused.stdout + refused.stderr
        # doctor's node checks, with the node's own Python and iproute2, pass there.
        checked = root.run(f"{NODE_BIN}/ipvlan-ip", "doctor", "--json")
        node_found = {f["check"]: f for f in json.loads(checked.stdout)["node"]}
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert node_found["python"]["text"].startswith(EXPECTED[name][0])
        assert node_found["iproute2"]["text"].startswith(EXPECTED[name][1].replace("-", " "))
        assert node_found["ipvlan"]["status"] == "ok"
    assert done.returncode == 0, f"on {name} ({versions}):\n" + done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.splitlines()[-1].startswith(f"{COUNTS[name]} passed"), done.stdout[-500:]   # all ran
