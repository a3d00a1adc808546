"""The plugin on the nodes people have, each proven with its own Python and
iproute2 on the test kernel: bullseye (Debian 11: Python 3.9, iproute2 5.9)
and trixie (Debian 13: Python 3.13, iproute2 6.15) are Debian roots entered
with chroot (node_roots.py); bookworm (Debian 12), the VM's own, runs the
whole suite, and the standalone file there in test_standalone.py. On each
root, the standalone file is built by that node's own Python through the CLI,
and one test per command and per capability runs through it (CHOSEN). A
failure's test id names the node it would hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import SYSTEM_PATH
from .node_roots import NODE_BIN, NodeRoot

REPO = Path(__file__).resolve().parents[2]
# One test per command and per capability: what touches Python's or iproute2's differences is in each
# (`ip -j` output read back, batch quoting, stderr texts that errors quote, rtnetlink, nsenter, sysctls).
CHOSEN = [
    "tests/kernel/test_plugin.py::test_lifecycle_in_every_version[1.1.0]",      # ADD, CHECK, DEL
    "tests/kernel/test_plugin.py::test_modes_and_mtu",                          # l2, l3, l3s
    "tests/kernel/test_plugin.py::test_dual_stack_with_routes",
    "tests/kernel/test_plugin.py::test_check_detects_drift[route]",             # CHECK's reading of routes
    "tests/kernel/test_beyond.py::test_status_and_gc_reach_the_ipam_plugin",    # STATUS, GC
    "tests/kernel/test_plugin.py::test_error_codes",
    "tests/kernel/test_plugin.py::test_del_is_idempotent_and_survives_missing_netns",
    "tests/kernel/test_plugin.py::test_names_that_look_like_options_or_keywords_stay_names[help;1-a;b'c]",  # 5.9's \'
    "tests/kernel/test_plugin.py::test_link_in_container",                      # nsenter
    "tests/kernel/test_faults.py::test_add_with_each_ip_call_failing_in_turn_leaves_nothing[2]",   # rollback
    "tests/kernel/test_repeated_add.py::test_a_repeated_add_is_refused_and_the_first_attachment_stays[host-local]",
    "tests/kernel/test_sharing.py::test_del_after_a_refused_add_leaves_the_other_networks_link",
    "tests/kernel/test_sharing.py::test_a_network_whose_mode_or_flag_differs_from_the_masters_is_refused_and_"
    "changes_nothing[mode]",
    "tests/kernel/test_conflist.py",                                            # chaining
    "tests/kernel/test_debug.py",                                               # the debug echo against plan
    "tests/kernel/test_host_access.py::test_the_host_and_its_containers_reach_each_other[l2-10.90]",
    "tests/kernel/test_vlan.py::test_a_container_on_vlan_20_reaches_vlan_20_of_the_lan_and_nothing_of_vlan_30"
    "[l2-10.160]",
    "tests/kernel/test_vlan.py::test_the_vlan_link_goes_with_its_last_attachment_of_any_network_and_never_before",
    "tests/kernel/test_dhcp.py::test_two_containers_get_distinct_leases_and_reach_each_other_and_the_lan",
    # proxyNeighbors' batches (routes, `neigh replace proxy`, and DEL's) and the default accept_ra 0
    "tests/kernel/test_lan_view.py::test_sigkill_during_a_proxied_add_leaves_nothing_that_del_does_not_remove[3]",
]
CHOSEN_COUNT = 23      # CHOSEN as pytest counts it (parameters expanded): all must run
EXPECTED = {"bullseye": ("Python 3.9.", "iproute2-5.9"), "trixie": ("Python 3.13.", "iproute2-6.")}


# The LANs' first octet in each root's run (conftest.NET_FIRST).
NET_FIRST = {"bullseye": "11", "trixie": "12"}


@pytest.fixture(params=["bullseye", "trixie"])
def node(request):
    """(name, plugin as a test calls it, how to run a command on that node)."""
    root = NodeRoot(request.param).enter()
    try:
        yield request.param, root.install_standalone(), root
    finally:
        root.leave()


def test_the_kernel_tests_pass_on_the_node(node):
    name, plugin, root = node
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CHOSEN], cwd=REPO,
                          env={**os.environ, "PATH": SYSTEM_PATH, "IPVLAN_IP_TEST_PLUGIN": plugin,
                               "IPVLAN_IP_TEST_NET_FIRST": NET_FIRST[name]},
                          capture_output=True, text=True, timeout=1500)
    versions = root.versions()
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
    assert done.stdout.splitlines()[-1].startswith(f"{CHOSEN_COUNT} passed"), done.stdout[-500:]   # all ran
