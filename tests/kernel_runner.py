"""Runs the kernel tests (pytest -m kernel): those marked native on this host
first, then the others in one qemu VM booted for the whole run (see
scripts/vm.py). A VM that does not boot, a missing kernel, no test collected,
or a test skipped is a failure.

    python tests/kernel_runner.py [PYTEST ARGS]       run the kernel tests
    python tests/kernel_runner.py --summary XML...    add up junit reports

Native tests make no ipvlan or VLAN link (they are refused before one), so
the host's kernel serves, in seconds. In the VM, two phases: the kernel tests
at once (-m "kernel and not native and not alone"), then those marked alone,
which change the whole kernel, one at a time. The tests that need a kernel
without ipvlan (marked no_ipvlan) run where the host has none; on a host
that has it, they join the alone phase, where the driver can be taken out.

The VM even where the host has ipvlan: some tests take a driver out of the
kernel, one attaches a link to the default route's NIC. IPVLAN_IP_TEST_WHERE=host
runs them on the host instead, for a machine that is itself disposable (vagrant/).
"""

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from durations import DURATIONS, LONG, measured  # noqa: E402
from vm import REPO, VM_DIR, host_has_ipvlan, run_in_vm  # noqa: E402

JUNIT_NATIVE = VM_DIR / "kernel-native.xml"
JUNIT = VM_DIR / "kernel.xml"
JUNIT_ALONE = VM_DIR / "kernel-alone.xml"
VM_WORKERS = 2      # the VM's CPUs; tests/conftest.py makes as many groups of long tests
NO_TESTS = 5        # pytest's exit status when a filter leaves nothing to run
WITH_NO_IPVLAN = "--with-no-ipvlan"     # the host had ipvlan: the alone phase takes the no_ipvlan tests


def pytest_argv(marks: str, junit: Path, extra: list[str], parallel: bool = False) -> list[str]:
    # In the VM each plugin call costs seconds of emulated CPU: use both CPUs. The long tests
    # come in two groups of about equal length (tests/conftest.py), one to each worker; the
    # others go one at a time to whichever worker is free.
    workers = ["-n", str(VM_WORKERS), "--dist", "loadgroup"] if parallel else []
    return [".venv/bin/python", "-m", "pytest", "-m", marks, "-p", "no:cacheprovider", *workers,
            f"--junitxml={junit}", *extra]


def first_failure(*statuses: int, filtered: bool = True) -> int:
    """The first failure; unless a filter was given, a phase that collected nothing is one (its tests
    were lost: a marker mistyped, a file that no longer imports)."""
    if not filtered and NO_TESTS in statuses:
        return NO_TESTS
    ran = [rc for rc in statuses if rc != NO_TESTS]
    return next((rc for rc in ran if rc != 0), 0 if ran else NO_TESTS)


def phases(where: str, extra: list[str]) -> int:
    """Both phases where the kernel has ipvlan (the VM, or a host the user gave): the first failure."""
    with_no_ipvlan = WITH_NO_IPVLAN in extra
    extra = [arg for arg in extra if arg != WITH_NO_IPVLAN]
    together = pytest_argv("kernel and not native and not alone", JUNIT, extra, parallel=where == "vm")
    # Alone: a driver may be taken out (tests/conftest.py, without_driver), nothing else running.
    alone = pytest_argv("kernel and alone and not native" + (" or no_ipvlan" if with_no_ipvlan else ""),
                        JUNIT_ALONE, extra)
    first = subprocess.run(together, cwd=REPO).returncode
    second = subprocess.run(alone, cwd=REPO, env={**os.environ, "IPVLAN_IP_ALONE": "1"}).returncode
    return first_failure(first, second, filtered=bool(extra))


def unmeasured(report: Path) -> list[str]:
    """The tests of `report` that took LONG seconds or more and that durations.json does not list."""
    if not report.exists():
        return []
    known = json.loads(DURATIONS.read_text())
    return [test for test, took in measured(report).items() if took >= LONG and test not in known]


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
    for report in (JUNIT_NATIVE, JUNIT, JUNIT_ALONE):
        report.unlink(missing_ok=True)
    where = os.environ.get("IPVLAN_IP_TEST_WHERE", "vm")
    start = time.monotonic()
    native = subprocess.run(pytest_argv("kernel and native", JUNIT_NATIVE, argv), cwd=REPO).returncode
    print(f"kernel tests: the native ones on this host in {time.monotonic() - start:.0f} s", flush=True)
    rest = [*argv, *([WITH_NO_IPVLAN] if host_has_ipvlan() else [])]
    if where == "host":
        rc = phases(where, rest)
    else:
        rc = run_in_vm([".venv/bin/python", "tests/kernel_runner.py", "--phases", *rest])
    rc = first_failure(native, rc, filtered=bool(argv))
    c = counts(JUNIT_NATIVE, JUNIT, JUNIT_ALONE)
    print(f"kernel tests: {c['tests']} ran, natively and in the {'VM' if where == 'vm' else 'host kernel'} "
          f"({c['failures'] + c['errors']} failed, {c['skipped']} skipped) in {time.monotonic() - start:.0f} s")
    unplaced = unmeasured(JUNIT)
    if unplaced:
        print(f"kernel tests: {len(unplaced)} took {LONG:.0f} s or more with no time in {DURATIONS.name} (so "
              f"placed as short ones): `python scripts/durations.py` after a whole run records them")
    if c["tests"] == 0:
        print("kernel tests: none ran; that is a failure", file=sys.stderr)
        return 1
    if c["skipped"]:
        print(f"kernel tests: {c['skipped']} skipped; where ipvlan exists every one must run", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
