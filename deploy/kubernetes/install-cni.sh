#!/bin/sh
# Copies /ipvlan-ip into the node's CNI bin dir, then stays up, as the Multus
# and whereabouts installers do (a DaemonSet's pod must keep running).
# The copy is atomic: it is written beside the target and renamed over it, so
# a runtime starting the plugin meanwhile runs the old file or the new one,
# never half of one. A file of that name that `ipvlan-ip install` did not
# write is left alone, as `ipvlan-ip install` itself does.
set -eu
dir=${CNI_BIN_DIR:-/host/opt/cni/bin}
name=${CNI_PLUGIN_NAME:-ipvlan-ip}
target=$dir/$name
if [ -e "$target" ] && ! grep -q 'written by `ipvlan-ip install`' "$target"; then
  echo "install-cni: $target exists and was not written by ipvlan-ip; not replacing it" >&2
  exit 1
fi
cp /ipvlan-ip "$dir/.$name.new"
chmod 755 "$dir/.$name.new"
mv -f "$dir/.$name.new" "$target"
echo "install-cni: installed $target"
while :; do sleep 3600; done
