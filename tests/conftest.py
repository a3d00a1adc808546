from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).parent / "kernel"
# A node's PATH, without our venv (or a development shim) before the system's python3 and ip.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def pytest_collection_modifyitems(items):
    # Everything under tests/kernel needs root and ipvlan: tests/kernel_runner.py
    # runs those (-m kernel) on the host or in the VM.
    for item in items:
        if KERNEL_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.kernel)
    # The long tests first, so that no worker ends on one while the other has nothing left to take
    # (tests/kernel_runner.py).
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
