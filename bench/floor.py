"""The floor: what a Python CNI plugin cannot avoid, as a stdlib-only script run
as `python3 -I -S`. It imports what a plugin typically needs and does exactly
the process work of ipvlan-ip's ADD or DEL, with none of its checks:

    CNI_COMMAND=ADD|DEL ... python3 -I -S bench/floor.py [--ip-processes 2|3] < config

ADD: host-local ADD, then `ip` reads the master and creates the link in the
netns (one batch, or two processes with --ip-processes 3), then one batch in
the netns names, addresses and brings it up. DEL: host-local DEL, then one
`ip` deletes the link. bench/bench.py runs it beside both plugins.
"""

import ctypes  # noqa: F401  (imported for its cost, as a plugin would)
import dataclasses  # noqa: F401
import fcntl  # noqa: F401
import ipaddress
import json
import os
import re  # noqa: F401
import shlex  # noqa: F401
import subprocess
import sys
import threading  # noqa: F401


def ip(*args: str, batch: str = "") -> None:
    subprocess.run(["ip", *args], input=batch.encode(), check=True, capture_output=True)


def main() -> None:
    conf_bytes = sys.stdin.buffer.read()
    conf = json.loads(conf_bytes)
    ipam = subprocess.run(["/usr/lib/cni/host-local"], input=conf_bytes, capture_output=True, check=True)
    netns, ifname = os.environ["CNI_NETNS"], os.environ["CNI_IFNAME"]
    if os.environ["CNI_COMMAND"] == "DEL":
        if netns:
            ip("-n", os.path.basename(netns), "link", "del", ifname)
        return
    address = ipaddress.ip_interface(json.loads(ipam.stdout)["ips"][0]["address"])
    master, tmp = conf["master"], "floor" + os.environ["CNI_CONTAINERID"][-8:]
    create = f"link add link {master} name {tmp} netns {netns} type ipvlan mode l2\n"
    if "--ip-processes" in sys.argv and sys.argv[-1] == "3":
        ip("-j", "link", "show", "dev", master)
        ip("-batch", "-", batch=create)
    else:
        ip("-j", "-batch", "-", batch=f"link show dev {master}\n{create}")
    ip("-n", os.path.basename(netns), "-batch", "-",
       batch=f"link set dev {tmp} name {ifname}\naddress add {address} dev {ifname}\nlink set dev {ifname} up\n")
    print(json.dumps({"cniVersion": conf["cniVersion"], "ips": [{"address": str(address)}]}))


if __name__ == "__main__":
    main()
