"""The demo's topics (scripts/demo.py picks them): each says why in one
paragraph, sets up throwaway namespaces and veth masters, runs the plugin as a
runtime does with the debug echo on, proves what it claims (a ping, a lease, a
TCP connection, a counter), and cleans up. A proof that fails stops the tour.

Each topic has a net of its own (10.200 to 10.207), so that it can run beside
the test suite's own namespaces."""

import json
import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import sh
from vm import plugin_launcher

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"     # a node's, with nothing of this repository on it

# sh reads best for the commands a person would type; _tty_out=False as nothing here is a terminal.
ip = sh.Command("ip").bake(_tty_out=False)
DHCP = "/usr/lib/cni/dhcp"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def why(text: str) -> None:
    print("\n" + textwrap.fill(" ".join(text.split()), 100), flush=True)


def show(*args: str) -> str:
    """Run `ip ARGS` as if typed at a prompt, and print what it says."""
    print(f"$ ip {' '.join(args)}", flush=True)
    try:
        out = ip(*args, _err_to_out=True)
    except sh.ErrorReturnCode as e:
        print(e.stdout.decode(), end="", flush=True)
        raise SystemExit(f"demo: `ip {' '.join(args)}` failed") from e
    print(out, end="", flush=True)
    return out


def proof(claim: str, held: bool) -> None:
    print(f"proof: {claim}: {'yes' if held else 'NO'}", flush=True)
    if not held:
        raise SystemExit(f"demo: the proof failed: {claim}")


def pings(ns: str | None, address: str) -> bool:
    argv = ["ping", "-c", "1", "-W", "3", address]
    return subprocess.run(["ip", "netns", "exec", ns, *argv] if ns else argv, capture_output=True).returncode == 0


class Stage:
    """What a topic made, removed again at its end, whatever happened."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.undo: list = []

    def netns(self, name: str) -> str:
        show("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        self.undo.append(lambda: ip("netns", "del", name, _ok_code=range(256)))
        return name

    def master(self, name: str, lan: str | None = None, host: str = "", far: str = "") -> str:
        """A veth `name` as master, up; its peer in netns `lan` when given, with address `far`;
        `host`: the host's own address on the master."""
        show("link", "add", name, "type", "veth", "peer", "name", name + "p")
        self.undo.append(lambda: ip("link", "del", name, _ok_code=range(256)))
        show("link", "set", name, "up")
        if lan:
            show("link", "set", name + "p", "netns", lan)
            if far:
                show("-n", lan, "address", "add", far, "dev", name + "p")
            show("-n", lan, "link", "set", name + "p", "up")
        else:
            show("link", "set", name + "p", "up")
        if host:
            show("address", "add", host, "dev", name)
        return name

    def process(self, argv: list[str], log: str) -> subprocess.Popen:
        with open(f"{self.workdir}/{log}", "w") as out:     # the child keeps its own copy
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.undo.append(lambda: (proc.terminate(), proc.wait(10)))
        return proc

    def close(self) -> None:
        for step in reversed(self.undo):
            try:
                step()
            except Exception as e:      # noqa: BLE001 (clean up the rest, whatever one step says)
                print(f"demo: clean-up step failed: {e}")


def cni(command: str, conf: dict, container: str, echo: bool = True) -> dict | None:
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": container,
           "CNI_NETNS": f"/run/netns/{container}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
           **({"IPVLAN_IP_DEBUG": "1"} if echo else {})}
    print(f"$ CNI_COMMAND={command} CNI_CONTAINERID={container} CNI_NETNS=/run/netns/{container} "
          f"CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni{' IPVLAN_IP_DEBUG=1' if echo else ''} ipvlan-ip < conf.json",
          flush=True)
    # subprocess, as a runtime does: the debug echo on stderr, the result on stdout, apart.
    done = subprocess.run([plugin_launcher()], input=json.dumps(conf), env=env, capture_output=True, text=True)
    print(done.stderr, end="", flush=True)
    if done.stdout.strip():
        print("stdout:", done.stdout, end="", flush=True)
    if done.returncode:
        raise SystemExit(f"demo: {command} failed")
    return json.loads(done.stdout) if done.stdout.strip() else None


def address_of(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def host_local(stage: Stage, subnet: str, **extra) -> dict:
    return {"type": "host-local", "subnet": subnet, "dataDir": f"{stage.workdir}/ipam", **extra}


def conf(name: str, master: str, ipam: dict, **settings) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "ipvlan-ip", "master": master, "ipam": ipam, **settings}


def reservations(stage: Stage, network: str) -> list[str]:
    return sorted(p.name for p in Path(stage.workdir, "ipam", network).glob("10.*"))


# ---------------------------------------------------------------- the topics

def l2(stage: Stage, dot_file: str = "") -> None:
    why("""l2, the default: each container's link does its own ARP, shares the master's MAC, and ipvlan
    delivers by destination IP: two containers on one master reach each other inside the host, and the LAN
    through the master (docs/modes.md).""")
    network = conf("demo", "demo-m0", host_local(stage, "10.99.0.0/24", gateway="10.99.0.1",
                                                 routes=[{"dst": "0.0.0.0/0"}]), mode="l2")
    banner("network config (conf.json)")
    print(json.dumps(network, indent=2))
    banner("set up: a veth as master, two empty network namespaces")
    stage.master("demo-m0")
    containers = [stage.netns("demo-a"), stage.netns("demo-b")]
    results = {}
    for c in containers:
        banner(f"ADD {c}")
        results[c] = cni("ADD", network, c)
    banner("what the kernel now has in demo-a")
    show("-n", "demo-a", "-d", "address", "show", "dev", "eth0")
    show("-n", "demo-a", "route")
    banner("ipvlan-ip show: the master, its links in every netns, and anything wrong")
    _show(stage, "demo-m0", dot_file)
    banner("demo-a pings demo-b over ipvlan")
    proof("demo-a reaches demo-b", pings("demo-a", address_of(results["demo-b"])))
    for command in ("CHECK", "DEL"):
        for c in containers:
            banner(f"{command} {c}")
            cni(command, {**network, "prevResult": results[c]}, c)
    banner("after DEL: no eth0 in the namespaces, no address held by host-local")
    for c in containers:
        show("-n", c, "link", "show")
    proof("no reservation left", reservations(stage, "demo") == [])


def _show(stage: Stage, master: str, dot_file: str = "") -> None:
    # --master: on a node or beside other tests, the host holds other masters; the tour draws its own.
    args = ["show", "--master", master, "--ipam-dir", f"{stage.workdir}/ipam"]
    print("$ ipvlan-ip " + " ".join(args), flush=True)
    tree = subprocess.run([plugin_launcher(), *args], capture_output=True, text=True)
    print(tree.stdout + tree.stderr, end="", flush=True)
    if tree.returncode:
        raise SystemExit("demo: ipvlan-ip show failed")
    if dot_file:
        graph = subprocess.run([plugin_launcher(), *args, "--dot"], capture_output=True, text=True, check=True)
        Path(dot_file).write_text(graph.stdout)
        print(f"(the same as a Graphviz graph: {dot_file})")


def _routed(stage: Stage, mode: str, net: str) -> tuple[dict, list[str], dict]:
    """An l3 or l3s network on a master whose LAN routes the containers' subnet through the host."""
    lan = stage.netns(f"tour-{mode}-lan")
    master = stage.master(f"tour-{mode}", lan, host=f"{net}.0.2/24", far=f"{net}.0.1/24")
    show("-n", lan, "route", "add", f"{net}.1.0/24", "via", f"{net}.0.2")
    network = conf(f"tour-{mode}", master, host_local(stage, f"{net}.1.0/24", routes=[{"dst": "0.0.0.0/0"}]),
                   mode=mode)
    containers = [stage.netns(f"tour-{mode}-a"), stage.netns(f"tour-{mode}-b")]
    results = {c: cni("ADD", network, c, echo=c == containers[0]) for c in containers}
    mode_read = json.loads(ip("-n", containers[0], "-j", "-d", "link", "show", "dev", "eth0"))[0]
    proof(f"the kernel reads the link back as ipvlan mode {mode}",
          mode_read["linkinfo"]["info_data"]["mode"] == mode)
    proof("container a reaches container b (inside the host)", pings(containers[0], address_of(results[containers[1]])))
    proof(f"container a reaches the LAN's {net}.0.1 (routed in the host netns)", pings(containers[0], f"{net}.0.1"))
    return network, containers, results


def _remove(network: dict, containers: list[str], results: dict) -> None:
    for c in containers:
        cni("DEL", {**network, "prevResult": results[c]}, c, echo=False)


def l3(stage: Stage) -> None:
    why("""l3: the links do no ARP. A container's packet is routed in the host's netns, and the host's ARP on
    the master finds the next hop; the LAN must route the containers' subnet to the node, since no link
    answers ARP. Packets coming in go to the link by destination IP before the host's netfilter sees them:
    a counting rule in the host's INPUT chain stays at 0. No broadcast reaches a link, so no DHCP
    (docs/modes.md).""")
    network, containers, results = _routed(stage, "l3", "10.200")
    proof("the host's INPUT chain saw none of the LAN's packets for the container",
          _counted(stage, "tour-l3-lan", address_of(results[containers[0]])) == 0)
    _remove(network, containers, results)


def l3s(stage: Stage) -> None:
    why("""l3s: as l3, but a packet coming in passes the host's netfilter first (PREROUTING, INPUT), so iptables
    and conntrack see both directions. Proof: the counting rule in the host's INPUT chain for the container's
    address, which stays at 0 in l3, counts the LAN's ping in l3s (docs/modes.md).""")
    network, containers, results = _routed(stage, "l3s", "10.201")
    proof("the host's INPUT chain saw the LAN's packets for the container",
          _counted(stage, "tour-l3s-lan", address_of(results[containers[0]])) > 0)
    _remove(network, containers, results)


def _counted(stage: Stage, lan: str, address: str) -> int:
    """How many of the LAN's pings to `address` a rule in the host's INPUT chain counts."""
    rule = ["INPUT", "-d", address, "-p", "icmp", "-j", "ACCEPT"]
    show_cmd("iptables", "-w", "-I", *rule)
    stage.undo.append(lambda: subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True))
    proof(f"the LAN reaches container a at {address}", pings(lan, address))
    counted = show_cmd("iptables", "-w", "-L", "INPUT", "-v", "-x", "-n")
    return next(int(line.split()[0]) for line in counted.splitlines() if address in line)


def show_cmd(*argv: str) -> str:
    print(f"$ {' '.join(argv)}", flush=True)
    done = subprocess.run(argv, capture_output=True, text=True)
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode:
        raise SystemExit(f"demo: `{' '.join(argv)}` failed")
    return done.stdout


def host_access(stage: Stage) -> None:
    why("""hostAccess: ipvlan keeps the master's own stack out of its links' traffic, so the host cannot reach
    its containers (the kubelet's probes fail). "hostAccess": true gives the host an ipvlan link of its own on
    the master and a route to each container through it (docs/host-access.md).""")
    master = stage.master("tour-ha", host="10.202.0.2/24")
    network = conf("tour-ha", master, host_local(stage, "10.202.0.0/24", rangeStart="10.202.0.10"),
                   hostAccess=True)
    container = stage.netns("tour-ha-a")
    result = cni("ADD", network, container)
    address = address_of(result)
    proof(f"the host pings the container at {address}", pings(None, address))
    server = subprocess.Popen(["ip", "netns", "exec", container, "busybox", "nc", "-l", "-p", "8079", "-e", "echo",
                               "hello"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage.undo.append(server.kill)
    said = ""
    for _ in range(20):         # until it listens, as a probe retries
        said = subprocess.run(["busybox", "nc", "-w", "3", address, "8079"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL).stdout.strip()
        if said:
            break
        time.sleep(0.5)
    proof("the host's TCP probe of the container's port 8079 gets its answer", said == "hello")
    cni("DEL", {**network, "prevResult": result}, container, echo=False)
    routes = json.loads(ip("-j", "route", "show", "dev", f"ipvh{_crc(master)}", _ok_code=range(256)) or "[]")
    proof("DEL took the host's route back", not [r for r in routes if r.get("dst", "").startswith("10.202.")])


def _crc(name: str) -> str:
    import zlib
    return f"{zlib.crc32(name.encode()):08x}"


def dhcp(stage: Stage) -> None:
    why("""dhcp: where a port admits one MAC (Wi-Fi, port security), containers take their addresses from the
    LAN's own DHCP server. Here dnsmasq serves the LAN and Debian's CNI dhcp daemon, started with -broadcast,
    asks for each container's lease; l2 only (docs/dhcp.md).""")
    lan = stage.netns("tour-dhcp-lan")
    master = stage.master("tour-dhcp", lan, far="10.203.0.1/24")
    leases, socket = f"{stage.workdir}/dnsmasq.leases", f"{stage.workdir}/dhcp.sock"
    stage.process(["ip", "netns", "exec", lan, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                   "--port=0", "--user=root", "--bind-interfaces", f"--interface={master}p",
                   "--dhcp-range=10.203.0.100,10.203.0.150,255.255.255.0,1h", "--dhcp-option=option:router,10.203.0.1",
                   f"--dhcp-leasefile={leases}", "--dhcp-authoritative"], "dnsmasq.log")
    stage.process([DHCP, "daemon", "-broadcast", "-socketpath", socket], "dhcp-daemon.log")
    for _ in range(100):
        if Path(socket).exists():
            break
        time.sleep(0.1)
    network = conf("tour-dhcp", master, {"type": "dhcp", "daemonSocketPath": socket}, mode="l2")
    container = stage.netns("tour-dhcp-a")
    result = cni("ADD", network, container)
    address = address_of(result)
    held = Path(leases).read_text() if Path(leases).exists() else ""
    proof(f"dnsmasq leased {address}, and its lease file says so", address.startswith("10.203.0.") and address in held)
    proof("the container pings the DHCP server", pings(container, "10.203.0.1"))
    cni("DEL", {**network, "prevResult": result}, container, echo=False)
    for _ in range(50):
        if address not in Path(leases).read_text():
            break
        time.sleep(0.2)
    proof("DEL released the lease", address not in Path(leases).read_text())


def vlan(stage: Stage) -> None:
    why("""vlan: on a trunk port, containers belong on a tagged VLAN. "vlan": 20 makes the master's VLAN 20
    link (tour-vl.20) at the first ADD, as Docker's ipvlan driver does, and removes it with its last
    container. The LAN side here is VLAN 20 of the master's peer, in a netns of its own (docs/vlan.md).""")
    trunk, lan = stage.netns("tour-vl-trunk"), stage.netns("tour-vl-lan20")
    master = stage.master("tour-vl", trunk)
    show("-n", trunk, "link", "add", "link", f"{master}p", "name", f"{master}p.20", "type", "vlan", "id", "20")
    show("-n", trunk, "link", "set", f"{master}p.20", "netns", lan)
    show("-n", lan, "address", "add", "10.204.0.1/24", "dev", f"{master}p.20")
    show("-n", lan, "link", "set", f"{master}p.20", "up")
    network = conf("tour-vlan", master, host_local(stage, "10.204.0.0/24"), vlan=20)
    container = stage.netns("tour-vl-a")
    result = cni("ADD", network, container)
    show("-d", "link", "show", "dev", f"{master}.20")
    proof("the container reaches VLAN 20's LAN at 10.204.0.1", pings(container, "10.204.0.1"))
    learned = json.loads(ip("-n", lan, "-j", "neigh", "show", "dev", f"{master}p.20"))
    proof("VLAN 20's LAN learned the container: its frames arrive tagged 20",
          any(n.get("dst") == address_of(result) for n in learned))
    cni("DEL", {**network, "prevResult": result}, container)
    gone = subprocess.run(["ip", "link", "show", "dev", f"{master}.20"], capture_output=True).returncode != 0
    proof("the last DEL removed the VLAN link the plugin made", gone)


def show_topic(stage: Stage) -> None:
    why("""show: which containers are on which master, and is anything wrong? `ipvlan-ip show` reads every
    netns once and draws the tree; here two containers, then the master set down, which it flags with the
    command that fixes it (docs/show.md).""")
    master = stage.master("tour-show")
    network = conf("tour-show", master, host_local(stage, "10.205.0.0/24"))
    containers = [stage.netns("tour-show-a"), stage.netns("tour-show-b")]
    results = {c: cni("ADD", network, c, echo=False) for c in containers}
    _show(stage, master)
    show("link", "set", master, "down")
    print(f"$ ipvlan-ip show --master {master}", flush=True)
    tree = subprocess.run([plugin_launcher(), "show", "--master", master], capture_output=True, text=True)
    print(tree.stdout, end="", flush=True)
    proof("show flags the master that is down", "master-down" in tree.stdout or "is down" in tree.stdout)
    show("link", "set", master, "up")
    _remove(network, containers, results)


def debug(stage: Stage) -> None:
    why("""debug: `ipvlan-ip plan` prints the commands an ADD would run, before anything runs; the debug echo
    (IPVLAN_IP_DEBUG=1) prints what it does run. Here both, for one ADD, compared line by line
    (docs/debugging.md).""")
    master = stage.master("tour-dbg")
    network = conf("tour-dbg", master, host_local(stage, "10.206.0.0/24", routes=[{"dst": "0.0.0.0/0"}]))
    Path(stage.workdir, "dbg.conf").write_text(json.dumps(network))
    # host-local's first address in a fresh dataDir, and the route the config asks for.
    expected = {"cniVersion": "1.0.0", "ips": [{"address": "10.206.0.2/24", "gateway": "10.206.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}]}
    Path(stage.workdir, "dbg.ipam").write_text(json.dumps(expected))
    container = stage.netns("tour-dbg-a")
    planned = show_cmd(plugin_launcher(), "plan", f"{stage.workdir}/dbg.conf", "--netns", f"/run/netns/{container}",
                       "--ifname", "eth0", "--container-id", container, "--ipam-result", f"{stage.workdir}/dbg.ipam")
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_CONTAINERID": container,
           "CNI_NETNS": f"/run/netns/{container}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
           "IPVLAN_IP_DEBUG": "1"}
    print(f"$ CNI_COMMAND=ADD ... IPVLAN_IP_DEBUG=1 ipvlan-ip < {stage.workdir}/dbg.conf", flush=True)
    done = subprocess.run([plugin_launcher()], input=json.dumps(network), env=env, capture_output=True, text=True)
    print(done.stderr, end="", flush=True)

    def commands(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]
    proof("the ADD succeeded", done.returncode == 0)
    proof("the echo ran exactly the commands plan printed", commands(done.stderr) == commands(planned))
    cni("DEL", network, container, echo=False)


LEARN = Path(__file__).resolve().parents[1] / "docs" / "learn.md"
LAB = "<!-- the lab: ./demo lab runs it (scripts/tour.py) -->"


LAB_RESULT = "<!-- the lab's ADD result: ./demo lab compares it, the MAC aside (scripts/tour.py) -->"


def lab_script() -> str:
    """The lab's commands, as docs/learn.md shows them."""
    return LEARN.read_text().split(LAB + "\n```sh\n", 1)[1].split("```", 1)[0]


def lab_leftovers() -> list[str]:
    """What of the lab is still there: its netns, its veth, its files."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return ((["the netns lab"] if "lab" in netns else []) + (["lab-m0"] if Path("/sys/class/net/lab-m0").exists()
                                                           else [])
            + [p for p in ("/tmp/lab.conf", "/tmp/lab.result", "/tmp/lab.check", "/tmp/lab-ipam") if Path(p).exists()])


def lab(stage: Stage) -> None:
    why("""lab: the commands of docs/learn.md's lab, as a reader types them (bash -v prints each line
    before it runs): a netns, a veth master, a config, then ADD, a look, CHECK, DEL and the clean-up.""")
    # As the page says, but with the demo's own plugin dir for /opt/cni/bin (the VM cannot write there).
    script = lab_script().replace("/opt/cni/bin", str(Path(plugin_launcher()).parent))
    env = {**os.environ, "PATH": SYSTEM_PATH}       # nothing of ours on it: the page's step 0 puts the plugin there
    try:
        done = subprocess.run(["bash", "-ev"], input=script, env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        print(done.stdout, end="", flush=True)
        left = lab_leftovers()
    finally:       # what a failed step left
        for argv in (["ip", "netns", "del", "lab"], ["ip", "link", "del", "lab-m0"],
                     ["rm", "-rf", "/tmp/lab.conf", "/tmp/lab.result", "/tmp/lab.check", "/tmp/lab-ipam"]):
            subprocess.run(argv, capture_output=True)
    proof("every command of the lab succeeded", done.returncode == 0)
    proof(f"the page's own clean-up left nothing{' (it left ' + ', '.join(left) + ')' if left else ''}", not left)
    shown = json.loads(LEARN.read_text().split(LAB_RESULT, 1)[1].split("```json\n", 1)[1].split("```", 1)[0])
    printed = [json.loads(line) for line in done.stdout.splitlines()     # bash -v echoes the config's lines too
               if line.startswith('{"cniVersion"') and '"interfaces"' in line]
    for result in (shown, *printed):
        result["interfaces"][0]["mac"] = "MAC"
    proof("ADD printed the result docs/learn.md shows, the MAC aside", printed == [shown])
    proof("CHECK passed, and so did DEL", "CHECK passed" in done.stdout and "DEL done" in done.stdout)


TOPICS = {"l2": l2, "l3": l3, "l3s": l3s, "host-access": host_access, "dhcp": dhcp, "vlan": vlan,
          "show": show_topic, "debug": debug, "lab": lab}


def run(topics: list[str], dot_file: str = "") -> None:
    for name in topics:
        with tempfile.TemporaryDirectory(prefix=f"ipvlan-ip-demo-{name}-") as workdir:
            banner(f"topic {name}")
            stage = Stage(workdir)
            try:
                if name == "l2":
                    l2(stage, dot_file)
                else:
                    TOPICS[name](stage)
            finally:
                banner(f"clean up {name}")
                stage.close()
