"""Runs the kernel tests (pytest -m kernel) where ipvlan exists.

On a host whose kernel can make an ipvlan link (probed inside a throwaway
netns) they run right here. Otherwise this boots Debian's kernel under qemu
with virtme-ng, once, and runs them all in that VM: the guest sees the host's
root file system read-only over 9p, so the venv and Python's stdlib are
packed into two tar files here and unpacked into a tmpfs there (importing
over 9p is very slow). A VM that does not boot, a missing kernel, or no test
collected is a failure, never a skip.

    python tests/kernel_runner.py [PYTEST ARGS]       run the kernel tests
    python tests/kernel_runner.py --summary XML...    add up junit reports

IPVLAN_IP_TEST_WHERE=vm forces the VM on a host that has ipvlan.
"""

import glob
import os
import shlex
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VM_DIR = REPO / ".vm"
VENV = REPO / ".venv"
STDLIB = Path("/usr/lib/python3.11")
JUNIT = VM_DIR / "kernel.xml"
VM_TIMEOUT = 45 * 60


def host_has_ipvlan() -> bool:
    if os.geteuid() != 0:
        return False
    ns = f"ipvlan-probe-{uuid.uuid4().hex[:8]}"
    steps = [["ip", "netns", "add", ns],
             ["ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
             ["ip", "-n", ns, "link", "add", "link", "p0", "name", "p2", "type", "ipvlan", "mode", "l2"]]
    try:
        return all(subprocess.run(s, capture_output=True).returncode == 0 for s in steps)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run_on_host(pytest_args: list[str]) -> int:
    return subprocess.run([sys.executable, "-m", "pytest", "-m", "kernel", f"--junitxml={JUNIT}", *pytest_args],
                          cwd=REPO).returncode


def run_in_vm(pytest_args: list[str]) -> int:
    kernels = sorted(glob.glob("/boot/vmlinuz-*-amd64"))
    if not kernels:
        print("kernel tests: no /boot/vmlinuz-*-amd64; install linux-image-amd64", file=sys.stderr)
        return 1
    vng = VENV / "bin" / "vng"
    if not vng.exists():
        print("kernel tests: virtme-ng is not in .venv; run scripts/setup", file=sys.stderr)
        return 1
    VM_DIR.mkdir(exist_ok=True)
    for leftover in ("rc", JUNIT.name):
        (VM_DIR / leftover).unlink(missing_ok=True)
    t = time.monotonic()
    subprocess.run(["tar", "-C", str(STDLIB.parent), "-cf", str(VM_DIR / "stdlib.tar"), STDLIB.name], check=True)
    subprocess.run(["tar", "-C", str(REPO), "-cf", str(VM_DIR / "venv.tar"), ".venv"], check=True)
    print(f"kernel tests: packed venv and stdlib in {time.monotonic() - t:.1f} s; booting {kernels[-1]}", flush=True)
    guest = shlex.join(["bash", str(REPO / "tests" / "vm_guest.sh"), *pytest_args])
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    try:
        subprocess.run([str(vng), "--run", kernels[-1], "--disable-kvm", "--memory", "2G", "--cpus", "2",
                        "--rwdir", str(VM_DIR), "--exec", guest],
                       stdin=subprocess.DEVNULL, env=env, timeout=VM_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"kernel tests: the VM did not finish within {VM_TIMEOUT} s", file=sys.stderr)
        return 1
    rc_file = VM_DIR / "rc"
    if not rc_file.exists():
        print("kernel tests: the VM did not run the tests (no exit status came back)", file=sys.stderr)
        return 1
    return int(rc_file.read_text().strip() or 1)


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
    JUNIT.unlink(missing_ok=True)
    where = os.environ.get("IPVLAN_IP_TEST_WHERE") or ("host" if host_has_ipvlan() else "vm")
    start = time.monotonic()
    rc = run_on_host(argv) if where == "host" else run_in_vm(argv)
    c = counts(JUNIT)
    print(f"kernel tests: {c['tests']} ran in the {'VM' if where == 'vm' else 'host kernel'} "
          f"({c['failures'] + c['errors']} failed, {c['skipped']} skipped) in {time.monotonic() - start:.0f} s")
    if c["tests"] == 0:
        print("kernel tests: none ran; that is a failure", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
