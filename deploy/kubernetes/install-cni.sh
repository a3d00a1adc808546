#!/bin/sh
# Copies /ipvlan-ip into the node's CNI bin dir, then stays up, as the Multus
# and whereabouts installers do (a DaemonSet's pod must keep running).
# The copy is atomic: it is written beside the target and renamed over it, so
# a runtime starting the plugin meanwhile runs the old file or the new one,
# never half of one. A file of that name that `ipvlan-ip install` did not
# write is left alone, as `ipvlan-ip install` itself does.
# First it checks that the node can run the plugin at all: python3 3.9 or
# later and ip, looked for in the node's root (mounted read-only at
# $NODE_ROOT) with chroot, as the runtime will find them. A node without them
# gets nothing, and the pod fails with one line that names what is missing.
# Then the new file's own `ipvlan-ip doctor` checks the node, run there with
# the node's python3 and ip (the bin dir is $NODE_CNI_BIN_DIR in the node's
# root): iproute2's version, the kernel making ipvlan links (tried in a
# throwaway netns, hence a privileged pod), /run writable. A node it fails
# gets nothing either, and the pod's log carries doctor's report.
set -eu
dir=${CNI_BIN_DIR:-/host/opt/cni/bin}
name=${CNI_PLUGIN_NAME:-ipvlan-ip}
root=${NODE_ROOT:-/host/root}
node_dir=${NODE_CNI_BIN_DIR:-/opt/cni/bin}
target=$dir/$name
on_node() { chroot "$root" /bin/sh -c "$1" >/dev/null 2>&1; }
missing=
if ! on_node 'command -v python3'; then
  missing="python3 (3.9 or later)"
elif ! on_node "python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))'"; then
  missing="python3 3.9 or later (it has $(chroot "$root" python3 --version 2>&1))"
fi
if ! on_node 'command -v ip'; then
  missing="${missing:+$missing and }ip (iproute2)"
fi
if [ -n "$missing" ]; then
  echo "install-cni: this node cannot run ipvlan-ip: it lacks $missing; nothing installed" >&2
  exit 1
fi
if [ -e "$target" ] && ! grep -q 'written by `ipvlan-ip install`' "$target"; then
  echo "install-cni: $target exists and was not written by ipvlan-ip; not replacing it" >&2
  exit 1
fi
cp /ipvlan-ip "$dir/.$name.new"
chmod 755 "$dir/.$name.new"
if [ ! -f "$root$node_dir/.$name.new" ]; then
  rm -f "$dir/.$name.new"
  echo "install-cni: $dir is not $node_dir of the node's root $root, so doctor cannot run there; nothing installed" >&2
  exit 1
fi
if ! report=$(chroot "$root" python3 "$node_dir/.$name.new" doctor 2>&1); then
  rm -f "$dir/.$name.new"
  echo "install-cni: ipvlan-ip doctor finds this node unfit; nothing installed:" >&2
  echo "$report" >&2
  exit 1
fi
mv -f "$dir/.$name.new" "$target"
echo "install-cni: installed $target"
while :; do sleep 3600; done
