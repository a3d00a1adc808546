"""Runs the kernel tests (pytest -m kernel) where ipvlan exists: on this host
when its kernel has it, else in one qemu VM booted for the whole run (see
scripts/vm.py). A VM that does not boot, a missing kernel, or no test
collected is a failure, never a skip.

    python tests/kernel_runner.py [PYTEST ARGS]       run the kernel tests
    python tests/kernel_runner.py --summary XML...    add up junit reports

Two phases: the kernel tests at once (-m "kernel and not alone"), then those
marked alone, which change the whole kernel, one at a time.

IPVLAN_IP_TEST_WHERE=vm forces the VM on a host that has ipvlan.
"""

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from vm import REPO, VM_DIR, host_has_ipvlan, run_in_vm  # noqa: E402

JUNIT = VM_DIR / "kernel.xml"
JUNIT_ALONE = VM_DIR / "kernel-alone.xml"
VM_WORKERS = 2      # the VM's CPUs; tests/conftest.py makes as many groups of long tests
NO_TESTS = 5        # pytest's exit status when a filter leaves nothing to run


def pytest_argv(where: str, extra: list[str]) -> list[str]:
    # In the VM each plugin call costs seconds of emulated CPU: use both CPUs. The long tests
    # come in two groups of about equal length (tests/conftest.py), one to each worker; the
    # others go one at a time to whichever worker is free.
    parallel = ["-n", str(VM_WORKERS), "--dist", "loadgroup"] if where == "vm" else []
    return [".venv/bin/python", "-m", "pytest", "-m", "kernel and not alone", "-p", "no:cacheprovider", *parallel,
            f"--junitxml={JUNIT}", *extra]


def alone_argv(extra: list[str]) -> list[str]:
    """The tests that change the whole kernel (a driver unloaded, say): after
    the others, one at a time, with nothing else running."""
    return [".venv/bin/python", "-m", "pytest", "-m", "kernel and alone", "-p", "no:cacheprovider",
            f"--junitxml={JUNIT_ALONE}", *extra]


def phases(where: str, extra: list[str]) -> int:
    """Both phases, where this runs (on the host, or in the VM): the status of the first that failed."""
    first = subprocess.run(pytest_argv(where, extra), cwd=REPO).returncode
    second = subprocess.run(alone_argv(extra), cwd=REPO).returncode
    both = [rc for rc in (first, second) if rc != NO_TESTS]
    return next((rc for rc in both if rc != 0), 0 if both else NO_TESTS)


def counts(*reports: Path) -> dict[str, int]:
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in reports:
        if report.exists():
            for suite in ET.parse(report).getroot().iter("testsuite"):
                for key in total:
                    total[key] += int(suite.get(key, 0))
    return total


def main(argv: list[str]) -> int:
    if argv[:1] == ["--summary"]:
        c = counts(*map(Path, argv[1:]))
        failed = c["failures"] + c["errors"]
        print(f"tests: {c['tests'] - failed - c['skipped']} passed, {failed} failed, {c['skipped']} skipped")
        return 0
    if argv[:1] == ["--phases"]:       # inside the VM
        return phases("vm", argv[1:])
    VM_DIR.mkdir(exist_ok=True)
    JUNIT.unlink(missing_ok=True)
    JUNIT_ALONE.unlink(missing_ok=True)
    where = os.environ.get("IPVLAN_IP_TEST_WHERE") or ("host" if host_has_ipvlan() else "vm")
    start = time.monotonic()
    if where == "host":
        rc = phases(where, argv)
    else:
        rc = run_in_vm([".venv/bin/python", "tests/kernel_runner.py", "--phases", *argv])
    c = counts(JUNIT, JUNIT_ALONE)
    print(f"kernel tests: {c['tests']} ran in the {'VM' if where == 'vm' else 'host kernel'} "
          f"({c['failures'] + c['errors']} failed, {c['skipped']} skipped) in {time.monotonic() - start:.0f} s")
    if c["tests"] == 0:
        print("kernel tests: none ran; that is a failure", file=sys.stderr)
        return 1
    if c["skipped"]:
        print(f"kernel tests: {c['skipped']} skipped; where ipvlan exists every one must run", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
