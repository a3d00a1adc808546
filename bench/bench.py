"""ipvlan-ip against Debian's Go ipvlan plugin (/usr/lib/cni/ipvlan), same kernel,
same config, same host-local IPAM, and against the floor (bench/floor.py: the
same process work from a stdlib-only `python3 -I -S` script), and ipvlan-ip
with hostAccess on (its host link and routes cost an `ip` more per call), and
with vlan (on a VLAN link another container keeps, and on one that each
ADD makes and each DEL removes).

    ./bench/run [--cycles N] [--links N]

Prints, for each, the median wall time of ADD and of DEL over N interleaved
ADD+DEL cycles and the ratios to Go; the processes one ADD and one DEL
execute, counted by strace from the kernel's side; ADD time with 1 and with
--links ipvlan links already on the master; and, natively on this host,
VERSION against `python -c pass`, a DEL with an empty CNI_NETNS against Go's
and the floor's, the standalone file against the installed launcher, and the
plugin path's slowest imports. The kernel part runs in the qemu VM when this
kernel has no ipvlan. ipvlan-ip runs as runtimes run it: through the launcher
`ipvlan-ip install` writes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from vm import host_has_ipvlan, plugin_launcher, run_in_vm  # noqa: E402

OURS = plugin_launcher()
GO = "/usr/lib/cni/ipvlan"
FLOOR = ["/usr/bin/python3", "-I", "-S", str(REPO / "bench" / "floor.py")]
PLUGINS = {"ipvlan-ip": [OURS], "go ipvlan": [GO],
           "floor, 2 ip": [*FLOOR, "--ip-processes", "2"], "floor, 3 ip": [*FLOOR, "--ip-processes", "3"],
           "ipvlan-ip hostAccess": [OURS], "ipvlan-ip vlan": [OURS], "ipvlan-ip vlan, made": [OURS],
           "ipvlan-ip ipv6.slaac": [OURS], "ipvlan-ip l3s": [OURS], "ipvlan-ip l3s proxyNeighbors": [OURS],
           "ipvlan-ip hostAccess serviceCIDRs": [OURS]}
# The same plugin, with an opt-in on. "vlan": the VLAN link is in use by another container, as where
# pods share a tagged network; "vlan, made": each ADD makes it and each DEL removes it (its only user).
SETTINGS = {"ipvlan-ip hostAccess": {"hostAccess": True}, "ipvlan-ip vlan": {"vlan": 20},
            "ipvlan-ip vlan, made": {"vlan": 30}, "ipvlan-ip ipv6.slaac": {"ipv6": {"slaac": True}},
            "ipvlan-ip l3s": {"mode": "l3s"}, "ipvlan-ip l3s proxyNeighbors": {"mode": "l3s", "proxyNeighbors": True},
            "ipvlan-ip hostAccess serviceCIDRs": {"hostAccess": True, "serviceCIDRs": ["10.96.0.0/12"]}}
# A master carries one mode: the l3s ones get a master of their own, which forwards (proxyNeighbors needs it).
L3S = ("ipvlan-ip l3s", "ipvlan-ip l3s proxyNeighbors")
# Each key's cost: the call with it against the same call without it.
KEYED = {"ipvlan-ip vlan": "ipvlan-ip", "ipvlan-ip vlan, made": "ipvlan-ip", "ipvlan-ip hostAccess": "ipvlan-ip",
         "ipvlan-ip ipv6.slaac": "ipvlan-ip", "ipvlan-ip l3s proxyNeighbors": "ipvlan-ip l3s",
         "ipvlan-ip hostAccess serviceCIDRs": "ipvlan-ip hostAccess"}
HELD = ("ipvlan-ip vlan",)       # a container attached for the whole run keeps its VLAN link
COUNTED = ("ipvlan-ip", "go ipvlan", "ipvlan-ip hostAccess", "ipvlan-ip vlan", "ipvlan-ip vlan, made",
           "ipvlan-ip ipv6.slaac", "ipvlan-ip l3s", "ipvlan-ip l3s proxyNeighbors", "ipvlan-ip hostAccess serviceCIDRs")
LINKS_TEST = ("ipvlan-ip", "go ipvlan")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def timed(argv, stdin: bytes = b"", env=None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"bench: {argv[0]} failed: {done.stdout.decode()} {done.stderr.decode()}")
    return elapsed


# As on a node: /usr/bin/env python3 (the standalone file's #! line) finds the
# system's Python, not a development shim that costs more than the call.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def cni_env(command: str, netns: str, container: str) -> dict:
    return {"PATH": SYSTEM_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": container,
            "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}


def conf(master: str, data_dir: str, settings: dict | None = None) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "bench", "type": "ipvlan", "master": master,
                       "ipam": {"type": "host-local", "subnet": "10.123.0.0/16", "dataDir": data_dir},
                       **(settings or {})}).encode()


def cycle(plugin: list[str], stdin: bytes, netns: str) -> tuple[float, float]:
    container = f"b{uuid.uuid4().hex[:10]}"
    add = timed(plugin, stdin, cni_env("ADD", netns, container))
    delete = timed(plugin, stdin, cni_env("DEL", netns, container))
    return add, delete


def processes(plugin: list[str], command: str, stdin: bytes, netns: str, container: str, workdir: str) -> dict:
    """Processes one call executes, from strace's record of successful execve calls."""
    log = f"{workdir}/strace-{uuid.uuid4().hex[:6]}"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-o", log, *plugin], input=stdin,
                   env=cni_env(command, netns, container), capture_output=True, check=True)
    execs, pending = [], {}
    for line in Path(log).read_text().splitlines():
        pid, _, rest = line.partition(" ")
        if 'execve("' in rest:
            path = rest.split('execve("', 1)[1].split('"', 1)[0]
            if "<unfinished" in rest:      # a threaded parent (Go): the result comes on a later line
                pending[pid] = path
            elif rest.rstrip().endswith("= 0"):
                execs.append(path)
        elif "<... execve resumed>" in rest and pid in pending:
            path = pending.pop(pid)
            if rest.rstrip().endswith("= 0"):
                execs.append(path)
    kinds = {"ip": 0, "IPAM": 0, "other": 0}
    for path in execs[1:]:                       # the first is the plugin itself
        name = os.path.basename(path)
        kinds["ip" if name == "ip" else "IPAM" if name == "host-local" else "other"] += 1
    return kinds


def kernel_part(cycles: int, links: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory(prefix="ipvlan-bench-") as workdir:
        master = f"bm{uuid.uuid4().hex[:6]}"
        netns = {name: f"bench-{i}-{uuid.uuid4().hex[:6]}" for i, name in enumerate(PLUGINS)}
        sh("ip", "link", "add", master, "type", "veth", "peer", "name", master + "p")
        sh("ip", "link", "set", master, "up")
        # The host's own address on the master, which hostAccess needs (ADD refuses it without one);
        # from the range RFC 2544 sets aside for benchmarks, which no test uses.
        sh("ip", "address", "add", "198.18.0.1/24", "dev", master)
        routed = master + "r"
        sh("ip", "link", "add", routed, "type", "veth", "peer", "name", routed + "p")
        sh("ip", "link", "set", routed, "up")
        sh("sysctl", "-qw", f"net.ipv4.conf.{routed}.forwarding=1")
        # The containers' subnet is on its LAN, as proxyNeighbors asks (the host answers only for those).
        sh("ip", "route", "add", "10.123.0.0/16", "dev", routed)
        for ns in netns.values():
            sh("ip", "netns", "add", ns)
        try:
            stdin = {name: conf(routed if name in L3S else master, f"{workdir}/ipam-{i}", SETTINGS.get(name, {}))
                     for i, name in enumerate(PLUGINS)}
            for name in HELD:
                sh("ip", "netns", "add", f"{netns[name]}-holder")
                timed(PLUGINS[name], stdin[name], cni_env("ADD", f"{netns[name]}-holder", "holder"))
            if cycles > 2:                             # warm the page cache, except in a smoke run
                for name, plugin in PLUGINS.items():
                    cycle(plugin, stdin[name], netns[name])
            times = {name: ([], []) for name in PLUGINS}
            for _ in range(cycles):
                for name, plugin in PLUGINS.items():   # interleaved, so drift hits both alike
                    add, delete = cycle(plugin, stdin[name], netns[name])
                    times[name][0].append(add)
                    times[name][1].append(delete)
            out["median"] = {name: {"ADD": statistics.median(a), "DEL": statistics.median(d)}
                             for name, (a, d) in times.items()}
            out["processes"] = {}
            for name in COUNTED:
                out["processes"][name] = {c: processes(PLUGINS[name], c, stdin[name], netns[name], "counted",
                                                       workdir)
                                          for c in ("ADD", "DEL")}

            def add_median() -> dict:
                # An untimed cycle of each first, then interleaved: new links leave
                # the kernel work to do for a while, which must not fall on one side.
                for name in LINKS_TEST:
                    cycle(PLUGINS[name], stdin[name], netns[name])
                added: dict[str, list[float]] = {name: [] for name in LINKS_TEST}
                for _ in range(max(1, cycles // 2)):
                    for name in LINKS_TEST:
                        added[name].append(cycle(PLUGINS[name], stdin[name], netns[name])[0])
                return {name: statistics.median(times) for name, times in added.items()}
            out["add_with_links"] = {}
            if links < 2:        # a smoke run
                return out
            out["add_with_links"][1] = add_median()
            others = "".join(f"link add link {master} name {master}s{n} type ipvlan mode l2\n"
                             for n in range(links - 1))
            subprocess.run(["ip", "-batch", "-"], input=others.encode(), check=True, capture_output=True)
            out["add_with_links"][links] = add_median()
            out["show"] = show_part([1, links])
        finally:
            for ns in [*netns.values(), *(f"{netns[name]}-holder" for name in HELD)]:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            for device in (master, routed):
                subprocess.run(["ip", "link", "del", device], capture_output=True)   # takes its slaves along
    return out


def show_part(containers: list[int], runs: int = 3) -> dict:
    """`ipvlan-ip show --json` with N containers, each a named netns holding an
    ipvlan link on one master: its median time per N, which must grow no
    faster than the number of netns (one `ip` per netns)."""
    out = {}
    for count in containers:
        master, tag = f"bs{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
        spaces = [f"bshow-{tag}-{n}" for n in range(count)]
        sh("ip", "link", "add", master, "type", "veth", "peer", "name", master + "p")
        sh("ip", "link", "set", master, "up")
        try:
            batch = "".join(f"netns add {ns}\n" for ns in spaces) + "".join(
                f"link add link {master} name s{n} netns {ns} type ipvlan mode l2\n" for n, ns in enumerate(spaces))
            subprocess.run(["ip", "-batch", "-"], input=batch.encode(), check=True, capture_output=True)
            out[count] = statistics.median(timed([OURS, "show", "--json"]) for _ in range(runs))
        finally:
            for ns in spaces:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", master], capture_output=True)
    return out


def startup_part(runs: int, workdir: str) -> dict:
    """Whole-process medians, natively; DEL with an empty CNI_NETNS needs no ipvlan."""
    standalone = subprocess.run([str(REPO / ".venv" / "bin" / "ipvlan-ip"), "install", "--standalone", "--force",
                                 "--cni-bin-dir", f"{workdir}/standalone"], check=True, capture_output=True)
    standalone_file = standalone.stdout.decode().split()[-1]
    version_env = {"PATH": SYSTEM_PATH, "CNI_COMMAND": "VERSION"}
    del_env = {**cni_env("DEL", "", "startup"), "CNI_NETNS": ""}
    version_in = b'{"cniVersion": "1.0.0"}'
    del_in = conf("eth0", f"{workdir}/ipam-startup")
    console_script = str(REPO / ".venv" / "bin" / "ipvlan-ip")
    with tempfile.NamedTemporaryFile("wb", suffix=".conf") as f:
        f.write(del_in)
        f.flush()
        cases = {
            "python -c pass": ([str(REPO / ".venv" / "bin" / "python"), "-c", "pass"], b"", None),
            "ipvlan-ip VERSION": ([OURS], version_in, version_env),
            "console script VERSION": ([console_script], version_in, version_env),
            "standalone VERSION": ([standalone_file], version_in, version_env),
            "go ipvlan VERSION": ([GO], version_in, version_env),
            "ipvlan-ip DEL": ([OURS], del_in, del_env),
            "standalone DEL": ([standalone_file], del_in, del_env),
            "floor DEL": (FLOOR, del_in, del_env),
            "go ipvlan DEL": ([GO], del_in, del_env),
            "ipvlan-ip plan ADD": ([console_script, "plan", f.name, "--netns", "/run/netns/x", "--ifname", "eth0"],
                                   b"", None),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):                  # interleaved, so drift hits all alike
            for name, (argv, data, env) in cases.items():
                times[name].append(timed(argv, data, env))
    return {name: statistics.median(t) for name, t in times.items()}


def slowest_imports(count: int = 10) -> list[tuple[int, str]]:
    """The plugin path's largest imports by their own time (-X importtime), for a DEL."""
    with open(OURS) as f:
        interpreter, flags = f.readline().removeprefix("#!").split()
    with tempfile.TemporaryDirectory() as workdir:
        done = subprocess.run([interpreter, flags, "-X", "importtime", OURS], input=conf("eth0", workdir),
                              env={**cni_env("DEL", "", "imports"), "CNI_NETNS": ""}, capture_output=True)
    rows = []
    for line in done.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line and "self" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            rows.append((int(own), name.strip()))
    return sorted(rows, reverse=True)[:count]


def report(kernel: dict, startup: dict | None, imports: list | None, where: str) -> None:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:8.1f} ms"
    med = kernel["median"]
    go = med["go ipvlan"]
    print(f"\nADD and DEL, median of the cycles ({where}); ratios to the Go plugin")
    print(f"{'':22}{'ADD':>12}{'DEL':>12}{'ADD+DEL':>12}{'ratio':>8}")
    for name, m in med.items():
        total = m["ADD"] + m["DEL"]
        ratio = total / (go["ADD"] + go["DEL"])
        print(f"{name:22}{ms(m['ADD']):>12}{ms(m['DEL']):>12}{ms(total):>12}{ratio:>8.2f}")
    ours, floor = med["ipvlan-ip"], med["floor, 2 ip"]
    distance = (ours["ADD"] + ours["DEL"]) / (floor["ADD"] + floor["DEL"])
    print(f"ipvlan-ip / floor with the same 2 ip processes: {distance:.2f}")
    for name, without in KEYED.items():
        keyed, plain = med[name]["ADD"] + med[name]["DEL"], med[without]["ADD"] + med[without]["DEL"]
        print(f"{name} / {without}: {keyed / plain:.3f}")
    print("\nprocesses executed per call (strace, execve)")
    for name, per in kernel["processes"].items():
        print(f"{name:22}" + "   ".join(f"{c}: " + ", ".join(f"{k} {v}" for k, v in kinds.items())
                                        for c, kinds in per.items()))
    if kernel["add_with_links"]:
        print("\nADD with links already on the master (median)")
    for count, per in kernel["add_with_links"].items():
        print(f"{count:>4} links  " + "   ".join(f"{name} {ms(t)}" for name, t in per.items()))
    if kernel.get("show"):
        cycle_go = go["ADD"] + go["DEL"]
        print("\nipvlan-ip show --json with N containers (each a netns with an ipvlan link; median of 3)")
        for count, t in kernel["show"].items():
            print(f"{count:>4} containers {ms(t)}   {t / cycle_go:6.2f}× a Go ADD+DEL cycle")
        (small, t1), (large, tn) = sorted(kernel["show"].items(), key=lambda kv: int(kv[0]))
        print(f"growth {tn / t1:.1f}× for {int(large) / int(small):.0f}× the containers "
              f"({(tn - t1) / (int(large) - int(small)) * 1000:.1f} ms per added netns)")
    if startup:
        print("\nstart-up, natively on this host (median whole process)")
        for name, t in startup.items():
            print(f"{name:24}{ms(t)}")
        print(f"VERSION / python -c pass: {startup['ipvlan-ip VERSION'] / startup['python -c pass']:.2f}"
              f"   DEL (empty CNI_NETNS) / Go's: {startup['ipvlan-ip DEL'] / startup['go ipvlan DEL']:.2f}"
              f"   floor DEL / Go's: {startup['floor DEL'] / startup['go ipvlan DEL']:.2f}"
              f"   DEL / floor: {startup['ipvlan-ip DEL'] / startup['floor DEL']:.2f}")
        print(f"standalone / installed launcher: "
              f"VERSION {startup['standalone VERSION'] / startup['ipvlan-ip VERSION']:.2f}, "
              f"DEL {startup['standalone DEL'] / startup['ipvlan-ip DEL']:.2f}")
    if imports:
        print("\nthe plugin path's largest imports, own time (-X importtime, one DEL)")
        for own, name in imports:
            print(f"{own / 1000:8.2f} ms  {name}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--startup-runs", type=int, default=20)
    parser.add_argument("--kernel-json", help=argparse.SUPPRESS)   # the VM's half writes its figures here
    args = parser.parse_args(argv)
    if args.kernel_json:
        Path(args.kernel_json).write_text(json.dumps(kernel_part(args.cycles, args.links)))
        return 0
    with tempfile.TemporaryDirectory(prefix="ipvlan-bench-") as workdir:
        startup = startup_part(args.startup_runs, workdir)
    imports = slowest_imports()
    result_file = REPO / ".vm" / "bench-kernel.json"
    result_file.parent.mkdir(exist_ok=True)
    result_file.unlink(missing_ok=True)
    argv_kernel = [".venv/bin/python", "bench/bench.py", "--cycles", str(args.cycles), "--links", str(args.links),
                   "--kernel-json", str(result_file)]
    if host_has_ipvlan():
        where = "host kernel"
        rc = subprocess.run(argv_kernel, cwd=REPO).returncode
    else:
        where = "qemu VM, software CPU"
        rc = run_in_vm(argv_kernel)
    if rc or not result_file.exists():
        print("bench: the kernel part failed", file=sys.stderr)
        return 1
    kernel = json.loads(result_file.read_text())
    kernel["add_with_links"] = {int(k): v for k, v in kernel["add_with_links"].items()}
    report(kernel, startup, imports, where)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
