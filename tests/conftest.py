import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from durations import DURATIONS, LONG  # noqa: E402
from vm import host_has_ipvlan  # noqa: E402

KERNEL_DIR = Path(__file__).parent / "kernel"
# A node's PATH, without our venv (or a development shim) before the system's python3 and ip.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
VM_WORKERS = 2      # as many as tests/kernel_runner.py runs in the VM
# Set by tests/kernel_runner.py for its last phase, in the VM (or on a host the user gave it): the one
# place where a driver may be taken out of the kernel.
ALONE = "IPVLAN_IP_ALONE"
MODPROBE = Path("/proc/sys/kernel/modprobe")


@pytest.hookimpl(tryfirst=True)     # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    # Everything under tests/kernel needs root and ipvlan: tests/kernel_runner.py
    # runs those (-m kernel) in the VM, and those marked native on the host.
    for item in items:
        if KERNEL_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.kernel)
    # A kernel without ipvlan is this host's own on machines like CI's; on a host that has ipvlan,
    # those tests wait for the VM's alone phase, where the driver can be taken out.
    needing = [item for item in items if item.get_closest_marker("no_ipvlan")]
    # A kernel test of these marked neither native nor alone: no phase of a host without ipvlan (the unit
    # phase takes only tests/unit) would select it, and it would never run.
    lost = [item.nodeid for item in needing if KERNEL_DIR in Path(item.fspath).parents
            and not (item.get_closest_marker("native") or item.get_closest_marker("alone"))]
    if lost:
        raise pytest.UsageError(f"marked no_ipvlan but neither native nor alone, so run nowhere: {lost}")
    if needing and not os.environ.get(ALONE) and host_has_ipvlan():
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if item not in needing]
    share_out_long_tests(items)


@pytest.fixture
def without_driver():
    """without_driver(module): a kernel that cannot make the links of that driver until the test
    ends. Where the kernel lacks it already (ipvlan on this project's CI machine), nothing is
    changed; else the driver is unloaded and its loading made to fail by pointing the kernel's
    modprobe at /bin/false, as on a cloud image built without it; only in the alone phase."""
    saved = MODPROBE.read_text() if MODPROBE.exists() else None

    def unload(module: str) -> None:
        if module == "ipvlan" and not host_has_ipvlan():
            return
        assert os.environ.get(ALONE), f"{module} can be taken out of the kernel only in the alone phase"
        if Path(f"/sys/module/{module}").exists():
            done = subprocess.run(["rmmod", module], capture_output=True, text=True)
            assert done.returncode == 0, f"rmmod {module} (a link left on it by another test?): {done.stderr}"
        MODPROBE.write_text("/bin/false")
    yield unload
    if saved is not None and MODPROBE.read_text() != saved:
        MODPROBE.write_text(saved)


def share_out_long_tests(items) -> None:
    """The tests that take LONG seconds or more in the VM, as a run measured
    them (durations.json, which scripts/durations.py writes), first, in one
    xdist group per VM worker (--dist loadgroup), each in turn, longest first,
    to the group with the fewest seconds so far; the others then go one at a
    time to whichever worker is free. Left to themselves, the long ones fell
    to one worker, which then ran for minutes after the other had finished."""
    seconds = json.loads(DURATIONS.read_text())

    def took(item) -> float:
        return seconds.get(item.nodeid, 0.0)
    long = sorted((item for item in items if took(item) >= LONG), key=took, reverse=True)
    load = [0.0] * VM_WORKERS
    for item in long:
        group = load.index(min(load))
        load[group] += took(item)
        item.add_marker(pytest.mark.xdist_group(f"long-{group}"))
    items.sort(key=lambda item: took(item) < LONG)
