from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).parent / "kernel"


def pytest_collection_modifyitems(items):
    # Everything under tests/kernel needs root and ipvlan: tests/kernel_runner.py
    # runs those (-m kernel) on the host or in the VM.
    for item in items:
        if KERNEL_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.kernel)
