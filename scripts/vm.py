"""Where to find a kernel with ipvlan: this host's, or one booted under qemu.

`host_has_ipvlan()` probes inside a throwaway netns. `run_in_vm(argv)` boots
Debian's kernel with virtme-ng (software emulation: --disable-kvm, as stock
kernels hang on this machine's /dev/kvm), runs argv from the repository in
the guest through scripts/vm_guest.sh, and returns its exit status. The guest
sees the host's root file system read-only over 9p, so Python's stdlib, and the
venv with our package (byte-compiled here first), go over as two tar files and
are unpacked into a tmpfs there.
"""

import glob
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VM_DIR = REPO / ".vm"
VENV = REPO / ".venv"
STDLIB = Path("/usr/lib/python3.11")
PACKAGE = ("ipvlan_ip", "schemas")
# Only for a VM that hangs: the kernel tests took 2535 s in it on 2026-12-02, on a machine whose
# emulation ran them about twice as slowly as the day before's. CI stops a run at 90 minutes, and
# set-up and the unit tests take about 5 of them: the VM may have the rest.
VM_TIMEOUT = 80 * 60


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


def plugin_launcher() -> str:
    """The plugin as runtimes run it: the launcher `ipvlan-ip install` writes,
    here into .vm/bin, which the VM can write too."""
    from ipvlan_ip.tools.install import install
    return install(str(VM_DIR / "bin"), "ipvlan-ip", force=True)


def run_in_vm(argv: list[str]) -> int:
    kernels = sorted(glob.glob("/boot/vmlinuz-*-amd64"))
    if not kernels:
        print("vm: no /boot/vmlinuz-*-amd64; install linux-image-amd64 (scripts/setup does)", file=sys.stderr)
        return 1
    vng = VENV / "bin" / "vng"
    if not vng.exists():
        print("vm: virtme-ng is not in .venv; run scripts/setup", file=sys.stderr)
        return 1
    VM_DIR.mkdir(exist_ok=True)
    (VM_DIR / "rc").unlink(missing_ok=True)
    t = time.monotonic()
    subprocess.run(["tar", "-C", str(STDLIB.parent), "-cf", str(VM_DIR / "stdlib.tar"), STDLIB.name], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "compileall", "-q", str(REPO / "ipvlan_ip")], check=True)
    subprocess.run(["tar", "-C", str(REPO), "-cf", str(VM_DIR / "venv.tar"), ".venv", *PACKAGE], check=True)
    print(f"vm: packed venv and stdlib in {time.monotonic() - t:.1f} s; booting {kernels[-1]}", flush=True)
    guest = shlex.join(["bash", str(REPO / "scripts" / "vm_guest.sh"), *argv])
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    # qemu opens /proc/self/fd/1 afresh, which would truncate a log file that
    # our stdout is redirected to: give it a pipe and copy what comes out.
    vm = subprocess.Popen([str(vng), "--run", kernels[-1], "--disable-kvm", "--memory", "4G", "--cpus", "2",
                           "--rwdir", str(VM_DIR), "--exec", guest],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    timer = threading.Timer(VM_TIMEOUT, vm.kill)
    timer.start()
    for line in vm.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    vm.wait()
    timer.cancel()
    if vm.returncode == -9:
        print(f"vm: the VM did not finish within {VM_TIMEOUT} s and was killed", file=sys.stderr)
        return 1
    rc_file = VM_DIR / "rc"
    if not rc_file.exists():
        print("vm: the VM did not run the command (no exit status came back)", file=sys.stderr)
        return 1
    return int(rc_file.read_text().strip() or 1)
