#!/usr/bin/env bash
# Runs inside the qemu VM that scripts/vm.py boots: puts Python in a tmpfs,
# then runs its arguments from the repository. The host's file system is
# read-only here; .vm/ is writable and carries the exit status back.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
vm=$repo/.vm
mkdir -p /run/py /run/venv
# Python, the venv and our package from a tmpfs: importing them over 9p is several times slower.
tar -xf "$vm/stdlib.tar" -C /run/py && mount --bind /run/py/python3.11 /usr/lib/python3.11 &&
  tar -xf "$vm/venv.tar" -C /run/venv && mount --bind /run/venv/.venv "$repo/.venv" &&
  mount --bind /run/venv/ipvlan_ip "$repo/ipvlan_ip" && mount --bind /run/venv/schemas "$repo/schemas" || {
  echo "vm_guest: could not unpack Python into the guest" >&2; echo 1 > "$vm/rc"; exit 1; }
# The guest's /dev/shm would be the host's (podman keeps its lock segment there).
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
export PYTHONDONTWRITEBYTECODE=1 PATH="$repo/.venv/bin:$PATH"
cd "$repo"
echo "vm_guest: kernel $(uname -r), $(nproc) CPUs: $*"
"$@"
echo $? > "$vm/rc"
