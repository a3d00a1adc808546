from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).parent / "kernel"
# A node's PATH, without our venv (or a development shim) before the system's python3 and ip.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
VM_WORKERS = 2      # as many as tests/kernel_runner.py runs in the VM


@pytest.hookimpl(tryfirst=True)     # before xdist reads the groups
def pytest_collection_modifyitems(items):
    # Everything under tests/kernel needs root and ipvlan: tests/kernel_runner.py
    # runs those (-m kernel) on the host or in the VM.
    for item in items:
        if KERNEL_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.kernel)
    share_out_long_tests(items)


def share_out_long_tests(items) -> None:
    """The tests marked long(SECONDS) first, in one xdist group per VM worker
    (--dist loadgroup), each in turn, longest first, to the group with the
    fewest seconds so far: left to themselves, they all fell to one worker,
    which then ran for minutes after the other had finished."""
    def seconds(item) -> float:
        return item.get_closest_marker("long").args[0]
    long = sorted((item for item in items if item.get_closest_marker("long")), key=seconds, reverse=True)
    load = [0.0] * VM_WORKERS
    for item in long:
        group = load.index(min(load))
        load[group] += seconds(item)
        item.add_marker(pytest.mark.xdist_group(f"long-{group}"))
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
