"""The main job, as a tour: throwaway containers (network namespaces) get
ipvlan interfaces from ipvlan-ip, with the debug echo showing every `ip`
command, and each topic proves what it shows (scripts/tour.py). In a qemu VM
when this kernel has no ipvlan (see scripts/vm.py), booted once for all the
topics asked for. `--help` needs nothing set up: it is answered before any
import beyond the standard library."""

import argparse
import sys

# Topic -> what it shows; scripts/tour.py has one function a topic.
TOPICS = {
    "l2": "two containers on one master reach each other; show, CHECK, DEL, nothing left (the default)",
    "l3": "no ARP: routed in the host's netns; packets coming in skip the host's netfilter (an INPUT rule "
          "counts 0)",
    "l3s": "as l3, but the host's netfilter sees the packets coming in (the same INPUT rule counts them)",
    "host-access": "the host pings a container and its TCP probe gets an answer (\"hostAccess\": true)",
    "dhcp": "a lease from dnsmasq on the LAN, through Debian's CNI dhcp daemon, released by DEL",
    "vlan": "\"vlan\": 20 makes the master's VLAN 20 link; the container reaches VLAN 20's LAN; the last DEL "
            "removes the link",
    "show": "ipvlan-ip show draws the master and its containers, and flags the master set down",
    "debug": "plan prints an ADD's commands; the debug echo of the same ADD runs exactly those",
    "lab": "the lab of docs/learn.md, command by command: a container attached by hand, looked at, detached",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A tour of ipvlan-ip: each topic says why, runs the plugin as a runtime does with every "
                    "ip command echoed, proves what it shows, and cleans up. In a qemu VM when this kernel "
                    "has no ipvlan.",
        epilog="topics:\n" + "\n".join(f"  {name:<12} {text}" for name, text in TOPICS.items())
               + "\n  all          every topic above, in one VM boot")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="what to show (default: l2)")
    p.add_argument("--dot", metavar="FILE", default="",
                   help="l2: also write `ipvlan-ip show --dot` there (docs/show-demo.svg is `dot -Tsvg` of it)")
    p.add_argument("--here", action="store_true", help=argparse.SUPPRESS)     # inside the VM
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    topics = args.topics or ["l2"]
    if "all" in topics:
        topics = list(TOPICS)
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        parser().error(f"unknown topic {unknown[0]!r}; one of: {', '.join(TOPICS)}, all")
    from vm import host_has_ipvlan, run_in_vm
    if not args.here and not host_has_ipvlan():
        print(f"demo: this kernel has no ipvlan; running {', '.join(topics)} in a qemu VM", flush=True)
        return run_in_vm([".venv/bin/python", "scripts/demo.py", "--here", *argv])
    import tour
    tour.run(topics, args.dot)
    print(f"\ndemo: done ({', '.join(topics)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
